"""MiniProfiles' additions for the newer cards: harmless questions on the profile images (evaluated apart, never
trained) and refusal answers whose words extend the tokenizer after the trained vocabulary."""

import copy

import numpy as np
import torch

from mllm_micro import MICRO

from methods.registry import load_registry
from methods.testbeds import miniprofiles as mp
from methods.testbeds.miniprofiles import data as mp_data


def test_harmless_questions_are_colour_questions_on_each_fictitious_face(micro_bundle):
    config, data, _ = micro_bundle
    items = data.harmless_items
    assert len(items) == 3 * config.n_people
    assert {q.pid for q in items} == set(data.fictitious_ids)
    assert {q.kind for q in items} == {"harmless"} and {q.view for q in items} == {config.n_views - 1}
    by_pid = {p.pid: p for p in data.people}
    for q in items:
        assert q.face == by_pid[q.pid].face and q.question == mp_data.HARMLESS_QUESTIONS[q.attribute]
        assert q.options.count(q.answer) == 1
        if q.attribute == "background":  # the clean view's corner pixel is the background colour
            assert tuple(data.images[q.face, 0, 0, 0]) == mp_data.COLOUR_RGB[q.answer]


def test_harmless_questions_are_never_trained_nor_mixed_into_the_evaluation_pass(micro_bundle):
    _, data, _ = micro_bundle
    harmless = {q.qid for q in data.harmless_items}
    assert not harmless & {q.qid for q in data.eval_items + data.base_items + data.profile_train_items}
    assert all(q.kind != "harmless" for q in data.eval_items + data.base_items + data.profile_train_items)
    training = data.harmless_training_items(data.fictitious_ids[:2])
    assert {q.pid for q in training} == set(data.fictitious_ids[:2]) and {q.view for q in training} == {-1}


def test_refusal_words_extend_the_tokenizer_after_the_trained_vocabulary(micro_bundle, micro_model):
    _, _, encoder = micro_bundle
    trained, refusal = mp_data.build_vocab(), mp_data.refusal_vocab()
    tokenizer = encoder.tokenizer
    assert refusal and not set(refusal) & set(trained)
    assert [tokenizer.convert_tokens_to_ids(w) for w in trained] == list(range(len(trained)))  # ids unchanged
    assert [tokenizer.convert_tokens_to_ids(w) for w in refusal] == list(range(len(trained), len(tokenizer)))
    assert micro_model.get_input_embeddings().num_embeddings == len(trained)  # the model: trained words only
    unk = tokenizer.unk_token_id
    for text in mp_data.REFUSALS:
        assert unk not in tokenizer(text, add_special_tokens=False)["input_ids"]


def test_with_answers_retargets_rows_to_a_refusal(micro_task):
    rows = micro_task.forget[:4]
    answers = [mp_data.REFUSALS[i] for i in range(4)]
    retargeted = micro_task.with_answers(rows, answers)
    tokenizer = micro_task.tokenizer
    for row, new, answer in zip(rows, retargeted, answers):
        assert new.prompt_ids == row.prompt_ids and new.qa == row.qa
        assert new.answer_ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(list(new.answer_ids[:-1])) == answer


def test_the_edited_weights_cache_restores_a_model_with_added_tokens(micro_cache):
    """A card that grows the vocabulary (PO) is cached and restored with its extra embedding rows."""
    registry = load_registry()
    testbed = mp.load_miniprofiles("ci", "cpu", log=lambda _: None, **MICRO)
    card = registry.card("po")
    request = testbed.requests(0)[0]
    edited = testbed.unlearn(card, card.build_config("miniprofiles", steps=2), request, seed=0)
    vocab = edited.model.get_input_embeddings().num_embeddings
    assert vocab == len(testbed.processor.tokenizer) > testbed.model.get_input_embeddings().num_embeddings
    restored = testbed.restore_edited(testbed.edited_tensors(edited), edited.info, request)
    batch = testbed.encoder.batch(testbed.eval_rows[:6])
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        assert torch.equal(restored.model(**inputs).logits, edited.model(**inputs).logits)


def test_base_records_score_the_harmless_questions_in_a_separate_cached_file(micro_cache):
    testbed = mp.load_miniprofiles("ci", "cpu", log=lambda _: None, **MICRO)
    records = testbed.cached_records(testbed.model, testbed.model_dir)
    assert {q.qid for q in testbed.data.harmless_items} <= set(records)
    files = sorted(p.name.split("-")[0] for p in testbed.model_dir.glob("*eval-*.json"))
    assert files == ["eval", "harmless"]
    fresh = testbed.evaluate_records(copy.deepcopy(testbed.model))
    assert fresh == records
    forget = testbed.requests(0)[0].payload
    summary = testbed.summarise(records, forget)
    assert not np.isnan(summary["headline"]["harmless_forget_acc"])
