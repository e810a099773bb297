"""Prune and regrow: post-optimal pruning, re-initialisation of the pruned weights and repair on the retain set
(Mason-Williams et al., "Machine Unlearning in Audio: Bridging the Modality Gap via the Prune and Regrow Paradigm",
catalog id `masonwilliams2024machine`).

Follows IFMW01/Prune-and-Regrow@16dba35 (the last version with the audio experiments),
src/unlearn/unlearning_methods.py: `pop_unlearning`, `cs_prune`, `prune_and_regrow`, and src/unlearn/Unlearner.py:
`fine_tune`. No forget data is used: the method destroys the smallest weights and lets the retain set rebuild them.

  1. rank every parameter entry by |w| (all parameters flattened) and, on a grid of 101 pruning fractions
     p = 0, 0.01, ..., 1, zero the smallest p of them and measure the cosine similarity cs(p) to the original vector;
  2. choose p* on the (p, cs(p)) curve: "orth" (post-optimal pruning, POP) takes the point farthest from (0, 0), the
     knee past which similarity collapses; "opt" (cosine pruning) the point nearest to (1, 1);
  3. prune: global unstructured L1 pruning of the fraction p* over every module's `weight` and `bias`;
  4. regrow: every pruned (zero) entry takes the value of a freshly initialised model of the same architecture;
  5. repair: fine-tune on the retain set (SGD with momentum, cross-entropy) for `epochs` epochs.

The regrown entries start random and free (no mask is kept), so the repair step re-learns the retain speakers while
whatever the pruned weights held about the forget speakers is gone. Every parameter is trained in the repair, as in
the official code (and as the testbed trains its models).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
import torch.nn.utils.prune as prune
from torch.nn.utils import parameters_to_vector

from ..core.config import check_config
from .task import AudioUnlearningTask, RunClock

UTOPIA = {"orth": ((0.0, 0.0), "farthest"), "opt": ((1.0, 1.0), "nearest")}


@dataclass
class PruneRegrowConfig:
    """Defaults: IFMW01/Prune-and-Regrow@16dba35 (src/unlearn/unlearning_methods.py, src/utils.py, src/unlearn.py)
    and the unlearning config of 214de37 (src/configs/unlearn_config.json)."""

    selection: str = "orth"  # pop_unlearning: cs_prune(base_vec, 'orth'); "opt" is cosine_unlearning
    grid: int = 101  # cs_prune: fidelity = [101] (1% steps)
    learning_rate: float = 0.01  # pop_unlearning: set_hyperparameters(pop_model, lr=0.01)
    momentum: float = 0.9  # utils.set_hyperparameters: optim.SGD(..., momentum=0.9)
    epochs: int = 5  # unlearn_config.json (214de37): "n_epoch_repair": 5
    batch_size: int = 256  # unlearn.py: create_loaders, remain_loader batch_size=256

    def __post_init__(self):
        check_config(self, {"selection": tuple(UTOPIA)}, grid=">=3", learning_rate="(0,10]", momentum="[0,1)",
                     epochs=">=0", batch_size=">=1")


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The official cosine_similarity: dot / (|a| |b|), clipped to [-1, 1], NaN -> 0."""
    return torch.nan_to_num(torch.clip(torch.dot(a, b) / (torch.linalg.norm(a) * torch.linalg.norm(b)), -1, 1), 0)


def similarity_curve(vector: torch.Tensor, grid: int = 101) -> tuple:
    """(fractions, cosine similarities) of `vector` with its smallest-|w| fraction zeroed, on `grid` fractions."""
    vector = vector.detach().double()
    pruned = vector.clone()
    order = torch.argsort(vector.abs())
    cuts = torch.linspace(0, len(vector), grid).to(torch.int64)
    similarity = torch.zeros(grid, dtype=torch.float64)
    similarity[0] = 1.0
    for i in range(grid - 1):
        pruned[order[cuts[i]:cuts[i + 1]]] = 0
        similarity[i + 1] = cosine_similarity(vector, pruned)
    return torch.linspace(0, 1, grid, dtype=torch.float64), similarity


def choose_fraction(fractions: torch.Tensor, similarity: torch.Tensor, selection: str = "orth") -> float:
    """cs_prune: the fraction whose (fraction, similarity) point is farthest from (0, 0) ("orth", POP) or nearest to
    (1, 1) ("opt", cosine pruning)."""
    (x, y), rule = UTOPIA[selection]
    distances = torch.sqrt((fractions - x) ** 2 + (similarity - y) ** 2)
    index = torch.argmax(distances) if rule == "farthest" else torch.argmin(distances)
    return float(fractions[index])


def prunable(model) -> list:
    """(module, name) of every module's `weight` and `bias` Parameter, as the official prune_and_regrow collects."""
    out = []
    for module in model.modules():
        for name in ("weight", "bias"):
            if isinstance(getattr(module, name, None), torch.nn.Parameter):
                out.append((module, name))
    return out


@torch.no_grad()
def _regrow(pairs: list, fresh: dict) -> int:
    """After pruning, make the pruning permanent and give every zero entry the fresh model's value (`fresh`:
    (id(module), name) -> tensor); returns the number of regrown entries."""
    regrown = 0
    for module, name in pairs:
        prune.remove(module, name)
        weight = getattr(module, name)
        mask = weight == 0
        regrown += int(mask.sum())
        weight.add_(mask.to(weight.dtype) * fresh[id(module), name].to(weight.device))
    return regrown


def unlearn(model, task: AudioUnlearningTask, config: Optional[PruneRegrowConfig] = None,
            callback: Optional[Callable] = None) -> dict:
    """Prune and regrow `model` in place; returns the run's info."""
    cfg = config or PruneRegrowConfig()
    clock = RunClock(callback)
    generator = torch.Generator().manual_seed(task.seed)
    # 1-2. the similarity curve over pruning fractions and the chosen fraction
    fractions, similarity = similarity_curve(parameters_to_vector(model.parameters()), cfg.grid)
    fraction = choose_fraction(fractions, similarity, cfg.selection)
    # 3. global L1 pruning of that fraction over every weight and bias
    pairs = prunable(model)
    prune.global_unstructured(pairs, pruning_method=prune.L1Unstructured, amount=fraction)
    # 4. regrowth from a freshly initialised model of the same architecture (modules matched in order)
    fresh = task.new_model(task.seed)
    regrown = _regrow(pairs, {(id(m), n): getattr(f, n).detach() for (m, n), (f, _) in zip(pairs, prunable(fresh))})
    del fresh
    clock.report(0, model)
    # 5. repair on the retain set
    model.requires_grad_(True).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate, momentum=cfg.momentum)
    history = []
    for epoch in range(1, cfg.epochs + 1):
        for inputs, labels in task.batches("retain", cfg.batch_size, generator):
            loss = F.cross_entropy(task.logits(model, inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append(float(loss.detach()))
        clock.report(epoch, model)
    model.eval().requires_grad_(False)
    return {"loss_history": history, "steps": len(history), "pruned_fraction": fraction, "regrown": regrown,
            "unlearn_time_s": clock.seconds()}
