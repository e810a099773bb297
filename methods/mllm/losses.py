"""The pieces every MLLM unlearning loss is built from; only code that is identical across methods lives here.

All losses are on the answer tokens only (labels are -100 on the prompt and the image tokens), which is MLLMU-Bench's
and MMUnlearner's `ans_only` setting.
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


def kl_to_reference(logits: torch.Tensor, reference_logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """KL(p_ref || p_model) over the vocabulary at the answer positions, averaged over those positions.

    Both logits are shifted (position t predicts token t+1, see `shifted_logits`). `F.kl_div(input=log p_model,
    target=log p_ref, log_target=True)` sums p_ref * (log p_ref - log p_model); 'batchmean' divides by the rows,
    here the answer positions (open-unlearning's `compute_kl_divergence` also flattens positions before 'batchmean').
    """
    mask = batch["labels"][:, 1:] != -100
    log_p_model = torch.log_softmax(logits[mask], dim=-1)
    log_p_reference = torch.log_softmax(reference_logits[mask], dim=-1)
    return F.kl_div(log_p_model, log_p_reference, reduction="batchmean", log_target=True)


def nll_from_logits(logits: torch.Tensor, batch: dict) -> torch.Tensor:
    """`answer_nll` for logits already computed (saves a forward pass when a loss needs both NLL and KL)."""
    logprobs, mask = label_logprobs(logits, batch)
    return -logprobs.sum() / mask.sum().clamp(min=1)


__all__ = ["answer_nll", "sequence_logprob", "kl_to_reference", "nll_from_logits", "shifted_logits"]
