"""CF-k: catastrophic forgetting of the last k layers (Goel et al., 2022, catalog id `goel2022adversarial`); a
baseline of UnSLU-Bench (`koudounas2025alexa`).

Follows koudounasalkis/UnSLU-BENCH@cf1ad18, unlearners.py: `cf_k`. Everything but the last `k` top-level modules of
the classifier is frozen (UnSLU-Bench runs CF-1: the classification head of a wav2vec 2.0 / HuBERT model), optionally
with some encoder layers unfrozen as well (its `--unfreeze_encoder_layer`, for HuBERT), and the trainable part is
fine-tuned on the retain set:

    min_{theta_last k}  E_{(x, y) in D_r} CE(f_theta(x), y)

The frozen layers keep whatever they encode about the forget speakers; only what the last layers do with it can be
forgotten, which is why UnSLU-Bench reports CF-k as fast but weak.

Steps:
  1. freeze every parameter, then unfreeze the last `k` top-level modules (`model.children()`) and the last
     `encoder_layers` layers of the encoder;
  2. AdamW (as every UnSLU-Bench method); `epochs` passes over the retain utterances: cross-entropy, backward, step;
  3. report the loss history, the number of trained parameters and the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ..core.config import check_config
from .task import AudioUnlearningTask, RunClock


@dataclass
class CFkConfig:
    """Defaults: koudounasalkis/UnSLU-BENCH@cf1ad18, unlearners.py (cf_k), unlearning.py and utils.py."""

    k: int = 1  # cf_k(freezed_layers=1): the last child module stays trainable ("cf-1", README)
    encoder_layers: int = 0  # --unfreeze_encoder_layer -1 (none) by default; n > 0 unfreezes the last n layers
    learning_rate: float = 5e-5  # cf_k(lr=5e-5)
    weight_decay: float = 0.01  # torch.optim.AdamW's default
    epochs: int = 1  # cf_k(num_epochs=1)
    batch_size: int = 8  # utils.py: --batch default 8

    def __post_init__(self):
        check_config(self, k=">=1", encoder_layers=">=0", learning_rate="(0,1]", weight_decay="[0,1]", epochs=">=1",
                     batch_size=">=1")


def encoder_layers(model) -> list:
    """The transformer layers of the model's encoder (`<...>.encoder.layers`, e.g. Whisper's or wav2vec 2.0's)."""
    for name, module in model.named_modules():
        layers = getattr(module, "layers", None)
        if name.split(".")[-1] == "encoder" and isinstance(layers, torch.nn.ModuleList):
            return list(layers)
    return []


def trainable_part(model, k: int, n_encoder_layers: int) -> list:
    """Step 1: freeze everything but the last `k` children and the last `n_encoder_layers` encoder layers; returns
    the trainable parameters."""
    model.requires_grad_(False)
    children = list(model.children())
    for child in children[max(0, len(children) - k):]:
        child.requires_grad_(True)
    layers = encoder_layers(model)
    if n_encoder_layers > len(layers):
        raise ValueError(f"encoder_layers={n_encoder_layers}, but the encoder has {len(layers)} layers")
    for layer in layers[len(layers) - n_encoder_layers:] if n_encoder_layers else []:
        layer.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def unlearn(model, task: AudioUnlearningTask, config: Optional[CFkConfig] = None,
            callback: Optional[Callable] = None) -> dict:
    """CF-k on `model` in place; returns the run's info."""
    cfg = config or CFkConfig()
    clock = RunClock(callback)
    generator = torch.Generator().manual_seed(task.seed)
    # 1. the trainable part
    params = trainable_part(model, cfg.k, cfg.encoder_layers)
    model.train()
    # 2. AdamW on the retain set
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        for inputs, labels in task.batches("retain", cfg.batch_size, generator):
            loss = F.cross_entropy(task.logits(model, inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append(float(loss.detach()))
        clock.report(epoch, model)
    # 3. hand the model back frozen
    model.eval().requires_grad_(False)
    return {"loss_history": history, "steps": len(history), "trained_parameters": sum(p.numel() for p in params),
            "unlearn_time_s": clock.seconds()}
