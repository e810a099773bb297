"""KL divergences between two models' next-token distributions at chosen positions, as CLEAR and SafeEraser take
them: log-softmax over the vocabulary, every position of the batch flattened into rows, and `F.kl_div(...,
reduction="batchmean", log_target=True)`, which divides the summed divergence by the number of rows."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .logprobs import model_inputs

POSITIONS = ("all", "answer")


def full_logits(model, batch: dict) -> torch.Tensor:
    """(B, T, V) float logits of every position (unshifted)."""
    return model(**model_inputs(batch)).logits.float()


def select_positions(logits: torch.Tensor, batch: dict, positions: str = "all") -> torch.Tensor:
    """(rows, V) logits: every position of every sequence ("all": prompt, image tokens and padding included, as
    CLEAR's `logits2probs(...).view(-1, V)`), or only the positions that predict an answer token ("answer")."""
    if positions == "all":
        return logits.reshape(-1, logits.shape[-1])
    if positions == "answer":
        return logits[:, :-1][batch["labels"][:, 1:] != -100]
    raise ValueError(f"unknown positions {positions!r}; use one of: {', '.join(POSITIONS)}")


def position_logits(model, batch: dict, positions: str = "all") -> torch.Tensor:
    """`select_positions` of a model's logits on a batch."""
    return select_positions(full_logits(model, batch), batch, positions)


def kl_rows(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_v p (log p - log q), averaged over the rows: `F.kl_div(log q, log p, 'batchmean',
    log_target=True)`."""
    log_p = torch.log_softmax(p_logits, dim=-1)
    log_q = torch.log_softmax(q_logits, dim=-1)
    return F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
