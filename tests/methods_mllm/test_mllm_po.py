"""PO (refusal training): the forget questions are retargeted to refusals from the testbed's list, the model gets
embedding rows for the refusal words, and the loss is NLL(refusals) + gamma * NLL(retain) (transformers' own loss)."""

import copy

import pytest
import torch

from methods.mllm import po
from methods.mllm.logprobs import model_inputs
from methods.testbeds.miniprofiles import data as mp_data


def builtin_nll(model, batch):
    """transformers' `labels=` loss: the token-mean cross-entropy of the labelled (answer) tokens."""
    return model(**model_inputs(batch), labels=batch["labels"]).loss


def test_forget_rows_get_refusals_and_the_model_gets_rows_for_their_words(micro_model, micro_task):
    model = copy.deepcopy(micro_model)
    old = model.get_input_embeddings().weight.detach().clone()
    method = po.RefusalPO(po.POConfig())
    method.prepare(model, micro_task)
    tokenizer = micro_task.tokenizer
    assert method.added_tokens == len(mp_data.refusal_vocab())
    assert model.get_input_embeddings().num_embeddings == model.lm_head.out_features == len(tokenizer)
    assert torch.equal(model.get_input_embeddings().weight[: len(old)], old)  # existing rows untouched
    rows = method.forget_rows(micro_task)
    assert [r.qa.qid for r in rows] == [r.qa.qid for r in micro_task.forget]  # both modalities (UMU-Bench)
    texts = [tokenizer.decode(list(r.answer_ids[:-1])) for r in rows]
    assert set(texts) <= set(mp_data.REFUSALS) and len(set(texts)) > 1
    assert texts == [tokenizer.decode(list(r.answer_ids[:-1])) for r in method.forget_rows(micro_task)]  # seeded


def test_po_loss_is_refusal_nll_plus_gamma_retain_nll(micro_model, micro_task):
    model = copy.deepcopy(micro_model)
    method = po.RefusalPO(po.POConfig(retain_weight=2.0))
    method.prepare(model, micro_task)
    forget = micro_task.batch(method.forget_rows(micro_task)[:6], None)
    retain = micro_task.batch(micro_task.retain[:5], None)
    expected = builtin_nll(model, forget) + 2.0 * builtin_nll(model, retain)
    assert method.loss(model, forget, retain).item() == pytest.approx(expected.item(), rel=1e-5)


def test_training_makes_the_model_refuse(micro_model, micro_task):
    model = copy.deepcopy(micro_model)
    config = po.POConfig(learning_rate=3e-2, steps=25, forget_batch_size=16, retain_batch_size=4)
    info = po.unlearn(model, micro_task, config)
    assert info["added_tokens"] > 0 and info["loss_history"][-1] < info["loss_history"][0]
    row = micro_task.forget[0]
    batch = micro_task.prompt_batch([row])
    with torch.no_grad():
        out = model.generate(**model_inputs(batch), max_new_tokens=8, do_sample=False,
                             pad_token_id=micro_task.tokenizer.pad_token_id)
    answer = micro_task.tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True).split()
    assert answer and answer[0] in {refusal.split()[0] for refusal in mp_data.REFUSALS}  # it starts refusing
