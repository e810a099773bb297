"""Gradient Ascent (GA) on a multimodal LLM, the first baseline of MLLMU-Bench (catalog id `liu2024protecting`)
and CLEAR (`dontsov2024clear`).

Follows franciscoliu/MLLMU-Bench@0e3098e, baselines/GA.py (the loop without gradient accumulation, its default).

GA undoes fine-tuning by climbing the loss of the forget answers:

    min_theta  -L_NLL(D_f),   L_NLL = token-averaged cross-entropy of the answer tokens

MLLMU-Bench negates `outputs.loss` on the forget loader and takes AdamW steps with a linear decay and no gradient
clipping (`max_grad_norm=None`; its gradient-accumulation branch, off by default, clips at 1.0). Nothing anchors the
rest of the model, so GA is fast and destructive: MLLMU-Bench reports that it erases retain and real-world
knowledge along with the forget set. The other cards of this package reuse GA's loop and override only their loss
(open-unlearning style): GradDiff and KL add a retain term, NPO replaces the forget term, and MMUnlearner masks the
forget update.

Steps of `GradientAscent.run`:
  1. keep a frozen copy of the model when the loss needs a reference (KL, NPO);
  2. pick the forget questions of the unlearned modalities (MLLMU-Bench: the image + question pairs);
  3. each step: a forget batch (and a retain batch for cards that use one), the card's loss, backward, gradient
     clipping if `max_grad_norm` is set, an AdamW step, the learning-rate schedule;
  4. report the loss history and the time taken.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..core.config import ConfigError, check_config
from ..core.models import frozen_copy
from .losses import answer_nll


@dataclass
class GAConfig:
    """Defaults are MLLMU-Bench's for LLaVA-1.5-7B (franciscoliu/MLLMU-Bench@0e3098e, README commands and
    `unlearn/GA.py`); a testbed's adaptations are declared in methods/registry.yaml."""

    learning_rate: float = 2e-5  # README commands (argparse default 5e-4)
    weight_decay: float = 0.0  # transformers AdamW default
    lr_schedule: str = "linear"  # get_scheduler("linear"), no warm-up; or "constant"
    max_grad_norm: Optional[float] = None  # no clipping in the default loop; a number clips the gradient norm
    epochs: int = 1  # README commands
    steps: Optional[int] = None  # None: `epochs` passes over the forget set; a number fixes the step count instead
    forget_batch_size: int = 4  # README: batch 4
    retain_batch_size: int = 4  # used by cards with a retain term
    # Which forget questions are unlearned: MLLMU-Bench's scripts unlearn the image + question pairs.
    forget_modalities: tuple = ("visual",)

    def __post_init__(self):
        check_config(self, {"lr_schedule": ("linear", "constant"), "forget_modalities": ("visual", "text")},
                     learning_rate="(0,1]", weight_decay="[0,1]", max_grad_norm="(0,1e6]", epochs=">=1", steps=">=1",
                     forget_batch_size=">=1", retain_batch_size=">=1")
        if not self.forget_modalities:
            raise ConfigError(f"{type(self).__name__}.forget_modalities must name at least one of 'visual', 'text'")

    def total_steps(self, n_forget: int) -> int:
        """`steps`, or `epochs` passes over `n_forget` questions in batches of `forget_batch_size`."""
        return self.steps if self.steps is not None else self.epochs * math.ceil(n_forget / self.forget_batch_size)


class GradientAscent:
    """GA; subclasses override `forget_loss`, `retain_loss` and `loss` (and `needs_reference`)."""

    config_class = GAConfig
    needs_reference = False  # KL and NPO compare against the model before unlearning

    def __init__(self, config: Optional[GAConfig] = None):
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise ValueError(f"config must be a {self.config_class.__name__}, got {type(self.config).__name__}")
        self.reference = None

    # --- the loss, overridden by the variants -----------------------------------------------------------------
    @property
    def uses_retain(self) -> bool:
        return False

    def forget_loss(self, model, forget_batch: dict) -> torch.Tensor:
        """-L_NLL(D_f): ascend the cross-entropy of the forget answers."""
        return -answer_nll(model, forget_batch)

    def retain_loss(self, model, retain_batch: dict) -> torch.Tensor:
        raise NotImplementedError("GA has no retain term")

    def loss(self, model, forget_batch: dict, retain_batch: Optional[dict]) -> torch.Tensor:
        return self.forget_loss(model, forget_batch)

    # --- the loop ---------------------------------------------------------------------------------------------
    def forget_rows(self, task) -> list:
        rows = [row for row in task.forget if row.qa.modality in self.config.forget_modalities]
        if not rows:
            raise ValueError(f"no forget questions for forget_modalities={self.config.forget_modalities}")
        return rows

    def make_optimizer(self, params, total_steps: int):
        optimizer = torch.optim.AdamW(params, lr=self.config.learning_rate, weight_decay=self.config.weight_decay)
        if self.config.lr_schedule == "linear":
            schedule = lambda step: max(0.0, 1.0 - step / max(1, total_steps))  # noqa: E731
        elif self.config.lr_schedule == "constant":
            schedule = lambda step: 1.0  # noqa: E731
        else:
            raise ValueError(f"unknown lr_schedule {self.config.lr_schedule!r}; use 'linear' or 'constant'")
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    def prepare(self, model, task) -> None:
        """Step 1: the frozen reference (the fine-tuned model itself, before any update)."""
        self.reference = frozen_copy(model) if self.needs_reference else None

    def run(self, model, task, callback: Optional[Callable] = None) -> dict:
        """Unlearn in place. `callback(step, model)` is called after every step (the pipeline's trade-off curve)."""
        cfg = self.config
        start = time.perf_counter()
        # 1. reference model, if the loss compares against one
        self.prepare(model, task)
        # 2. the forget questions; seeded generators make batches and random views reproducible
        generator = torch.Generator().manual_seed(int(task.seed))
        forget_rows = self.forget_rows(task)
        forget_batches = _cycle_batches(forget_rows, cfg.forget_batch_size, generator)
        total_steps = cfg.total_steps(len(forget_rows))
        model.requires_grad_(True)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer, scheduler = self.make_optimizer(params, total_steps)
        history, callback_time = [], 0.0
        for step in range(1, total_steps + 1):
            # 3. one step of the method's loss
            forget_batch = task.batch(next(forget_batches), generator)
            retain_batch = task.batch(_sample(task.retain, cfg.retain_batch_size, generator), generator) \
                if self.uses_retain else None  # fmt: skip
            loss = self.loss(model, forget_batch, retain_batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            history.append(float(loss.detach()))
            if callback is not None:
                tick = time.perf_counter()
                callback(step, model)
                callback_time += time.perf_counter() - tick
        # 4. hand the model back frozen, as it came
        model.eval()
        model.requires_grad_(False)
        self.reference = None
        return {"loss_history": history, "steps": total_steps,
                "unlearn_time_s": time.perf_counter() - start - callback_time}  # fmt: skip


def _cycle_batches(rows: list, batch_size: int, generator: torch.Generator):
    """Endless batches over `rows`, reshuffled each pass (one batch per step when rows fit in a batch)."""
    for _ in itertools.count():
        order = torch.randperm(len(rows), generator=generator).tolist()
        for start in range(0, len(rows), batch_size):
            yield [rows[i] for i in order[start : start + batch_size]]


def _sample(rows: list, batch_size: int, generator: torch.Generator) -> list:
    """A random batch without replacement (the retain set is large; each step sees a fresh sample)."""
    order = torch.randperm(len(rows), generator=generator)[: min(batch_size, len(rows))].tolist()
    return [rows[i] for i in order]


def unlearn(model, task, config: Optional[GAConfig] = None, callback: Optional[Callable] = None) -> dict:
    """Gradient Ascent on `task.forget`; edits `model` in place and returns the run's info."""
    return GradientAscent(config).run(model, task, callback)
