"""ConceptPrune: training-free concept editing by pruning skilled neurons (Chavhan, Li & Hospedales, ICLR 2025).
Catalog id: `chavhan2024conceptprune`.

Follows ruchikachavhan/concept-prune@72927d9, wanda/wanda.py, neuron_receivers/wanda_receiver.py and
wanda/save_union_over_time.py (hook_module 'unet': the second linear layer of every feed-forward block), with the
settings of configs/wanda_config.yaml and scripts/wanda.sh.

1. Activations. Sample each target prompt (with the concept, e.g. "a cat in the style of Van Gogh") and its base
   prompt (without it, "a cat") from the same noise, and record at every sampling step t and every feed-forward
   block l the input X of its output layer `ff.net.2` (the GEGLU output), each row (one token position of one
   image, both halves of the classifier-free-guidance batch) normalised to unit L2 norm. The column norms
   ||X_j||_2 accumulate over all rows of all prompts.

2. WANDA scores of the output layer's weights W (d_out x d_in): S = |W| * ||X||_2 (broadcast over rows), for the
   target prompts (S_target) and the base prompts (S_base).

3. Skilled neurons at (t, l): per output row, the top k = int(skill_ratio * d_in) weights by S_target that also have
   S_target > S_base.

4. Union over the first `timesteps` sampling steps (the high-noise ones): a weight is kept in the mask when it was
   skilled at more than select_ratio * timesteps of them (select_ratio 0: at any of them).

5. Prune: zero the masked weights of every ff.net.2. No gradient step is taken: the edit costs two sampling passes.

MiniCanvas: the target prompts are the request's forget prompts and the base prompts their neutral versions ("a digit
three in plain style" against "a digit in plain style"), ConceptPrune's object and style prompt pairs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch

from ..core.config import check_config
from ..core.seeding import make_generator
from .diffusion import DiffusionComponents, EditedDiffusion, EraseRequest, frozen_copy


@dataclass
class ConceptPruneConfig:
    """Defaults are the official ones (ruchikachavhan/concept-prune@72927d9, configs/wanda_config.yaml, scripts/wanda.sh
    and the README); a testbed's adaptations are declared in methods/registry.yaml."""

    skill_ratio: float = 0.01  # wanda_config.yaml `skill_ratio` (artists; objects use 0.02 in scripts/wanda.sh)
    timesteps: int = 10  # scripts/wanda.sh `save_union_over_time.py --timesteps 10`: union over the first 10 steps
    select_ratio: float = 0.0  # scripts/wanda.sh `--select_ratio 0.0`: skilled at any of those steps
    num_inference_steps: Optional[int] = 50  # the StableDiffusionPipeline default that wanda.py samples with; None: the testbed's
    guidance_scale: Optional[float] = 7.5  # the pipeline default; None: the testbed's
    samples_per_prompt: int = 1  # one image per prompt (seed fixed per prompt)

    def __post_init__(self):
        check_config(self, skill_ratio="(0,1]", timesteps=">=1", select_ratio="[0,1]", num_inference_steps=">=1",
                     guidance_scale="[0,1e3]", samples_per_prompt=">=1")


def feed_forward_outputs(unet) -> list:
    """(name, module) of the output linear layer of every transformer feed-forward block (`ff.net.2`), sorted by name
    (the official order: down blocks, mid block, up blocks)."""
    return sorted((name, module) for name, module in unet.named_modules()
                  if name.endswith("ff.net.2") and isinstance(module, torch.nn.Linear))


class ColumnNorms:
    """Per (step, layer): the column L2 norms of the row-normalised inputs of ff.net.2, accumulated over prompts."""

    def __init__(self):
        self.squares = {}  # (step, layer name) -> sum of squares per input column
        self.calls = {}  # layer name -> calls seen (= the sampling step of the next call)

    def hook(self, name: str):
        def record(module, inputs):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()
            x = torch.nn.functional.normalize(x, p=2, dim=1)
            step = self.calls.get(name, 0)
            self.calls[name] = step + 1
            key = (step, name)
            self.squares[key] = self.squares.get(key, 0) + x.pow(2).sum(0)

        return record

    def restart(self):
        """A new sampling run starts at step 0."""
        self.calls = {}

    def norms(self, step: int, name: str) -> torch.Tensor:
        return self.squares[(step, name)].sqrt()


def wanda_scores(weight: torch.Tensor, column_norms: torch.Tensor) -> torch.Tensor:
    """S = |W| * ||X||_2, the activation norm broadcast over the output rows."""
    return weight.abs() * column_norms[None, :]


def skilled_mask(weight: torch.Tensor, target_norms: torch.Tensor, base_norms: torch.Tensor,
                 skill_ratio: float) -> torch.Tensor:
    """Per output row: the top int(skill_ratio * d_in) weights by target score that also score higher for the target
    than for the base prompts (wanda.py)."""
    target = wanda_scores(weight, target_norms)
    base = wanda_scores(weight, base_norms)
    k = int(skill_ratio * weight.shape[1])
    top = torch.zeros_like(target, dtype=torch.bool)
    if k > 0:
        top.scatter_(1, target.argsort(dim=1, descending=True, stable=True)[:, :k], True)
    return top & (target > base)


@torch.no_grad()
def record_norms(components: DiffusionComponents, unet, prompts: list, config: ConceptPruneConfig,
                 seed: int) -> ColumnNorms:
    """Sample every prompt (its own fixed seed, as the official receiver re-seeds each pipeline call) with hooks on
    every ff.net.2, and return the accumulated column norms per step and layer."""
    from .diffusion import EditedDiffusion as Sampler

    norms = ColumnNorms()
    handles = [module.register_forward_pre_hook(norms.hook(name)) for name, module in feed_forward_outputs(unet)]
    sampler = Sampler(components.with_unet(unet))
    try:
        for prompt in prompts:
            norms.restart()
            sampler.sample([prompt] * config.samples_per_prompt, make_generator(seed),
                           num_inference_steps=config.num_inference_steps, guidance_scale=config.guidance_scale)
    finally:
        for handle in handles:
            handle.remove()
    return norms


def erase(components: DiffusionComponents, request: EraseRequest, config: ConceptPruneConfig,
          seed: int = 0) -> EditedDiffusion:
    """Score the feed-forward output weights on target vs base prompts and zero the concept's skilled neurons."""
    start = time.perf_counter()
    unet = frozen_copy(components.unet)
    layers = feed_forward_outputs(unet)

    # 1. Activation norms on the target (concept) and base (concept removed) prompts, from the same noise.
    target = record_norms(components, unet, list(request.forget_prompts), config, seed)
    base = record_norms(components, unet, list(request.neutral_prompts), config, seed)
    steps = min(config.timesteps, min(target.calls.values()))

    # 2-4. Skilled neurons per step and layer, and their union over the first `timesteps` steps.
    pruned = 0
    for name, module in layers:
        counts = torch.zeros_like(module.weight, dtype=torch.long)
        for step in range(steps):
            counts += skilled_mask(module.weight, target.norms(step, name), base.norms(step, name),
                                   config.skill_ratio).long()
        mask = counts > config.select_ratio * steps
        # 5. Prune: zero those weights.
        module.weight.masked_fill_(mask, 0.0)
        pruned += int(mask.sum())

    total = sum(module.weight.numel() for _, module in layers)
    unet_total = sum(p.numel() for p in unet.parameters())
    return EditedDiffusion(components.with_unet(unet), info={
        "pruned_weights": pruned, "pruned_fraction_of_ffn": pruned / total, "pruned_fraction_of_unet": pruned / unet_total,
        "hooked_layers": len(layers), "union_steps": steps, "wall_time_s": time.perf_counter() - start,
    })
