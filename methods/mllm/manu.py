"""MANU: Modality-Aware Neuron Unlearning (Liu et al., ACL 2025; catalog id `liu2025modalityaware`), training-free.

Follows franciscoliu/MANU@7af5ffe, prune/prune_incremental.py and prune/prune_utility.py (hooks and statistics:
prune/activation_collect.py@db6084e).

MANU prunes the MLP neurons whose activations matter more for the forget data than for the retain data, scoring each
modality where it is processed: the vision tower's MLPs (fc1, fc2) on image + question inputs, the language model's
MLPs (gate, up, down projections) on text-only questions. For a neuron with activations a (the module's output
coordinate, clamped to [-1e3, 1e3]) on a set of inputs, four importance functions:

    I_abs = mean |a|      I_freq = mean 1[|a| > 0.1]      I_var = std(a)      I_rms = sqrt(mean a^2)

computed on the forget set (f) and on a retain sample of the same size (r), combine into

    S = sum_m  w_m * ( I_m^f / (I_m^r + 1e-5) - 1 ),      (w_abs, w_freq, w_var, w_rms) = (2, 0, 2, 2)

Per modality, the neurons whose score is among the top `prune_percent` % of all that modality's scored neurons
(one global threshold, ties included) are pruned in the last `layers` layers of the tower: their output rows of the
weight (and bias) are set to zero. Nothing is trained; `num_iterations` > 1 re-scores the pruned model and prunes
again.

As in the official code, every layer's activations are pooled into one score per neuron index, and that mask is
applied to each of the last three layers (the official hooks store every layer's output under the keys of layers
21-23 of the vision tower and 29-31 of the language model, the ones pruned); `pool_layers=False` scores each layer
on its own activations instead. The statistics are taken over every real token of every question (the official code
takes them per batch over the batch dimension, padded positions included, then averages).

Steps of `MANU.run`:
  1. the forget questions of each modality and a retain sample of the same size (seeded);
  2. forward passes with hooks: the vision MLP outputs on the visual questions, the language MLP outputs on the
     text-only questions, for the forget and the retain set;
  3. importance functions -> scores -> one global top-k mask per modality;
  4. zero the pruned neurons' rows; report how many were pruned and the time taken.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..core.config import ConfigError, check_config
from .layers import Capture, language_layers, vision_layers
from .logprobs import model_inputs

IMPORTANCE = ("abs", "freq", "var", "rms")  # the order of `MANUConfig.weights`
MODULES = {"visual": ("fc1", "fc2"), "text": ("gate_proj", "up_proj", "down_proj")}  # the MLP linears per tower


@dataclass
class MANUConfig:
    """Defaults are the official ones (franciscoliu/MANU@7af5ffe: prune/prune_incremental.py argparse and
    prune/prune_utility.py); a testbed's adaptations are declared in methods/registry.yaml."""

    prune_percent: float = 2.0  # --prune_percent 2: % of a modality's scored neurons pruned per iteration
    num_iterations: int = 1  # --num_iterations 1
    layers: int = 3  # the last three layers of each tower (hook keys vision_*_21-23 of 24, lang_*_29-31 of 32)
    pool_layers: bool = True  # every layer's activations pooled into one score per neuron (the official hooks)
    weights: tuple = (2.0, 0.0, 2.0, 2.0)  # (I_abs, I_freq, I_var, I_rms): compute_combined_scores_incremental
    epsilon: float = 1e-5  # compute_combined_scores_incremental
    freq_threshold: float = 0.1  # collect_feedforward_activations: |a| > 1e-1
    clamp: float = 1e3  # collect_feedforward_activations: clamp(min=-1e3, max=1e3)
    # multimodal (vision tower, image + question) and unimodal (language model, text-only) scoring
    forget_modalities: tuple = ("visual", "text")
    batch_size: int = 64  # forward passes of the activation statistics (the official loaders use batch 4)

    def __post_init__(self):
        check_config(self, {"forget_modalities": ("visual", "text")}, prune_percent="[0,100]", num_iterations=">=1",
                     layers=">=1", epsilon="(0,1]", freq_threshold=">=0", clamp=">0", batch_size=">=1")
        if not self.forget_modalities:
            raise ConfigError("MANUConfig.forget_modalities must name at least one of 'visual', 'text'")
        if len(self.weights) != len(IMPORTANCE) or not all(isinstance(w, (int, float)) for w in self.weights):
            raise ConfigError(f"MANUConfig.weights must be 4 numbers ({', '.join(IMPORTANCE)}), got {self.weights!r}")


def importance(activations: torch.Tensor, freq_threshold: float = 0.1, clamp: float = 1e3) -> dict:
    """The four importance functions of each neuron (column) of `activations` (tokens x neurons)."""
    a = activations.float().clamp(min=-clamp, max=clamp)
    return {"abs": a.abs().mean(0), "freq": (a.abs() > freq_threshold).float().mean(0), "var": a.std(0),
            "rms": (a ** 2).mean(0).sqrt()}  # fmt: skip


def combined_score(forget: dict, retain: dict, weights: tuple, epsilon: float) -> torch.Tensor:
    """S = sum_m w_m (I_m^f / (I_m^r + eps) - 1)."""
    return sum(w * (forget[m] / (retain[m] + epsilon) - 1) for m, w in zip(IMPORTANCE, weights))


def top_k_mask(scores: dict, percent: float) -> dict:
    """name -> bool mask of the neurons to prune: one global threshold over every score (the k-th largest,
    k = int(percent / 100 * number of neurons)), every neuron at or above it pruned; nothing when k is 0."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = int(percent / 100 * flat.numel())
    if k == 0:
        return {name: torch.zeros_like(s, dtype=torch.bool) for name, s in scores.items()}
    threshold = torch.topk(flat, k, largest=True).values[-1]
    return {name: s >= threshold for name, s in scores.items()}


@torch.no_grad()
def prune_rows(linear: torch.nn.Linear, mask: torch.Tensor) -> None:
    """Zero the output rows (neurons) selected by `mask`, in the weight and the bias."""
    keep = (~mask).to(linear.weight.dtype)
    linear.weight.mul_(keep.unsqueeze(1))
    if linear.bias is not None:
        linear.bias.mul_(keep)


class MANU:
    config_class = MANUConfig

    def __init__(self, config: Optional[MANUConfig] = None):
        self.config = config if config is not None else MANUConfig()
        if not isinstance(self.config, MANUConfig):
            raise ValueError(f"config must be a MANUConfig, got {type(self.config).__name__}")

    def tower(self, model, modality: str):
        return vision_layers(model) if modality == "visual" else language_layers(model)

    def pruned_layers(self, model, modality: str) -> list:
        layers = self.tower(model, modality)
        return list(range(max(0, len(layers) - self.config.layers), len(layers)))

    # --- 1-2. activations ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def activations(self, model, task, rows: list, modality: str) -> dict:
        """(layer, module) -> (tokens x neurons) outputs over every real token of `rows` (clean view)."""
        layers = self.tower(model, modality)
        hooked = {(i, name): getattr(layers[i].mlp, name) for i in range(len(layers)) for name in MODULES[modality]}
        out = {key: [] for key in hooked}
        for start in range(0, len(rows), self.config.batch_size):
            batch = task.batch(rows[start : start + self.config.batch_size], None)
            with Capture(hooked) as seen:
                model(**model_inputs(batch))
            for key, outputs in seen.items():
                hidden = outputs[0]  # (batch, positions, neurons)
                if modality == "text":  # the language model: real tokens only
                    hidden = hidden[batch["attention_mask"].bool()]
                out[key].append(hidden.reshape(-1, hidden.shape[-1]))
        return {key: torch.cat(parts) for key, parts in out.items()}

    def scores(self, model, task, forget: list, retain: list, modality: str) -> dict:
        """(layer, module) -> per-neuron score S, for the layers to prune (pooled over layers by default)."""
        cfg = self.config
        acts = {"f": self.activations(model, task, forget, modality),
                "r": self.activations(model, task, retain, modality)}  # fmt: skip
        pruned = self.pruned_layers(model, modality)
        out = {}
        for name in MODULES[modality]:
            if cfg.pool_layers:  # one score per neuron index from every layer's activations
                stats = {side: importance(torch.cat([v for (i, n), v in a.items() if n == name]),
                                          cfg.freq_threshold, cfg.clamp) for side, a in acts.items()}  # fmt: skip
                score = combined_score(stats["f"], stats["r"], cfg.weights, cfg.epsilon)
                out.update({(i, name): score for i in pruned})
            else:
                for i in pruned:
                    stats = {side: importance(a[(i, name)], cfg.freq_threshold, cfg.clamp) for side, a in acts.items()}
                    out[(i, name)] = combined_score(stats["f"], stats["r"], cfg.weights, cfg.epsilon)
        return out

    def split(self, task, modality: str, generator: torch.Generator) -> tuple:
        """The forget questions of a modality and a random retain sample of the same size."""
        forget = [row for row in task.forget if row.qa.modality == modality]
        retain = [row for row in task.retain if row.qa.modality == modality]
        order = torch.randperm(len(retain), generator=generator)[: len(forget)].tolist()
        return forget, [retain[i] for i in order]

    # --- 3-4. masks and pruning -----------------------------------------------------------------------------------
    def run(self, model, task, callback: Optional[Callable] = None) -> dict:
        cfg = self.config
        start = time.perf_counter()
        generator = torch.Generator().manual_seed(int(task.seed))
        sets = {modality: self.split(task, modality, generator) for modality in cfg.forget_modalities}
        model.eval()
        pruned, callback_time = {}, 0.0
        for iteration in range(1, cfg.num_iterations + 1):
            for modality, (forget, retain) in sets.items():
                if not forget or not retain:
                    raise ValueError(f"MANU needs forget and retain questions of modality {modality!r}")
                mask = top_k_mask(self.scores(model, task, forget, retain, modality), cfg.prune_percent)
                layers = self.tower(model, modality)
                for (i, name), selected in mask.items():  # pooled scores: the same neurons in every pruned layer
                    prune_rows(getattr(layers[i].mlp, name), selected)
                    key = f"{modality}.layer{i}.{name}"
                    pruned[key] = pruned.get(key, 0) + int(selected.sum())
            if callback is not None:
                tick = time.perf_counter()
                callback(iteration, model)
                callback_time += time.perf_counter() - tick
        model.requires_grad_(False)
        total = {m: sum(n for k, n in pruned.items() if k.startswith(m)) for m in cfg.forget_modalities}
        return {"pruned_neurons": pruned, "pruned_by_modality": total, "steps": cfg.num_iterations,
                "unlearn_time_s": time.perf_counter() - start - callback_time}  # fmt: skip


def unlearn(model, task, config: Optional[MANUConfig] = None, callback: Optional[Callable] = None) -> dict:
    """MANU; prunes `model` in place (no training) and returns the run's info."""
    return MANU(config).run(model, task, callback)
