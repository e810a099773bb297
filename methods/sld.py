"""Safe Latent Diffusion (Schramowski et al., CVPR 2023). Catalog id: `schramowski2022safe`.

SLD leaves the weights alone. At sampling time it runs a third UNet pass on a "safety concept" prompt S and
subtracts, inside the classifier-free guidance bracket, a masked direction towards S:

    eps = eps_0 + s_g * [(eps_p - eps_0) - gamma_t]
    gamma_t = mu_t * (eps_S - eps_0) + s_m * nu_t                 (subtracted only from step index delta on)
    mu_t = 0 where eps_p - eps_S >= lambda, else min(1, s_S * |eps_p - eps_S|)   (element-wise)
    nu_{t+1} = beta_m * nu_t + (1 - beta_m) * gamma_t              (momentum builds up during warm-up too)

eps_0, eps_p, eps_S: predictions for the empty, user and safety prompts. The element-wise mask mu applies the
safety term only where the user prompt's prediction is within `lambda` of the safety concept's (or below it), so
the guidance acts where the user prompt points towards the unsafe concept. The arithmetic follows the official
repository and diffusers' `StableDiffusionPipelineSafe` exactly (method_specs.md, pitfall 8).

MiniCanvas adaptation: the safety concept is the concept prompt ("a digit three"), warm-up is counted in
sampler steps and scaled from 50 steps to the testbed's 10, and the STRONG preset's s_S and threshold are
rescaled to pixel-space noise predictions (see `SLDConfig.for_minicanvas`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .common import DiffusionComponents, EraseRequest, ErasureResult, check_config, encode_prompts, initial_noise

# Official default safety concept (the I2P categories), used when a run asks for it explicitly.
I2P_SAFETY_CONCEPT = (
    "hate, harassment, violence, suffering, humiliation, harm, suicide, sexual, nudity, bodily fluids, blood, "
    "obscene gestures, illegal activity, drug use, theft, vandalism, weapons, child abuse, brutality, cruelty"
)

# diffusers `SafetyConfig` presets (warm-up counted out of 50 sampling steps).
PRESETS = {
    "weak": dict(sld_warmup_steps=15, sld_guidance_scale=20.0, sld_threshold=0.0, sld_momentum_scale=0.0, sld_mom_beta=0.0),
    "medium": dict(sld_warmup_steps=10, sld_guidance_scale=1000.0, sld_threshold=0.01, sld_momentum_scale=0.3, sld_mom_beta=0.4),
    "strong": dict(sld_warmup_steps=7, sld_guidance_scale=2000.0, sld_threshold=0.025, sld_momentum_scale=0.5, sld_mom_beta=0.7),
    "max": dict(sld_warmup_steps=0, sld_guidance_scale=5000.0, sld_threshold=1.0, sld_momentum_scale=0.5, sld_mom_beta=0.7),
}


@dataclass
class SLDConfig:
    """Defaults are the diffusers pipeline defaults (= MEDIUM preset) for Stable Diffusion; see `for_minicanvas`."""

    sld_warmup_steps: int = 10  # delta; pipeline default (MEDIUM), counted out of `num_inference_steps`
    sld_guidance_scale: float = 1000.0  # s_S; pipeline default (MEDIUM); <= 1 disables safety guidance
    sld_threshold: float = 0.01  # lambda; pipeline default (MEDIUM)
    sld_momentum_scale: float = 0.3  # s_m; pipeline default (MEDIUM)
    sld_mom_beta: float = 0.4  # beta_m; pipeline default (MEDIUM)
    safety_concept: Optional[str] = None  # None: the request's concept prompt; official default is I2P_SAFETY_CONCEPT
    num_inference_steps: Optional[int] = None  # None: the components' sampler (SLD paper: 50 DDIM steps)

    def __post_init__(self):
        check_config(self)
        if self.sld_warmup_steps < 0 or not 0.0 <= self.sld_mom_beta <= 1.0:
            raise ValueError("sld_warmup_steps must be >= 0 and sld_mom_beta in [0, 1]")

    @classmethod
    def preset(cls, name: str, **overrides) -> "SLDConfig":
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def for_minicanvas(cls, scale: str = "ci") -> "SLDConfig":
        # Testbed: the STRONG preset rescaled. Warm-up 7 of 50 steps -> 1 of 10. Noise-prediction differences on
        # 8x8 pixels are ~10x those of SD latents, so s_S goes down (2000 -> 100; min(1, s_S |.|) still saturates)
        # and the threshold up (0.025 -> 0.1). Measured on "three": threshold 0.025 lowers the judge's accuracy
        # on the concept by 43%, 0.1 by 61%, MAX (1.0) by 72% at a larger cost to other digits.
        return cls(
            sld_warmup_steps=1,  # STRONG: 7 of 50 steps
            sld_guidance_scale=100.0,  # STRONG: 2000
            sld_threshold=0.1,  # STRONG: 0.025
            sld_momentum_scale=0.5,  # STRONG
            sld_mom_beta=0.7,  # STRONG
        )


def safety_guidance(
    eps_uncond: torch.Tensor,
    eps_prompt: torch.Tensor,
    eps_safety: torch.Tensor,
    momentum: torch.Tensor,
    step_index: int,
    guidance_scale: float,
    config: SLDConfig,
):
    """One step of SLD guidance; returns (guided noise prediction, updated momentum)."""
    guidance = eps_prompt - eps_uncond
    # element-wise safety scale mu: saturating in |eps_p - eps_S|, zero where eps_p - eps_S >= threshold
    difference = eps_prompt - eps_safety
    scale = torch.clamp(difference.abs() * config.sld_guidance_scale, max=1.0)
    scale = torch.where(difference >= config.sld_threshold, torch.zeros_like(scale), scale)
    safety_term = (eps_safety - eps_uncond) * scale + config.sld_momentum_scale * momentum
    momentum = config.sld_mom_beta * momentum + (1.0 - config.sld_mom_beta) * safety_term
    if step_index >= config.sld_warmup_steps:
        guidance = guidance - safety_term
    return eps_uncond + guidance_scale * guidance, momentum


def sample_safe(
    components: DiffusionComponents,
    prompts: Sequence[str],
    generator: torch.Generator,
    config: SLDConfig,
    safety_concept: str,
) -> torch.Tensor:
    """Classifier-free guided DDIM sampling with SLD's safety guidance (3 UNet passes per step)."""
    steps = config.num_inference_steps or components.sampling.num_inference_steps
    cfg = components.sampling.guidance_scale
    enabled = config.sld_guidance_scale > 1.0 and cfg > 1.0  # as in the official pipeline
    outputs = []
    for begin in range(0, len(prompts), components.max_batch):
        chunk = list(prompts[begin : begin + components.max_batch])
        # 1. Embeddings: empty prompt, user prompts, safety concept.
        text = encode_prompts(components, chunk)
        uncond = encode_prompts(components, [""]).expand_as(text)
        safety = encode_prompts(components, [safety_concept]).expand_as(text)
        conditioning = torch.cat([uncond, text, safety]) if enabled else torch.cat([uncond, text])
        scheduler = components.fresh_scheduler()
        scheduler.set_timesteps(steps, device=components.device)
        sample = initial_noise(components, len(chunk), generator)
        momentum = torch.zeros_like(sample)
        for step_index, t in enumerate(scheduler.timesteps):
            # 2. One batched UNet call for the 2 (or 3) predictions.
            copies = conditioning.shape[0] // len(chunk)
            model_input = scheduler.scale_model_input(torch.cat([sample] * copies), t)
            with torch.no_grad():
                predictions = components.unet(model_input, t, encoder_hidden_states=conditioning).sample.chunk(copies)
            # 3. Guidance: plain CFG, minus the masked safety direction once warm-up is over.
            if enabled:
                eps, momentum = safety_guidance(*predictions, momentum, step_index, cfg, config)
            else:
                eps = predictions[0] + cfg * (predictions[1] - predictions[0])
            # 4. Scheduler step (same sampler as the base model).
            sample = scheduler.step(eps, t, sample, eta=components.sampling.eta, generator=generator).prev_sample
        outputs.append(sample)
    return torch.cat(outputs)


def erase(components: DiffusionComponents, request: EraseRequest, config: SLDConfig, seed: int = 0) -> ErasureResult:
    """SLD changes no weights: it returns the original components with a safety-guided sampler."""
    start = time.perf_counter()
    safety_concept = config.safety_concept if config.safety_concept is not None else request.concept_prompt
    return ErasureResult(
        components=components,
        sample_fn=lambda prompts, generator: sample_safe(components, prompts, generator, config, safety_concept),
        info={"safety_concept": safety_concept, "wall_time_s": time.perf_counter() - start},
    )
