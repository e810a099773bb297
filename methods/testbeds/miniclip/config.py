"""MiniCLIP's configuration: everything that determines a trained model (its hash keys the cache), with a preset per
scale."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class MiniCLIPConfig:
    """Everything that determines the trained testbed; its hash keys the cache."""

    scale: str = "ci"
    seed: int = 0  # training seed of the base, oracle and poisoned models (run seeds do not retrain the testbed)
    split_seed: int = 0  # the MiniCanvas 80/20 split of load_digits
    num_threads: int = 1  # fixed torch thread count: results are only bit-reproducible at a fixed count
    # towers (the probe: 2-layer 64-wide towers, patch 2, projection 32; 1-layer towers fit the 5-minute build)
    hidden_size: int = 64
    layers: int = 1
    heads: int = 4
    intermediate_size: int = 128
    patch_size: int = 2
    projection_dim: int = 32
    # contrastive training (multi-positive InfoNCE, AdamW, linear warm-up then cosine decay)
    train_steps: int = 1000
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    p_digit_only: float = 0.15  # attribute dropout: "a digit three" (the digit axis' class prompt)
    p_style_only: float = 0.15  # "a digit in inverted style" (the style axis' class prompt)
    # backdoor: a 2x2 checkerboard patch in the bottom-right corner, captioned with the target digit
    backdoor_target: str = "zero"
    poison_fraction: float = 0.03  # share of the training pairs that are poisoned
    patch_pixels: int = 2
    # evaluation
    eval_batch_size: int = 1024

    def model_key(self) -> dict:
        """Fields that change a trained model (and the data it sees)."""
        skip = {"scale", "eval_batch_size", "backdoor_target", "poison_fraction", "patch_pixels"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

    def poison_key(self) -> dict:
        return {**self.model_key(), "backdoor_target": self.backdoor_target, "poison_fraction": self.poison_fraction,
                "patch_pixels": self.patch_pixels}


SCALES = {
    # ci: 1-layer 64-wide towers, 1000 steps of 256 pairs (about a minute per model on one thread)
    "ci": MiniCLIPConfig(),
    # full: the probe size (2-layer towers), longer training
    "full": MiniCLIPConfig(scale="full", layers=2, train_steps=2000),
}


def config_for(scale: str) -> MiniCLIPConfig:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    return SCALES[scale]
