"""The method losses against their formulas: GA = -NLL, NPO on a hand-computed case, KL = 0 at the reference."""

import math

import pytest
import torch

from methods.core.models import frozen_copy
from methods.mllm import ga, graddiff, kl, npo
from methods.mllm.losses import answer_nll, kl_to_reference, sequence_logprob, shifted_logits
from methods.mllm.logprobs import model_inputs


def _batch(task, rows=None):
    return task.batch(rows or task.forget[:6], None)


def test_answer_nll_is_the_builtin_token_mean_loss(micro_model, micro_task):
    """Our answer-token NLL equals transformers' `labels=` loss (same shift, same -100 mask)."""
    batch = _batch(micro_task)
    builtin = micro_model(**model_inputs(batch), labels=batch["labels"]).loss
    assert answer_nll(micro_model, batch).item() == pytest.approx(builtin.item(), rel=1e-5)


def test_ga_loss_is_negated_nll(micro_model, micro_task):
    batch = _batch(micro_task)
    method = ga.GradientAscent()
    assert method.loss(micro_model, batch, None).item() == pytest.approx(-answer_nll(micro_model, batch).item())


def test_graddiff_loss_is_ga_plus_weighted_retain_nll(micro_model, micro_task):
    forget, retain = _batch(micro_task), _batch(micro_task, micro_task.retain[:5])
    method = graddiff.GradientDifference(graddiff.GradDiffConfig(forget_weight=0.5, retain_weight=2.0))
    expected = -0.5 * answer_nll(micro_model, forget) + 2.0 * answer_nll(micro_model, retain)
    assert method.loss(micro_model, forget, retain).item() == pytest.approx(expected.item(), rel=1e-5)


def test_npo_loss_hand_computed():
    # log-ratios 1 and -2, beta 0.5: -(2/0.5) * mean(log sigmoid(-0.5), log sigmoid(1.0))
    log_sigmoid = lambda x: -math.log1p(math.exp(-x))  # noqa: E731
    expected = -(2 / 0.5) * (log_sigmoid(-0.5) + log_sigmoid(1.0)) / 2
    assert expected == pytest.approx(4.0 * (0.974077 + 0.313262) / 2, rel=1e-5)  # the numbers by hand
    assert npo.npo_loss(torch.tensor([1.0, -2.0]), beta=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_npo_tends_to_ga_for_small_beta():
    """-(2/b) log sigmoid(-b x) = (2/b) log 2 + x + O(b): the gradient in x is GA's (+1 on log pi)."""
    x = torch.tensor([0.3, -1.2, 2.0])
    beta = 1e-4
    assert (npo.npo_loss(x, beta) - 2 / beta * math.log(2)).item() == pytest.approx(x.mean().item(), abs=1e-3)


def test_npo_forget_loss_uses_sequence_log_ratio(micro_model, micro_task):
    """With the reference equal to the model the ratio is 1: L = (2/beta) log 2; after a change it follows the
    formula with the summed answer log-probabilities."""
    batch = _batch(micro_task)
    method = npo.NPO(npo.NPOConfig(beta=0.4))
    method.reference = frozen_copy(micro_model)
    assert method.forget_loss(micro_model, batch).item() == pytest.approx(2 / 0.4 * math.log(2), rel=1e-5)
    changed = frozen_copy(micro_model)
    with torch.no_grad():
        changed.lm_head.weight.mul_(1.5)
    ratio = sequence_logprob(changed, batch) - sequence_logprob(micro_model, batch)
    expected = -(2 / 0.4) * torch.nn.functional.logsigmoid(-0.4 * ratio).mean()
    assert method.forget_loss(changed, batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_npo_mllmu_bench_variant_uses_batch_mean_nll(micro_model, micro_task):
    batch = _batch(micro_task)
    method = npo.NPO(npo.NPOConfig(beta=0.4, log_ratio="batch_token_mean"))
    method.reference = frozen_copy(micro_model)
    changed = frozen_copy(micro_model)
    with torch.no_grad():
        changed.lm_head.weight.mul_(1.5)
    ratio = answer_nll(micro_model, batch) - answer_nll(changed, batch)  # -(NLL_theta - NLL_ref)
    expected = -(2 / 0.4) * torch.nn.functional.logsigmoid(-0.4 * ratio)
    assert method.forget_loss(changed, batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_kl_retain_term_is_zero_at_the_reference(micro_model, micro_task):
    retain = _batch(micro_task, micro_task.retain[:6])
    method = kl.KLMinimisation()
    method.reference = frozen_copy(micro_model)
    assert method.retain_loss(micro_model, retain).item() == pytest.approx(0.0, abs=1e-6)
    changed = frozen_copy(micro_model)
    with torch.no_grad():
        changed.lm_head.weight.add_(0.5 * torch.randn_like(changed.lm_head.weight))
    assert method.retain_loss(changed, retain).item() > 1e-3


def test_kl_helper_matches_the_definition(micro_model, micro_task):
    """KL(p_ref || p) = sum p_ref (log p_ref - log p), averaged over the answer positions (with a mask)."""
    retain = _batch(micro_task, micro_task.retain[:4])
    logits = shifted_logits(micro_model, retain)
    reference = logits + torch.randn_like(logits)
    mask = retain["labels"][:, 1:] != -100
    log_p, log_q = torch.log_softmax(logits[mask], -1), torch.log_softmax(reference[mask], -1)
    expected = (log_q.exp() * (log_q - log_p)).sum(-1).mean()
    assert kl_to_reference(logits, reference, mask).item() == pytest.approx(expected.item(), rel=1e-5)


def test_fidelity_kl_retain_term_is_open_unlearnings_every_position_kl(micro_model, micro_task):
    """The default retain term is open-unlearning's `compute_kl_divergence` (d3d7cf9, src/trainer/utils.py): the
    logits of every position flattened to (B*T, V), F.kl_div(log p_model, log p_ref, 'batchmean', log_target=True);
    written out here as the mean over all B*T positions of sum_v p_ref (log p_ref - log p_model)."""
    retain = _batch(micro_task, micro_task.retain[:4])
    method = kl.KLMinimisation()  # official defaults: every position
    method.reference = frozen_copy(micro_model)
    changed = frozen_copy(micro_model)
    with torch.no_grad():
        changed.lm_head.weight.add_(0.3 * torch.randn_like(changed.lm_head.weight))
        log_p = torch.log_softmax(changed(**model_inputs(retain)).logits.float(), -1)
        log_q = torch.log_softmax(micro_model(**model_inputs(retain)).logits.float(), -1)
    expected = (log_q.exp() * (log_q - log_p)).sum(-1).mean()  # mean over batch x positions
    assert method.retain_loss(changed, retain).item() == pytest.approx(expected.item(), rel=1e-5)
    answers_only = kl.KLMinimisation(kl.KLConfig(kl_positions="answer"))
    answers_only.reference = method.reference
    assert answers_only.retain_loss(changed, retain).item() != pytest.approx(expected.item(), rel=1e-3)
