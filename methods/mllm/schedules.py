"""Learning-rate schedules with warm-up, for the cards whose official scripts use one: SafeEraser (cosine after 6%
warm-up) and CLEAR (one epoch of warm-up, then linear decay). The multipliers are those of transformers'
`get_scheduler` ("linear", "cosine", "constant_with_warmup"); with no warm-up, "linear" and "constant" are GA's.

A card mixes `WarmupSchedule` into its GA subclass and its config calls `check_schedule` in `__post_init__`.
"""

from __future__ import annotations

import math

import torch

from ..core.config import check_config

SCHEDULES = ("linear", "cosine", "constant")


def lr_multiplier(schedule: str, step: int, warmup_steps: int, total_steps: int) -> float:
    """The learning-rate factor before optimizer step `step` (0-based): linear warm-up from 0, then the shape."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    if schedule == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    raise ValueError(f"unknown lr_schedule {schedule!r}; use one of: {', '.join(SCHEDULES)}")


def check_schedule(config, parent_post_init) -> None:
    """Run the parent config's checks (GAConfig knows only 'linear' and 'constant'), then check `lr_schedule`
    against every shape here and `warmup_fraction` in [0, 1)."""
    schedule, config.lr_schedule = config.lr_schedule, "linear"
    try:
        parent_post_init()
    finally:
        config.lr_schedule = schedule
    check_config(config, {"lr_schedule": SCHEDULES}, warmup_fraction="[0,1)")


class WarmupSchedule:
    """Mixin for a `GradientAscent` subclass whose config has `lr_schedule` and `warmup_fraction`."""

    def make_optimizer(self, params, total_steps: int):
        cfg = self.config
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        warmup = round(cfg.warmup_fraction * total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_multiplier(cfg.lr_schedule, step, warmup, total_steps))
        return optimizer, scheduler
