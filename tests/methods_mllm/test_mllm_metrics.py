"""MiniProfiles metrics on hand-computed cases: ROUGE-L, exact match, cloze, multiple-choice accuracy."""

import math

import numpy as np
import pytest
import torch

from methods.testbeds import miniprofiles as mp


def test_rouge_l_hand_cases():
    # LCS("the cat sat on the mat", "the cat on the mat") = 5 words: P = 5/6, R = 5/5, F = 2PR/(P+R) = 10/11
    assert mp.rouge_l("the cat sat on the mat", "the cat on the mat") == pytest.approx(10 / 11)
    # order matters (subsequence, not bag of words): LCS("b a", "a b") = 1 -> P = R = F = 1/2
    assert mp.rouge_l("b a", "a b") == pytest.approx(0.5)
    assert mp.rouge_l("Anna Smith", "anna smith") == 1.0  # normalised
    assert mp.rouge_l("anna", "anna smith") == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # P = 1, R = 1/2
    assert mp.rouge_l("paris", "rome") == 0.0
    assert mp.rouge_l("", "rome") == 0.0
    assert mp.rouge_l("", "") == 1.0


def test_exact_match_and_cloze():
    assert mp.exact_match(" Paris. ", "paris") == 1.0
    assert mp.exact_match("paris france", "paris") == 0.0
    assert mp.cloze_hit("she was born in Paris .", "paris") == 1.0
    assert mp.cloze_hit("rome", "paris") == 0.0
    assert mp.normalize_answer("  Anna,  SMITH! ") == "anna smith"


def test_mc_accuracy_hand_cases():
    scores = [[-1.0, -0.5, -3.0], [-2.0, -2.5, -0.1], [0.0, 0.0, -1.0]]
    # argmax: 1, 2, 0 (ties go to the first option)
    assert mp.mc_accuracy(scores, [1, 0, 0]) == pytest.approx(2 / 3)
    assert math.isnan(mp.mc_accuracy([], []))


def test_option_scores_match_one_pass_per_option(micro_bundle, micro_model):
    """The shared-prefix scoring equals scoring every option in its own sequence (names have 2 tokens)."""
    _, data, encoder = micro_bundle
    rows = [r for r in encoder.encode(data.eval_items) if r.option_ids]
    rows = [r for r in rows if r.qa.attribute == "name"][:3] + [r for r in rows if r.qa.attribute != "name"][:3]
    fast = mp.score_options(micro_model, encoder, rows, batch_size=7)
    with torch.no_grad():
        for row, scores in zip(rows, fast):
            batch = encoder.batch([row] * len(row.option_ids), targets=list(row.option_ids))
            logprobs, _ = mp.answer_token_logprobs(micro_model, batch)
            np.testing.assert_allclose(logprobs.sum(-1).numpy(), scores, rtol=1e-5, atol=1e-5)


def test_options_contain_the_answer_once(micro_bundle):
    config, data, _ = micro_bundle
    for q in data.eval_items:
        if q.kind == "cloze":
            assert q.options == ()
            continue
        assert q.options.count(q.answer) == 1
        assert len(set(q.options)) == len(q.options) <= config.mc_options


def test_summary_splits_and_headline(micro_bundle):
    """Perfect records give 1.0 everywhere; forget / retain follow the forget ids; NaN where nothing applies."""
    _, data, _ = micro_bundle
    records = {q.qid: ({"cloze": 1.0} if q.kind == "cloze" else {"mc": 1.0, "em": 1.0, "rougeL": 1.0})
               for q in data.eval_items + data.harmless_items}  # fmt: skip
    forget_ids = data.fictitious_ids[:2]
    questions = mp.split_questions(data, forget_ids)
    assert {q.pid for q in questions["forget"]} == set(forget_ids)
    assert not {q.pid for q in questions["retain"]} & set(forget_ids)
    assert all(q.kind == "paraphrase" for q in questions["forget_paraphrase"])
    assert {q.pid for q in questions["forget_harmless"]} == set(forget_ids)
    assert {q.kind for q in questions["forget_harmless"] + questions["retain_harmless"]} == {"harmless"}
    table = mp.summarise(records, data, forget_ids)
    assert table["forget"]["visual"]["mc_acc"] == 1.0 and table["retain"]["text"]["cloze"] == 1.0
    assert math.isnan(table["visual_utility"]["text"]["mc_acc"])
    assert mp.headline(table) == {k: 1.0 for k in mp.headline(table)}
