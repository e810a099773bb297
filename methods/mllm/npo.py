"""Negative Preference Optimization (NPO; Zhang et al., 2024, arXiv 2404.05868) on a multimodal LLM, a baseline of
MLLMU-Bench (catalog id `liu2024protecting`) and CLEAR (`dontsov2024clear`).

Follows locuslab/open-unlearning@d3d7cf9, src/trainer/unlearn/npo.py (the NPO paper's form); MLLMU-Bench's form
(franciscoliu/MLLMU-Bench@0e3098e, baselines/NPO.py) is the config `log_ratio="batch_token_mean", beta=0.4,
retain_weight=0.0`.

NPO keeps only the "losing" half of DPO: the forget answers are dispreferred relative to a frozen reference,

    L_NPO = -(2 / beta) * E_{D_f} log sigmoid( -beta * log( pi_theta(y|x) / pi_ref(y|x) ) )

which tends to GA as beta -> 0, and whose gradient fades once pi_theta(y|x) has fallen well below pi_ref(y|x)
(the reason NPO collapses more slowly than GA). Like open-unlearning's `NPO(GradDiff)`, this file extends
GradDiff: total loss = gamma * L_NPO + alpha * L_NLL(D_r) (the paper's "NPO + RT" when alpha > 0).

Two definitions are in use; the defaults follow the NPO paper and open-unlearning:

| | NPO paper / open-unlearning (default) | MLLMU-Bench script |
|---|---|---|
| log pi(y|x) | per sequence: summed answer-token log-probs | batch-mean token NLL (one scalar per batch) |
| beta | 0.1 | 0.4 |
| reference | the fine-tuned model | a model fine-tuned on the retain split ("oracle") |
| retain term | alpha = 1 (open-unlearning) | none (alpha = 0) |

Set `log_ratio="batch_token_mean", beta=0.4, retain_weight=0.0` for MLLMU-Bench's form (its retain-trained
reference is not reproduced: the reference here is always the fine-tuned model).

Steps (the loop is GA's, see `ga.py`):
  1. freeze a copy of the fine-tuned model as pi_ref;
  2. each step: a forget batch (and a retain batch when alpha > 0);
  3. log-ratio = log pi_theta(y|x) - log pi_ref(y|x) per forget answer; L_NPO as above;
  4. loss = gamma * L_NPO + alpha * NLL(retain answers); backward, AdamW step, linear decay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..core.config import check_config
from .graddiff import GradDiffConfig, GradientDifference
from .losses import answer_nll, sequence_logprob


@dataclass
class NPOConfig(GradDiffConfig):
    beta: float = 0.1  # [NPO paper, open-unlearning]; MLLMU-Bench uses 0.4 [official code]
    log_ratio: str = "sequence"  # "sequence" [NPO paper, open-unlearning] or "batch_token_mean" [MLLMU-Bench]
    retain_weight: float = 1.0  # alpha [open-unlearning NPO = GradDiff + NPO forget term]; MLLMU-Bench: 0

    def __post_init__(self):
        super().__post_init__()
        check_config(self, {"log_ratio": ("sequence", "batch_token_mean")}, beta="(0,1e3]")


def npo_loss(log_ratio: torch.Tensor, beta: float) -> torch.Tensor:
    """-(2/beta) * mean log sigmoid(-beta * log_ratio), where log_ratio = log pi_theta(y|x) - log pi_ref(y|x)."""
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


class NPO(GradientDifference):
    config_class = NPOConfig
    needs_reference = True

    def log_ratio(self, model, forget_batch: dict) -> torch.Tensor:
        if self.config.log_ratio == "sequence":
            with torch.no_grad():
                reference = sequence_logprob(self.reference, forget_batch)
            return sequence_logprob(model, forget_batch) - reference
        # MLLMU-Bench: NLL is a batch-mean over tokens, so the ratio is one scalar: -(NLL_theta - NLL_ref)
        with torch.no_grad():
            reference_nll = answer_nll(self.reference, forget_batch)
        return (reference_nll - answer_nll(model, forget_batch)).reshape(1)

    def forget_loss(self, model, forget_batch: dict) -> torch.Tensor:
        return npo_loss(self.log_ratio(model, forget_batch), self.config.beta)


def unlearn(model, task, config: Optional[NPOConfig] = None, callback: Optional[Callable] = None) -> dict:
    """NPO; edits `model` in place and returns the run's info."""
    return NPO(config).run(model, task, callback)
