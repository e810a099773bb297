"""Log-probability primitives of a LLaVA-style model on a batch with answer labels: what every MLLM loss and every
multiple-choice score is computed from.

A batch is a dict with `input_ids`, `attention_mask`, `labels` (-100 except on the answer tokens, MLLMU-Bench's
`ans_only`) and, when some rows have an image, `pixel_values` for those rows in row order.
"""

from __future__ import annotations

import torch


def model_inputs(batch: dict) -> dict:
    """The forward() keyword arguments of a batch (pixel_values only when present: gotcha 3)."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values") if k in batch}


def shifted_logits(model, batch: dict) -> torch.Tensor:
    """(B, T-1, V) float logits, position t predicting token t+1."""
    return model(**model_inputs(batch)).logits[:, :-1].float()


def label_logprobs(logits: torch.Tensor, batch: dict) -> tuple:
    """Log-probabilities of the label tokens under shifted logits, (B, T-1) (zero off the labels), and the mask."""
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return logprobs * mask, mask


def answer_token_logprobs(model, batch: dict) -> tuple:
    """Log-probabilities of the answer (label) tokens and their mask: the primitive of every loss and score.

    Computed from the logits rather than the built-in `labels=` loss, which is a token mean (gotcha 6).
    """
    return label_logprobs(shifted_logits(model, batch), batch)
