"""Training MiniVoices' classifiers: the base model (every trainable speaker) and the retrain oracles (the same
recipe and initialisation without the forget speakers), each trained once per machine and cached as safetensors.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

CACHE_MARKER = "testbed.json"  # the file a finished cache build writes last


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_fraction: float
    seed: int
    freq_shift: int = 0  # augmentation of (mel x frame) features, see `augment`; 0 disables each part
    freq_mask: int = 0
    time_mask: int = 0


def augment(features: torch.Tensor, generator: torch.Generator, freq_shift: int, freq_mask: int,
            time_mask: int) -> torch.Tensor:
    """Per example: shift the mel axis by up to `freq_shift` bins (a crude vocal-tract-length perturbation: other
    voices move formants along the frequency axis), then SpecAugment's masks (Park et al., 2019): one band of up to
    `freq_mask` mel bins and one span of up to `time_mask` frames, filled with the example's minimum (silence)."""
    out = features.clone()
    n, bins, frames = out.shape
    floor = out.amin(dim=(1, 2))
    for i in range(n):
        if freq_shift:
            shift = int(torch.randint(-freq_shift, freq_shift + 1, (1,), generator=generator))
            if shift:
                out[i] = torch.roll(out[i], shift, dims=0)
                if shift > 0:
                    out[i, :shift] = floor[i]
                else:
                    out[i, shift:] = floor[i]
        if freq_mask:
            width = int(torch.randint(0, freq_mask + 1, (1,), generator=generator))
            start = int(torch.randint(0, bins - width + 1, (1,), generator=generator))
            out[i, start:start + width] = floor[i]
        if time_mask:
            width = int(torch.randint(0, time_mask + 1, (1,), generator=generator))
            start = int(torch.randint(0, frames - width + 1, (1,), generator=generator))
            out[i, :, start:start + width] = floor[i]
    return out


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


def train_classifier(model, name: str, features: torch.Tensor, labels: torch.Tensor, settings: TrainSettings,
                     log: Callable[[str], None] = print) -> dict:
    """Cross-entropy with AdamW and a warm-up + cosine schedule for a fixed number of epochs; batches (and their
    augmentation, for log-mel features) are drawn from a generator seeded with `settings.seed`, so the same data and
    settings give the same model."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(settings.seed)
    model.requires_grad_(True).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(labels) / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    warmup = int(settings.warmup_fraction * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, warmup, total))
    start, losses = time.perf_counter(), []
    for epoch in range(settings.epochs):
        order = torch.randperm(len(labels), generator=generator)
        running = 0.0
        for begin in range(0, len(order), settings.batch_size):
            rows = order[begin:begin + settings.batch_size]
            inputs = features[rows]
            if inputs.dim() == 3 and (settings.freq_shift or settings.freq_mask or settings.time_mask):
                inputs = augment(inputs, generator, settings.freq_shift, settings.freq_mask, settings.time_mask)
            logits = model(**{name: inputs.to(device)}).logits
            loss = F.cross_entropy(logits, labels[rows].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += float(loss.detach()) * len(rows)
        losses.append(running / len(labels))
        if (epoch + 1) % max(1, settings.epochs // 5) == 0 or epoch + 1 == settings.epochs:
            log(f"[minivoices]   epoch {epoch + 1}/{settings.epochs}: loss {losses[-1]:.4f}")
    model.eval().requires_grad_(False)
    return {"epochs": settings.epochs, "steps": total, "loss_history": losses,
            "train_seconds": round(time.perf_counter() - start, 2)}
