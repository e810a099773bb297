"""SCRUB: a student that disobeys its teacher on the forget set (Kurmanji et al., 2023, catalog id
`kurmanji2023unbounded`); a baseline of UnSLU-Bench (`koudounas2025alexa`).

Follows meghdadk/SCRUB@98ffb11, small_scale_unlearning.ipynb (the SCRUB cells) and
thirdparty/repdistiller/helper/loops.py (`train_distill`) with distiller_zoo/KD.py (`DistillKL`). The student starts
as a copy of the original model (the teacher, frozen) and alternates, per epoch,

    max-steps (first `msteps` epochs only), on forget batches:   min  -KL_T(teacher || student)
    min-steps, on retain batches:   min  gamma * CE(student(x), y) + alpha * KL_T(teacher || student)

where KL_T(t || s) = T^2 / B * sum_b KL(softmax(t_b / T) || softmax(s_b / T)) (knowledge distillation at
temperature T, summed over the batch and divided by its size). The max-steps push the student's predictions on the
forget speakers away from the teacher's; the min-steps keep it a faithful copy (and a correct classifier) on the
retain speakers. The learning rate is divided by 10 after each epoch listed in `lr_decay_epochs`.

Steps:
  1. freeze a copy of the model as the teacher; Adam with weight decay on the student;
  2. each epoch: set the learning rate (step decay); if epoch <= msteps, one pass of max-steps over the forget set;
     then one pass of min-steps over the retain set;
  3. report the loss history and the time (the testbed's callback runs after each epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..core.config import check_config
from ..core.models import frozen_copy
from .task import AudioUnlearningTask, RunClock


@dataclass
class SCRUBConfig:
    """Defaults: meghdadk/SCRUB@98ffb11, small_scale_unlearning.ipynb (cells 26 and 30: the small-scale setting,
    forget sets of a few hundred examples, as here)."""

    optimizer: str = "adam"  # args.optim
    learning_rate: float = 5e-4  # args.sgda_learning_rate
    weight_decay: float = 0.1  # args.sgda_weight_decay
    momentum: float = 0.9  # args.sgda_momentum (used by "sgd")
    epochs: int = 10  # args.sgda_epochs
    msteps: int = 3  # args.msteps: epochs with a max-step pass
    lr_decay_epochs: tuple = (5, 8, 9)  # args.lr_decay_epochs
    lr_decay_rate: float = 0.1  # args.lr_decay_rate
    temperature: float = 2.0  # args.kd_T
    gamma: float = 1.0  # args.gamma: weight of the retain cross-entropy
    alpha: float = 0.5  # args.alpha: weight of the retain KL
    retain_batch_size: int = 32  # args.retain_bs
    forget_batch_size: int = 64  # args.forget_bs

    def __post_init__(self):
        check_config(self, {"optimizer": ("adam", "sgd")}, learning_rate="(0,1]", weight_decay="[0,10]",
                     momentum="[0,1)", epochs=">=1", msteps=">=0", lr_decay_rate="(0,1]", temperature="(0,100]",
                     gamma="[0,100]", alpha="[0,100]", retain_batch_size=">=1", forget_batch_size=">=1")


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """RepDistiller's DistillKL: KL(softmax(t/T) || softmax(s/T)) summed over the batch, x T^2 / batch size."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_student, teacher, reduction="sum") * temperature**2 / student_logits.shape[0]


def learning_rate_at(epoch: int, cfg: SCRUBConfig) -> float:
    """The official adjust_learning_rate: the base rate x decay^(number of decay epochs strictly before `epoch`)."""
    steps = sum(epoch > boundary for boundary in cfg.lr_decay_epochs)
    return cfg.learning_rate * cfg.lr_decay_rate**steps


def unlearn(model, task: AudioUnlearningTask, config: Optional[SCRUBConfig] = None,
            callback: Optional[Callable] = None) -> dict:
    """SCRUB on `model` (the student) in place; returns the run's info."""
    cfg = config or SCRUBConfig()
    clock = RunClock(callback)
    generator = torch.Generator().manual_seed(task.seed)
    # 1. the teacher and the student's optimizer
    teacher = frozen_copy(model)
    model.requires_grad_(True).train()
    if cfg.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
    history = {"max": [], "min": []}
    for epoch in range(1, cfg.epochs + 1):
        # 2. the epoch's learning rate, then the max-steps and the min-steps
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(epoch, cfg)
        if epoch <= cfg.msteps:
            for inputs, _ in task.batches("forget", cfg.forget_batch_size, generator):
                with torch.no_grad():
                    teacher_logits = task.logits(teacher, inputs)
                loss = -distill_kl(task.logits(model, inputs), teacher_logits, cfg.temperature)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                history["max"].append(float(loss.detach()))
        for inputs, labels in task.batches("retain", cfg.retain_batch_size, generator):
            with torch.no_grad():
                teacher_logits = task.logits(teacher, inputs)
            student_logits = task.logits(model, inputs)
            loss = cfg.gamma * F.cross_entropy(student_logits, labels) \
                + cfg.alpha * distill_kl(student_logits, teacher_logits, cfg.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history["min"].append(float(loss.detach()))
        clock.report(epoch, model)
    # 3. hand the model back frozen
    model.eval().requires_grad_(False)
    return {"loss_history": history["max"] + history["min"], "max_steps": len(history["max"]),
            "min_steps": len(history["min"]), "steps": len(history["max"]) + len(history["min"]),
            "unlearn_time_s": clock.seconds()}
