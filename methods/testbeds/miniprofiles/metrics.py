"""MiniProfiles' metrics, as MLLMU-Bench defines them: multiple-choice classification accuracy (here by option
likelihood), generation ROUGE-L (and exact match), and the cloze score; per split and question type.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np
import torch

from ...mllm.logprobs import model_inputs
from .data import MiniProfilesData
from .model import Encoded, Encoder


def normalize_answer(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure on normalized words (longest common subsequence); MLLMU-Bench reports rougeL fmeasure.

    Unlike `rouge_score` it does not stem (the testbed's answers have no inflections).
    """
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    lcs = _lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def cloze_hit(prediction: str, reference: str) -> float:
    """MLLMU-Bench's cloze score: the ground truth appears (case-insensitively) in the response."""
    return float(normalize_answer(reference) in normalize_answer(prediction))


def mc_accuracy(option_scores: Sequence[Sequence[float]], correct: Sequence[int]) -> float:
    """Fraction of questions whose highest-likelihood option is the right one (ties go to the first option)."""
    if len(correct) == 0:
        return float("nan")
    return float(np.mean([int(np.argmax(scores)) == c for scores, c in zip(option_scores, correct)]))


SPLITS = ("forget", "forget_paraphrase", "retain", "retain_paraphrase", "real_world", "visual_utility",
          "forget_harmless", "retain_harmless")


RECORD_KEYS = {"mc_acc": "mc", "gen_em": "em", "gen_rougeL": "rougeL", "cloze": "cloze"}  # metric -> record key


@torch.no_grad()
def score_options(model, encoder: Encoder, rows: Sequence[Encoded], batch_size: int) -> list:
    """Sum of option-token log-probabilities log p(option | prompt), per row and option (lm-eval style).

    Options that share all but their last token share one forward pass (chain rule): the pass scores the shared
    prefix with teacher forcing and reads every option's last token off the final position. Single-token options
    (cities, jobs, years, colours) thus cost one pass per question instead of one per option.
    """
    groups = {}  # (row index, shared prefix) -> [(option index, last token)]
    for i, row in enumerate(rows):
        for j, ids in enumerate(row.option_ids):
            groups.setdefault((i, tuple(ids[:-1])), []).append((j, ids[-1]))
    # sorted by length, so that a batch pads little (visual rows are ~2x longer than text-only rows)
    keys = sorted(groups, key=lambda key: len(rows[key[0]].prompt_ids) + len(key[1]))
    scores = [[0.0] * len(row.option_ids) for row in rows]
    for start in range(0, len(keys), batch_size):
        chunk = keys[start : start + batch_size]
        batch = encoder.batch([rows[i] for i, _ in chunk], targets=[prefix for _, prefix in chunk])
        logits = model(**model_inputs(batch)).logits.float()
        logprobs = torch.log_softmax(logits, dim=-1)
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        prefix_scores = (logprobs[:, :-1].gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask).sum(-1)
        last = batch["attention_mask"].sum(-1) - 1  # right padding: the last real position
        final = logprobs[torch.arange(len(chunk)), last]  # next-token distribution after prompt + prefix
        for b, key in enumerate(chunk):
            for j, token in groups[key]:
                scores[key[0]][j] = float(prefix_scores[b] + final[b, token])
    return scores


@torch.no_grad()
def generate_answers(model, encoder: Encoder, rows: Sequence[Encoded], batch_size: int, max_new_tokens: int) -> list:
    """Greedy answers via `model.generate` on left-padded prompts (visual and text rows batched apart)."""
    answers = [""] * len(rows)
    for modality in ("visual", "text"):
        index = [i for i, row in enumerate(rows) if row.qa.modality == modality]
        for start in range(0, len(index), batch_size):
            chunk = index[start : start + batch_size]
            batch = encoder.batch([rows[i] for i in chunk], targets=[()] * len(chunk), left_pad=True)
            out = model.generate(
                **model_inputs(batch),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=encoder.pad_id,
                eos_token_id=encoder.eos_id,
            )
            new_tokens = out[:, batch["input_ids"].shape[1] :]
            for i, tokens in zip(chunk, new_tokens.tolist()):
                if encoder.eos_id in tokens:
                    tokens = tokens[: tokens.index(encoder.eos_id)]
                answers[i] = encoder.tokenizer.decode(tokens, skip_special_tokens=True).strip()
    return answers


@torch.no_grad()
def evaluate_items(model, encoder: Encoder, rows: Sequence[Encoded], batch_size: int, max_new_tokens: int,
                   generate: bool = True) -> dict:  # fmt: skip
    """Per-question records {qid: {mc, em, rougeL | cloze, answer}} for encoded eval questions."""
    was_training = model.training
    model.eval()
    records = {row.qa.qid: {} for row in rows}
    mc_rows = [row for row in rows if row.option_ids]
    for row, scores in zip(mc_rows, score_options(model, encoder, mc_rows, batch_size)):
        records[row.qa.qid]["mc"] = float(int(np.argmax(scores)) == row.qa.correct_option)
    if generate:
        for row, answer in zip(rows, generate_answers(model, encoder, rows, batch_size, max_new_tokens)):
            record = records[row.qa.qid]
            record["answer"] = answer
            if row.qa.kind == "cloze":
                record["cloze"] = cloze_hit(answer, row.qa.answer)
            else:
                record["em"] = exact_match(answer, row.qa.answer)
                record["rougeL"] = rouge_l(answer, row.qa.answer)
    model.train(was_training)
    return records


def split_questions(data: MiniProfilesData, forget_ids: Sequence[str]) -> dict:
    """split -> eval QA items. Paraphrase splits are MLLMU-Bench's Test set (and its retain counterpart); harmless
    splits are the colour questions on the forget (retain) people's images."""
    forget = set(forget_ids)
    out = {name: [] for name in SPLITS}
    suffix = {"paraphrase": "_paraphrase", "harmless": "_harmless"}
    for q in list(data.eval_items) + list(data.harmless_items):
        if q.group == "fictitious":
            side = "forget" if q.pid in forget else "retain"
            out[side + suffix.get(q.kind, "")].append(q)
        elif q.group in ("celebrity", "world"):
            out["real_world"].append(q)
        else:
            out["visual_utility"].append(q)
    return out


def summarise(records: dict, data: MiniProfilesData, forget_ids: Sequence[str]) -> dict:
    """split -> {"visual"|"text"|"all": {metric: value}}; NaN where a split has no such question."""
    table = {}
    for split, questions in split_questions(data, forget_ids).items():
        table[split] = {}
        for modality in ("visual", "text", "all"):
            chosen = [q for q in questions if modality in ("all", q.modality)]
            row = {}
            for metric, key in RECORD_KEYS.items():  # cloze records carry only "cloze", the others no "cloze"
                values = [records[q.qid][key] for q in chosen if key in records.get(q.qid, {})]
                row[metric] = float(np.mean(values)) if values else float("nan")
            table[split][modality] = row
    return table


def headline(table: dict) -> dict:
    """The pooled headline figures: MC accuracy averaged over the visual and text questions of each split."""

    def pooled(split):
        values = [table[split][m]["mc_acc"] for m in ("visual", "text") if not math.isnan(table[split][m]["mc_acc"])]
        return float(np.mean(values)) if values else float("nan")

    return {
        "forget_acc": pooled("forget"),
        "forget_paraphrase_acc": pooled("forget_paraphrase"),
        "retain_acc": pooled("retain"),
        "real_world_acc": pooled("real_world"),
        "utility_acc": pooled("visual_utility"),
        "harmless_forget_acc": pooled("forget_harmless"),
    }
