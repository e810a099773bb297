"""Seeding and devices: every run is seeded, and noise is drawn on CPU so CPU and CUDA runs start alike."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

# Needed by torch.use_deterministic_algorithms on CUDA; must be set before cuBLAS initialises.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

DEVICES = ("auto", "cpu", "cuda")


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch, and ask torch for deterministic kernels where it has them."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        # warn_only: a few CUDA kernels (e.g. some index_add paths) have no deterministic version.
        torch.use_deterministic_algorithms(True, warn_only=True)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator: noise is drawn on CPU and moved, so CPU and CUDA runs start from the same noise."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks CUDA when present; 'cuda' without a GPU is a usage error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was requested but no CUDA device is available")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)
