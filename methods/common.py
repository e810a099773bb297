"""Helpers shared by every method: seeding, the components bundle, prompt encoding and CFG sampling.

Only code that is truly identical across methods lives here. Each method's own logic stays in its file.
The helpers work on diffusers / transformers components, so the same code runs on the MiniCanvas testbed
(tiny 8x8 pixel-space model) and on Stable Diffusion 1.x (64x64 latents, decoded by the VAE by the caller).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import platform
import random
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

# The checkout this package runs from (git_commit asks it for HEAD).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Needed by torch.use_deterministic_algorithms on CUDA; must be set before cuBLAS initialises.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


# ----------------------------------------------------------------------------------------------------------
# Seeding and devices
# ----------------------------------------------------------------------------------------------------------
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
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


# ----------------------------------------------------------------------------------------------------------
# The components a method receives
# ----------------------------------------------------------------------------------------------------------
@dataclass
class SamplingSettings:
    """How images are drawn from a model (classifier-free guided DDIM)."""

    num_inference_steps: int
    guidance_scale: float
    eta: float


@dataclass
class DiffusionComponents:
    """The diffusers / transformers pieces a method works on.

    `scheduler` is a DDIMScheduler used for sampling and for `add_noise`; `sample_shape` is the (C, H, W) of the
    model space (pixels on MiniCanvas, VAE latents on Stable Diffusion); `vae` is only set for latent models.
    """

    unet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    sample_shape: tuple
    sampling: SamplingSettings
    vae: Any = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    max_batch: int = 2048  # samples per UNet call when drawing many images (small for Stable Diffusion)

    def with_unet(self, unet) -> "DiffusionComponents":
        """The same components with another UNet (an edited copy)."""
        return dataclasses.replace(self, unet=unet)

    def fresh_scheduler(self):
        """A private scheduler copy: `set_timesteps` mutates state, so every loop gets its own."""
        return type(self.scheduler).from_config(self.scheduler.config)


@dataclass
class EraseRequest:
    """What to erase, expressed as prompts, so that methods do not need to know the testbed.

    - forget_prompts: prompts that express the concept (ESD/CA train on them, UCE edits their tokens).
    - neutral_prompts: the same prompts with the concept removed (ESD's "unconditional" reference).
    - anchor_prompts: what each forget prompt should turn into (UCE guide, CA anchor).
    - preserve_prompts: prompts whose outputs must not change (UCE preserve set).
    - concept_prompt: one text naming the concept (SLD's safety concept).
    The three first lists are parallel: forget_prompts[i] pairs with neutral_prompts[i] and anchor_prompts[i].
    """

    forget_prompts: list
    neutral_prompts: list
    anchor_prompts: list
    preserve_prompts: list = field(default_factory=list)
    concept_prompt: str = ""

    def __post_init__(self):
        n = len(self.forget_prompts)
        if n == 0 or len(self.neutral_prompts) != n or len(self.anchor_prompts) != n:
            raise ValueError("forget_prompts, neutral_prompts and anchor_prompts must be non-empty and parallel")


SampleFn = Callable[..., torch.Tensor]


@dataclass
class ErasureResult:
    """What every method returns: the (possibly edited) components and the sampler to draw images with."""

    components: DiffusionComponents
    sample_fn: SampleFn
    info: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------
# Prompts and parameters
# ----------------------------------------------------------------------------------------------------------
def tokenize(tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """Pad to the tokenizer's max length, as Stable Diffusion does (77 for CLIP, 8 on MiniCanvas)."""
    return tokenizer(
        list(prompts),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


@torch.no_grad()
def encode_prompts(components: DiffusionComponents, prompts: Sequence[str]) -> torch.Tensor:
    """Text-encoder last hidden states (B, L, D) for a list of prompts, without attention mask (as SD 1.x)."""
    input_ids = tokenize(components.tokenizer, prompts).to(components.device)
    return components.text_encoder(input_ids)[0]


def is_cross_attention(param_name: str) -> bool:
    """diffusers names cross-attention `attn2` (self-attention is `attn1`)."""
    return "attn2" in param_name


def cross_attention_modules(unet) -> list:
    """(name, Attention module) for every cross-attention layer of the UNet."""
    return [(name, module) for name, module in unet.named_modules() if name.endswith("attn2")]


def frozen_copy(module):
    """A deep copy with gradients off, used as the frozen original model."""
    clone = copy.deepcopy(module)
    clone.requires_grad_(False)
    clone.eval()
    return clone


# ----------------------------------------------------------------------------------------------------------
# Sampling (classifier-free guided DDIM)
# ----------------------------------------------------------------------------------------------------------
def initial_noise(components: DiffusionComponents, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Start noise drawn on CPU (reproducible on any device), scaled by the scheduler's init sigma."""
    noise = torch.randn((batch_size, *components.sample_shape), generator=generator, dtype=torch.float32)
    noise = noise.to(device=components.device, dtype=components.unet.dtype)
    return noise * components.scheduler.init_noise_sigma


def sample_cfg(
    components: DiffusionComponents,
    prompts: Sequence[str],
    generator: torch.Generator,
    *,
    unet=None,
    num_inference_steps: Optional[int] = None,
    guidance_scale: Optional[float] = None,
    eta: Optional[float] = None,
    stop_after_steps=None,
    negative_prompt: str = "",
) -> torch.Tensor:
    """Classifier-free guided DDIM sampling; returns samples in model space (pixels or latents).

    `stop_after_steps` (an int, or one int per prompt) returns partially denoised samples: a sample stopped
    after k scheduler steps sits at noise level `scheduler.timesteps[k]` (ESD's x_t). More prompts than
    `components.max_batch` are processed in chunks that share one generator (deterministic for a given max_batch).
    """
    unet = unet if unet is not None else components.unet
    steps = num_inference_steps or components.sampling.num_inference_steps
    cfg = components.sampling.guidance_scale if guidance_scale is None else guidance_scale
    eta = components.sampling.eta if eta is None else eta
    stops = None
    if stop_after_steps is not None:
        stops = torch.as_tensor(stop_after_steps, dtype=torch.long).expand(len(prompts))

    outputs = []
    for start in range(0, len(prompts), components.max_batch):
        chunk = list(prompts[start : start + components.max_batch])
        scheduler = components.fresh_scheduler()
        scheduler.set_timesteps(steps, device=components.device)
        text = encode_prompts(components, chunk)
        uncond = encode_prompts(components, [negative_prompt]).expand_as(text)
        sample = initial_noise(components, len(chunk), generator)
        for step_index, t in enumerate(scheduler.timesteps):
            # samples whose stopping step is reached are left as they are
            active = slice(None) if stops is None else (stops[start : start + len(chunk)] > step_index).nonzero()[:, 0]
            if stops is not None and len(active) == 0:
                break
            current = sample[active]
            model_input = scheduler.scale_model_input(torch.cat([current, current]), t)
            conditioning = torch.cat([uncond[active], text[active]])
            with torch.no_grad():
                eps_uncond, eps_text = unet(model_input, t, encoder_hidden_states=conditioning).sample.chunk(2)
            eps = eps_uncond + cfg * (eps_text - eps_uncond)
            updated = scheduler.step(eps, t, current, eta=eta, generator=generator).prev_sample
            if stops is None:
                sample = updated
            else:
                sample = sample.clone()
                sample[active] = updated
        outputs.append(sample)
    return torch.cat(outputs)


def standard_sampler(components: DiffusionComponents) -> SampleFn:
    """`sample_fn(prompts, generator)` with the components' own sampling settings."""
    return lambda prompts, generator: sample_cfg(components, prompts, generator)


def finetuned_result(components: DiffusionComponents, unet, params, losses: list, start: float) -> ErasureResult:
    """The result of a method that fine-tuned `unet`: frozen again, sampling like the base model, with its figures."""
    unet.requires_grad_(False)
    edited = components.with_unet(unet)
    tail = losses[-20:]
    return ErasureResult(
        components=edited,
        sample_fn=standard_sampler(edited),
        info={
            "trainable_parameters": sum(p.numel() for p in params),
            "final_loss": sum(tail) / max(1, len(tail)),
            "wall_time_s": time.perf_counter() - start,
        },
    )


def timesteps_for(components: DiffusionComponents, num_inference_steps: int) -> torch.Tensor:
    """The sampling timesteps for a number of DDIM steps (used to know where a partial sample sits)."""
    scheduler = components.fresh_scheduler()
    scheduler.set_timesteps(num_inference_steps)
    return scheduler.timesteps.clone()


def check_config(config) -> None:
    """Type-check a method config dataclass (called from each config's __post_init__): ValueError on mismatch."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(type(config))
    for item in dataclasses.fields(config):
        value, hint = getattr(config, item.name), hints[item.name]
        allowed = typing.get_args(hint) if typing.get_origin(hint) is typing.Union else (hint,)
        if value is None and type(None) in allowed:
            continue
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in allowed if t is not type(None)):
            raise ValueError(f"{type(config).__name__}.{item.name} must be {hint}, got {value!r}")


def state_fingerprint(module) -> dict:
    """Parameter name -> detached clone; used to check which weights a method changed."""
    return {name: p.detach().clone() for name, p in module.named_parameters()}


# Provenance written into every metrics.json: which code and which packages produced the numbers.
def package_versions() -> dict:
    import importlib.metadata as metadata

    versions = {"python": platform.python_version()}
    for package in ("torch", "diffusers", "transformers", "tokenizers", "safetensors", "scikit-learn", "numpy", "scipy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def git_commit() -> Optional[str]:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
