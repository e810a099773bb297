"""Gradient Difference (GradDiff) on a multimodal LLM, a baseline of MLLMU-Bench (catalog id `liu2024protecting`)
and CLEAR (`dontsov2024clear`).

GradDiff is GA plus ordinary training on the retain set, so that the update that forgets D_f is pulled back
towards keeping D_r:

    min_theta  -gamma * L_NLL(D_f) + alpha * L_NLL(D_r)

Follows locuslab/open-unlearning@d3d7cf9, src/trainer/unlearn/grad_diff.py (one summed loss per step, gamma =
alpha = 1, as CLEAR). MLLMU-Bench's script (franciscoliu/MLLMU-Bench@0e3098e, baselines/GA_Difference.py) differs:
it alternates optimizer steps, a full pass of GA steps over the forget loader and then a full pass of descent steps
over the retain loader each epoch, rather than summing the two losses.

Steps (the loop is GA's, see `ga.py`):
  1. each step draws a forget batch and a random retain batch;
  2. loss = gamma * (-NLL on the forget answers) + alpha * NLL on the retain answers;
  3. backward, AdamW step, linear decay (clipping only if `max_grad_norm` is set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..core.config import check_config
from .ga import GAConfig, GradientAscent
from .losses import answer_nll


@dataclass
class GradDiffConfig(GAConfig):
    forget_weight: float = 1.0  # gamma [open-unlearning GradDiff default; CLEAR loss_beta 1.0]
    retain_weight: float = 1.0  # alpha [open-unlearning GradDiff default]

    def __post_init__(self):
        super().__post_init__()
        check_config(self, forget_weight="[0,1e3]", retain_weight="[0,1e3]")


class GradientDifference(GradientAscent):
    config_class = GradDiffConfig

    @property
    def uses_retain(self) -> bool:
        return self.config.retain_weight != 0

    def retain_loss(self, model, retain_batch: dict) -> torch.Tensor:
        """+L_NLL(D_r): keep answering the retain questions."""
        return answer_nll(model, retain_batch)

    def loss(self, model, forget_batch: dict, retain_batch: Optional[dict]) -> torch.Tensor:
        loss = self.config.forget_weight * self.forget_loss(model, forget_batch)
        if self.uses_retain:
            loss = loss + self.config.retain_weight * self.retain_loss(model, retain_batch)
        return loss


def unlearn(model, task, config: Optional[GradDiffConfig] = None, callback: Optional[Callable] = None) -> dict:
    """Gradient Difference; edits `model` in place and returns the run's info."""
    return GradientDifference(config).run(model, task, callback)
