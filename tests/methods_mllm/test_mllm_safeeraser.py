"""SafeEraser: the official loss of each base objective with and without the prompt-decouple (PD) term, the PD
prompts of each pairing, and their targets (the model's own greedy answers before unlearning)."""

import copy

import pytest
import torch

from methods.core.models import frozen_copy
from methods.mllm import safeeraser
from methods.mllm.logprobs import model_inputs


def nll(model, batch):
    """transformers' `labels=` loss (token-mean cross-entropy of the labelled tokens)."""
    return model(**model_inputs(batch), labels=batch["labels"]).loss


def _prepared(model, task, **config):
    method = safeeraser.SafeEraser(safeeraser.SafeEraserConfig(forget_modalities=("visual", "text"), **config))
    method.prepare(model, task)
    return method


@pytest.mark.parametrize("base,pd,w_r,w_pd", [("ga", True, 0.0, 0.5), ("ga", False, 0.0, 0.0),
                                              ("gd", True, 0.5, 0.5), ("gd", False, 1.0, 0.0)])  # fmt: skip
def test_official_weights_of_ga_and_gd(micro_model, micro_task, base, pd, w_r, w_pd):
    """forget.py: ga = -NLL_f; gapd = -NLL_f + 0.5 PD; gd = -NLL_f + NLL_r; gdpd = -NLL_f + 0.5 NLL_r + 0.5 PD."""
    method = _prepared(micro_model, micro_task, base=base, prompt_decouple=pd, pd_pairing="question")
    forget = micro_task.batch(micro_task.forget[:5], None)
    retain = micro_task.batch(micro_task.retain[:4], None)
    pd_rows = method.pd_rows[:4]
    method.pd_batches = iter([pd_rows])
    method.pd_generator = None  # the PD rows on their first training view
    terms = [-nll(micro_model, forget), w_r * nll(micro_model, retain)]
    if w_pd:
        terms.append(w_pd * nll(micro_model, micro_task.batch(pd_rows, None)))
    expected = sum(terms)
    assert method.uses_retain == (w_r > 0)
    # float32 terms of size ~1 that nearly cancel (gd: -NLL_f + NLL_r ~ -0.008): the tolerance follows the terms
    scale = sum(abs(term.item()) for term in terms)
    assert method.loss(micro_model, forget, retain if w_r else None).item() == pytest.approx(expected.item(),
                                                                                              abs=1e-6 * scale)


def test_klpd_adds_the_retain_kl_and_the_full_pd_term(micro_model, micro_task):
    method = _prepared(micro_model, micro_task, base="kl", pd_pairing="question")
    method.reference = frozen_copy(micro_model)
    forget = micro_task.batch(micro_task.forget[:5], None)
    retain = micro_task.batch(micro_task.retain[:4], None)
    method.pd_batches = iter([method.pd_rows[:4]])
    method.pd_generator = None
    expected = -nll(micro_model, forget) + nll(micro_model, micro_task.batch(method.pd_rows[:4], None))  # KL = 0
    assert method.loss(micro_model, forget, retain).item() == pytest.approx(expected.item(), rel=1e-5)


def test_po_base_is_one_token_mean_over_refusals_and_retain(micro_model, micro_task):
    model = copy.deepcopy(micro_model)
    method = _prepared(model, micro_task, base="po", prompt_decouple=False)
    refusals = method.forget_rows(micro_task)[:3]
    retain_rows = micro_task.retain[:4]
    forget, retain = micro_task.batch(refusals, None), micro_task.batch(retain_rows, None)
    together = micro_task.batch(refusals + retain_rows, None)  # SafeEraser concatenates the two batches
    assert method.loss(model, forget, retain).item() == pytest.approx(nll(model, together).item(), rel=1e-5)


def test_pd_targets_are_the_models_own_greedy_answers(micro_model, micro_task):
    method = _prepared(micro_model, micro_task, pd_pairing="question")
    batch = micro_task.batch(method.pd_rows, None)
    with torch.no_grad():
        logits = micro_model(**model_inputs(batch)).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    for i, row in enumerate(method.pd_rows):  # an answer cut at pd_max_new_tokens gets an eos the model did not pick
        if len(row.answer_ids) == method.config.pd_max_new_tokens + 1:
            mask[i, mask[i].nonzero().max()] = False
    assert torch.equal(logits.argmax(-1)[mask], labels[mask])  # every target token is the model's argmax


def test_question_pairing_asks_harmless_questions_about_the_forget_images(micro_model, micro_task):
    method = _prepared(micro_model, micro_task, pd_pairing="question")
    forget_faces = {row.qa.face for row in micro_task.forget if row.qa.visual}
    assert {row.qa.kind for row in method.pd_rows} == {"harmless"}
    assert {row.qa.face for row in method.pd_rows} == forget_faces


def test_image_pairing_asks_the_forget_questions_about_other_images(micro_model, micro_task):
    method = _prepared(micro_model, micro_task, pd_pairing="image")
    forget_faces = {row.qa.face for row in micro_task.forget if row.qa.visual}
    retain_faces = {row.qa.face for row in micro_task.retain if row.qa.visual}
    visual_forget = [row for row in micro_task.forget if row.qa.visual]
    assert [row.qa.question for row in method.pd_rows] == [row.qa.question for row in visual_forget]
    assert {row.qa.face for row in method.pd_rows} <= retain_faces and not forget_faces & retain_faces


def test_without_prompt_decouple_no_pd_set_is_built(micro_model, micro_task):
    method = _prepared(micro_model, micro_task, prompt_decouple=False)
    assert method.pd_rows == [] and method.config.pd_term_weight == 0.0


def test_without_pd_on_gas_schedule_safeeraser_is_exactly_ga(micro_model, micro_task):
    """The registry's bar compares SafeEraser with the GA card: with PD off and GA's schedule and budget, the two
    runs take the same batches and the same steps, so the weights are bit-identical."""
    from methods.mllm import ga

    budget = dict(learning_rate=1e-2, steps=3, forget_batch_size=8, forget_modalities=("visual", "text"),
                  max_grad_norm=1.0, weight_decay=0.0, lr_schedule="linear")  # fmt: skip
    a, b = copy.deepcopy(micro_model), copy.deepcopy(micro_model)
    ga.unlearn(a, micro_task, ga.GAConfig(**budget))
    safeeraser.unlearn(b, micro_task, safeeraser.SafeEraserConfig(prompt_decouple=False, warmup_fraction=0.0, **budget))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = copy.deepcopy(micro_model)
    safeeraser.unlearn(c, micro_task, safeeraser.SafeEraserConfig(pd_pairing="question", warmup_fraction=0.0, **budget))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))  # the PD term changes it
