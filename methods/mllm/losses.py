"""The pieces every MLLM unlearning loss is built from; only code that is identical across cards lives here.

The NLL terms are on the answer tokens only (labels are -100 on the prompt and the image tokens), which is
MLLMU-Bench's and MMUnlearner's `ans_only` setting; the KL term can take every position (see kl.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .logprobs import answer_token_logprobs, label_logprobs, shifted_logits


def answer_nll(model, batch: dict) -> torch.Tensor:
    """Token-averaged NLL of the answer tokens over the whole batch: L_NLL, equal to HF's `outputs.loss`."""
    logprobs, mask = answer_token_logprobs(model, batch)
    return -logprobs.sum() / mask.sum().clamp(min=1)


def sequence_logprob(model, batch: dict) -> torch.Tensor:
    """log pi(y | x) of each answer: its token log-probabilities summed, shape (B,)."""
    logprobs, _ = answer_token_logprobs(model, batch)
    return logprobs.sum(-1)


def kl_to_reference(logits: torch.Tensor, reference_logits: torch.Tensor, mask=None) -> torch.Tensor:
    """KL(p_ref || p_model) over the vocabulary, averaged over positions: every position of the (B, T, V) logits, or
    those where `mask` (B, T) is true.

    `F.kl_div(input=log p_model, target=log p_ref, log_target=True)` sums p_ref * (log p_ref - log p_model);
    'batchmean' divides by the rows, here the positions (open-unlearning's `compute_kl_divergence` flattens the
    positions before 'batchmean').
    """
    if mask is None:
        rows, reference_rows = logits.reshape(-1, logits.shape[-1]), reference_logits.reshape(-1, logits.shape[-1])
    else:
        rows, reference_rows = logits[mask], reference_logits[mask]
    log_p_model = torch.log_softmax(rows, dim=-1)
    log_p_reference = torch.log_softmax(reference_rows, dim=-1)
    return F.kl_div(log_p_model, log_p_reference, reduction="batchmean", log_target=True)


def nll_from_logits(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """`answer_nll` for logits already computed (saves a forward pass when a loss needs both NLL and KL)."""
    logprobs, mask = label_logprobs(logits, batch)
    return -logprobs.sum() / mask.sum().clamp(min=1)


__all__ = ["answer_nll", "sequence_logprob", "kl_to_reference", "nll_from_logits", "shifted_logits"]
