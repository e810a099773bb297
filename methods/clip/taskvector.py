"""Task-vector negation for CLIP (Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023).

Follows mlfoundations/task_vectors@826a64c, src/finetune.py (fine-tuning), src/heads.py (the zero-shot head) and
src/task_vectors.py (the arithmetic).

1. Build the zero-shot classification head of the request's axis from the text encoder: each class's template
   embeddings normalised, averaged, normalised, times exp(logit_scale); it stays frozen.
2. Fine-tune the image encoder (vision tower and projection) on the forget pairs with cross-entropy against the
   frozen head: AdamW, weight decay 0.1, linear warm-up then cosine learning rate, gradient norm clipped at 1.
3. The task vector is tau = theta_finetuned - theta_pretrained (image encoder only).
4. Forget by negation: theta = theta_pretrained - lambda * tau. lambda is chosen as the paper does for forgetting:
   the value on a grid in [0, 1] with the lowest forget accuracy among those that keep the control (retain) accuracy
   at >= 95% of the pre-trained model's, both measured zero-shot on the card's own data.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ..core.config import check_config
from ..core.seeding import make_generator
from .edited import CLIPTask, batches, image_features, vision_parameters


@dataclass
class TaskVectorConfig:
    learning_rate: float = 1e-5  # mlfoundations/task_vectors@826a64c, src/finetune.py (__main__: args.lr = 1e-5)
    weight_decay: float = 0.1  # src/args.py --wd default
    batch_size: int = 128  # src/finetune.py (__main__: args.batch_size = 128)
    epochs: int = 5  # src/finetune.py epochs table (MNIST: 5)
    warmup_steps: int = 500  # src/args.py --warmup_length default
    label_smoothing: float = 0.0  # src/args.py --ls default
    grad_clip: float = 1.0  # src/finetune.py: clip_grad_norm_(params, 1.0)
    scaling_coef: Optional[float] = None  # None: chosen on a grid (the paper's rule); the README's example uses 0.5
    coef_grid_steps: int = 20  # lambda in {0, 1/20, ..., 1}: a 0.05 grid over [0, 1] (grid not in the repository)
    coef_max: float = 1.0
    control_threshold: float = 0.95  # control accuracy kept >= 95% of the pre-trained model's: the paper's rule for
    # forgetting (read in secondary sources; the repository has no search code)
    control_samples: int = 1000  # retain pairs on which the control accuracy is measured

    def __post_init__(self):
        check_config(self, learning_rate=">0", weight_decay=">=0", batch_size=">=1", epochs=">=1", warmup_steps=">=0",
                     label_smoothing="[0,1)", grad_clip=">0", scaling_coef=">=0", coef_grid_steps=">=1",
                     coef_max=">0", control_threshold="[0,1]", control_samples=">=1")


def zero_shot_logits_head(model, task: CLIPTask) -> torch.Tensor:
    """src/heads.py build_classification_head: (classes, dim) weights = normalised class embeddings * exp(scale)."""
    with torch.no_grad():
        return task.head(model) * model.logit_scale.exp()


def finetune_image_encoder(model, task: CLIPTask, learning_rate: float, weight_decay: float, batch_size: int,
                           epochs: int, warmup_steps: int, label_smoothing: float, grad_clip: float,
                           seed: int) -> dict:
    """src/finetune.py: fine-tune the image encoder on the forget pairs against the frozen zero-shot head; returns
    the task vector {name: theta_ft - theta_pre} of the image encoder (the model is restored afterwards)."""
    head = zero_shot_logits_head(model, task)
    named = vision_parameters(model)
    before = {name: p.detach().clone() for name, p in named}
    params = [p for _, p in named]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    generator = make_generator(seed)
    steps_per_epoch = math.ceil(len(task.forget) / batch_size)
    total = epochs * steps_per_epoch
    model.train()
    step = 0
    for _ in range(epochs):
        for index in batches(len(task.forget), batch_size, generator):
            lr = (learning_rate * (step + 1) / warmup_steps if step < warmup_steps else
                  0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, total - warmup_steps))) * learning_rate)
            for group in optimizer.param_groups:
                group["lr"] = lr  # src/utils.py cosine_lr (warm-up, then cosine)
            logits = image_features(model, task.pixels(task.forget.images[index])) @ head.t()
            loss = F.cross_entropy(logits, task.forget_labels[index].to(logits.device), label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            step += 1
    model.eval()
    vector = {name: p.detach() - before[name] for name, p in named}
    with torch.no_grad():
        for name, p in named:
            p.copy_(before[name])
    for p in model.parameters():
        p.requires_grad_(True)
    return vector


def apply_vector(model, vector: dict, coef: float, base: dict) -> None:
    """src/task_vectors.py apply_to: theta = theta_base + coef * vector (negation: pass -tau)."""
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, delta in vector.items():
            parameters[name].copy_(base[name] + coef * delta)


def control_subset(task: CLIPTask, n: int, seed: int):
    order = torch.randperm(len(task.retain), generator=make_generator(seed + 1))[:n]
    return task.retain.images[order], task.retain_labels[order]


def choose_coefficient(model, task: CLIPTask, negated: dict, grid: list, threshold: float, samples: int,
                       seed: int) -> tuple:
    """The paper's rule: the coefficient with the lowest forget accuracy among those keeping the control accuracy
    >= threshold x the pre-trained model's; returns (coef, curve)."""
    base = {name: p.detach().clone() for name, p in model.named_parameters() if name in negated}
    control_images, control_labels = control_subset(task, samples, seed)
    curve = []
    for coef in grid:
        apply_vector(model, negated, coef, base)
        curve.append({"coef": coef,
                      "forget_acc": task.zero_shot_accuracy(model, task.forget.images, task.forget_labels),
                      "control_acc": task.zero_shot_accuracy(model, control_images, control_labels)})
    apply_vector(model, negated, 0.0, base)
    reference = curve[0]["control_acc"] if grid[0] == 0 else task.zero_shot_accuracy(model, control_images, control_labels)
    valid = [point for point in curve if point["control_acc"] >= threshold * reference]
    chosen = min(valid, key=lambda p: (p["forget_acc"], p["coef"])) if valid else max(curve, key=lambda p: p["control_acc"])
    return chosen["coef"], curve


def negate_and_apply(model, task: CLIPTask, tau: dict, config, seed: int) -> dict:
    """theta_pre - lambda * tau, lambda given or chosen; returns the info of the choice."""
    negated = {name: -delta for name, delta in tau.items()}
    if config.scaling_coef is not None:
        coef, curve = config.scaling_coef, []
    else:
        grid = [config.coef_max * k / config.coef_grid_steps for k in range(config.coef_grid_steps + 1)]
        coef, curve = choose_coefficient(model, task, negated, grid, config.control_threshold, config.control_samples,
                                         seed)
    base = {name: p.detach().clone() for name, p in model.named_parameters() if name in negated}
    apply_vector(model, negated, coef, base)
    norm = math.sqrt(sum(float(d.pow(2).sum()) for d in tau.values()))
    return {"scaling_coef": coef, "task_vector_norm": norm, "coef_curve": curve}


def unlearn(model, task: CLIPTask, config: TaskVectorConfig, seed: int = 0) -> dict:
    if len(task.forget) == 0:
        raise ValueError("task vectors need forget pairs to fine-tune on")
    # 1-3. fine-tune the image encoder on the forget pairs; tau = theta_ft - theta_pre
    tau = finetune_image_encoder(model, task, config.learning_rate, config.weight_decay, config.batch_size,
                                 config.epochs, config.warmup_steps, config.label_smoothing, config.grad_clip, seed)
    # 4. negate, scale and add
    return negate_and_apply(model, task, tau, config, seed)
