"""SCRUB (Kurmanji et al., NeurIPS 2023; catalog id `kurmanji2023unbounded`) as CLEAR adapts it to multimodal LLMs
(`dontsov2024clear`): a teacher-student method.

Follows somvy/multimodal_unlearning@bb14c96, mm/trainer.py (`MMTrainerForgetting.compute_loss`, loss "scrub") and
config/mm/forget.yaml.

The student starts as a copy of the teacher (the model before unlearning). It is pushed away from the teacher on the
forget questions and kept close to it, and to the answers, on the retain questions:

    min_theta  -beta * KL( p_theta || p_teacher )(D_f) + KL( p_theta || p_teacher )(D_r) + L_NLL(D_r),   beta = 1

Each KL sums over the vocabulary at every position of the batch (prompt, image tokens and padding included) and
averages over the positions (CLEAR's `kl_div(teacher log-probs, student log-probs, 'batchmean', log_target=True)`,
i.e. the student's distribution first); `kl_positions="answer"` restricts both to the answer positions. The paper's
SCRUB alternates max-steps on the forget set with min-steps on the retain set and takes KL(teacher || student);
CLEAR sums the three terms into one loss per step, which is what this card does.

Steps (the loop is GA's, see `ga.py`):
  1. freeze a copy of the model before unlearning as the teacher;
  2. each step: a forget batch and a random retain batch;
  3. loss = -beta * KL_f + KL_r + NLL(retain answers);
  4. backward, clipping, AdamW step, warm-up then linear decay (CLEAR: one epoch of five).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..core.config import check_config
from .divergence import POSITIONS, full_logits, kl_rows, position_logits, select_positions
from .graddiff import GradDiffConfig, GradientDifference
from .losses import nll_from_logits
from .schedules import WarmupSchedule, check_schedule


@dataclass
class SCRUBConfig(GradDiffConfig):
    """Defaults are CLEAR's (somvy/multimodal_unlearning@bb14c96: config/mm/forget.yaml and mm/forget.py's
    TrainingArguments); a testbed's adaptations are declared in methods/registry.yaml."""

    learning_rate: float = 1e-5  # lr: 1e-5
    weight_decay: float = 0.01  # weight_decay: 0.01
    lr_schedule: str = "linear"  # the Trainer's default scheduler
    warmup_fraction: float = 0.2  # warmup_steps = one epoch's steps, of num_epochs 5
    max_grad_norm: Optional[float] = 1.0  # the Trainer's default (max_grad_norm is commented out in forget.py)
    epochs: int = 5  # num_epochs: 5
    forget_batch_size: int = 8  # batch_size 2 x gradient_accumulation_steps 4
    retain_batch_size: int = 8  # one retain item per forget item
    forget_modalities: tuple = ("visual", "text")  # forget10+tofu: the people's image and text questions
    forget_weight: float = 1.0  # beta: loss_beta 1.0
    retain_weight: float = 1.0  # weight of KL_r (1 in compute_loss)
    retain_nll_weight: float = 1.0  # weight of the retain task loss (retain_outputs.loss, 1 in compute_loss)
    kl_positions: str = "all"  # "all" [CLEAR: every position] or "answer"

    def __post_init__(self):
        check_schedule(self, super().__post_init__)
        check_config(self, {"kl_positions": POSITIONS}, retain_nll_weight="[0,1e3]")


class SCRUB(WarmupSchedule, GradientDifference):
    config_class = SCRUBConfig
    needs_reference = True

    @property
    def uses_retain(self) -> bool:
        return True

    def divergence(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """KL(student || teacher) over the chosen positions, from the student's (B, T, V) logits."""
        student = select_positions(logits, batch, self.config.kl_positions)
        with torch.no_grad():
            teacher = position_logits(self.reference, batch, self.config.kl_positions)
        return kl_rows(student, teacher)

    def forget_loss(self, model, forget_batch: dict) -> torch.Tensor:
        """-KL_f: move away from the teacher on the forget questions (weighted by beta in `loss`)."""
        return -self.divergence(full_logits(model, forget_batch), forget_batch)

    def retain_loss(self, model, retain_batch: dict) -> torch.Tensor:
        """KL_r + NLL_r (weighted): stay with the teacher, and the answers, on the retain questions."""
        logits = full_logits(model, retain_batch)
        loss = self.config.retain_weight * self.divergence(logits, retain_batch)
        if self.config.retain_nll_weight:
            loss = loss + self.config.retain_nll_weight * nll_from_logits(logits[:, :-1], retain_batch)
        return loss

    def loss(self, model, forget_batch: dict, retain_batch: Optional[dict]) -> torch.Tensor:
        return self.config.forget_weight * self.forget_loss(model, forget_batch) + self.retain_loss(model, retain_batch)


def unlearn(model, task, config: Optional[SCRUBConfig] = None, callback: Optional[Callable] = None) -> dict:
    """SCRUB as CLEAR runs it; edits `model` in place and returns the run's info."""
    return SCRUB(config).run(model, task, callback)
