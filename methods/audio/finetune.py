"""Fine-tuning on the retain set (FT), the first baseline of UnSLU-Bench (catalog id `koudounas2025alexa`).

Follows koudounasalkis/UnSLU-BENCH@cf1ad18, unlearners.py: `finetune`. The model keeps training on the retain
utterances only and relies on catastrophic forgetting to wash out the forget speakers:

    min_theta  E_{(x, y) in D_r} CE(f_theta(x), y)

with AdamW (UnSLU-Bench uses AdamW for every method "to remain compliant with the training") for one epoch over the
retain set in batches of 8 (the benchmark's `--batch` default). Nothing pushes the forget speakers away, so FT can
only reach the oracle as far as the forget speakers' traces fade while the retain speakers are rehearsed.

Steps:
  1. AdamW on every parameter (UnSLU-Bench's finetune: lr 5e-5, default weight decay);
  2. `epochs` passes over the retain utterances in shuffled batches: cross-entropy, backward, step;
  3. report the loss history and the time taken (the testbed's callback runs after each epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..core.config import check_config
from .task import AudioUnlearningTask, RunClock


@dataclass
class FinetuneConfig:
    """Defaults: koudounasalkis/UnSLU-BENCH@cf1ad18, unlearners.py (finetune) and utils.py (argparse)."""

    learning_rate: float = 5e-5  # unlearners.py: finetune(lr=5e-5)
    weight_decay: float = 0.01  # torch.optim.AdamW's default (unlearners.py builds AdamW(model.parameters(), lr=lr))
    epochs: int = 1  # unlearners.py: num_epochs=1 ("All unlearning methods were tested for a single epoch", README)
    batch_size: int = 8  # utils.py: --batch default 8

    def __post_init__(self):
        check_config(self, learning_rate="(0,1]", weight_decay="[0,1]", epochs=">=1", batch_size=">=1")


def unlearn(model, task: AudioUnlearningTask, config: Optional[FinetuneConfig] = None,
            callback: Optional[Callable] = None) -> dict:
    """Fine-tune `model` in place on the retain utterances; returns the run's info."""
    cfg = config or FinetuneConfig()
    clock = RunClock(callback)
    generator = torch.Generator().manual_seed(task.seed)
    # 1. the optimizer
    model.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    history, steps = [], 0
    for epoch in range(1, cfg.epochs + 1):
        # 2. one pass over the retain set
        for inputs, labels in task.batches("retain", cfg.batch_size, generator):
            loss = F.cross_entropy(task.logits(model, inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append(float(loss.detach()))
            steps += 1
        clock.report(epoch, model)
    # 3. hand the model back frozen
    model.eval().requires_grad_(False)
    return {"loss_history": history, "steps": steps, "unlearn_time_s": clock.seconds()}
