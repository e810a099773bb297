"""NegGrad+: gradient ascent on the forget set balanced by descent on the retain set (Kurmanji et al., 2023, catalog
id `kurmanji2023unbounded`, which defines it as a stronger NegGrad baseline); a baseline of UnSLU-Bench.

Follows meghdadk/SCRUB@98ffb11, small_scale_unlearning.ipynb (`negative_grad` / `run_neggrad_epoch`). Each step takes
a retain batch and the next batch of a cycled forget loader and minimises

    L = alpha * [ CE(f_theta(x_r), y_r) + (lambda / 2) * ||theta - theta_0||^2 ]  -  (1 - alpha) * CE(f_theta(x_f), y_f)

where theta_0 are the weights before unlearning (the official `l2_penalty` to the initial model, with lambda the
run's `--weight-decay`). alpha close to 1 keeps the retain loss in charge while the forget loss is pushed up.

Steps:
  1. keep a frozen copy theta_0 of the weights; plain SGD (no momentum, no weight decay in the optimizer);
  2. each epoch zips the shuffled retain batches with an endlessly cycled forget loader (the epoch ends with the
     retain set);
  3. per step: L as above, backward, SGD step;
  4. report the loss history and the time (the testbed's callback runs after each epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..core.config import check_config
from .task import AudioUnlearningTask, RunClock


@dataclass
class NegGradPlusConfig:
    """Defaults: meghdadk/SCRUB@98ffb11, small_scale_unlearning.ipynb (cells 8, 26, 83-85)."""

    alpha: float = 0.95  # args.ng_alpha
    learning_rate: float = 0.01  # args.ng_lr (torch.optim.SGD, weight_decay=0)
    epochs: int = 10  # args.ng_epochs
    l2_weight: float = 0.1  # args.weight_decay of `%run main.py ... --weight-decay 0.1`, used by l2_penalty
    retain_batch_size: int = 128  # retain_loader rebuilt with batch_size=args.batch_size (--batch-size 128)
    forget_batch_size: int = 64  # args.forget_bs

    def __post_init__(self):
        check_config(self, alpha="[0,1]", learning_rate="(0,10]", epochs=">=1", l2_weight="[0,1e3]",
                     retain_batch_size=">=1", forget_batch_size=">=1")


def neggrad_plus_loss(retain_logits, retain_labels, forget_logits, forget_labels, l2_to_start, alpha: float,
                      l2_weight: float) -> torch.Tensor:
    """alpha * (CE_retain + l2_weight / 2 * ||theta - theta_0||^2) - (1 - alpha) * CE_forget."""
    retain = F.cross_entropy(retain_logits, retain_labels) + (l2_weight / 2.0) * l2_to_start
    return alpha * retain - (1.0 - alpha) * F.cross_entropy(forget_logits, forget_labels)


def squared_distance(model, start: dict) -> torch.Tensor:
    """||theta - theta_0||^2 over the trainable parameters (the official l2_penalty before its weight)."""
    return sum(((p - start[name]) ** 2).sum() for name, p in model.named_parameters() if p.requires_grad)


def unlearn(model, task: AudioUnlearningTask, config: Optional[NegGradPlusConfig] = None,
            callback: Optional[Callable] = None) -> dict:
    """NegGrad+ on `model` in place; returns the run's info."""
    cfg = config or NegGradPlusConfig()
    clock = RunClock(callback)
    generator = torch.Generator().manual_seed(task.seed)
    # 1. the starting point and the optimizer
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.requires_grad_(True).eval()  # the official loop runs the model in eval mode (no dropout / BN updates)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    forget_batches = task.cycle("forget", cfg.forget_batch_size, generator)
    history, steps = [], 0
    for epoch in range(1, cfg.epochs + 1):
        # 2. retain batches zipped with the cycled forget loader
        for retain_inputs, retain_labels in task.batches("retain", cfg.retain_batch_size, generator):
            forget_inputs, forget_labels = next(forget_batches)
            # 3. one step of the balanced loss
            loss = neggrad_plus_loss(task.logits(model, retain_inputs), retain_labels,
                                     task.logits(model, forget_inputs), forget_labels,
                                     squared_distance(model, start), cfg.alpha, cfg.l2_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append(float(loss.detach()))
            steps += 1
        clock.report(epoch, model)
    # 4. hand the model back frozen
    model.eval().requires_grad_(False)
    return {"loss_history": history, "steps": steps, "unlearn_time_s": clock.seconds()}
