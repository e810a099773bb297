"""Safe Latent Diffusion (Schramowski et al., CVPR 2023). Catalog id: `schramowski2022safe`.

Follows huggingface/diffusers@58eb52c, pipelines/deprecated/stable_diffusion_safe/pipeline_stable_diffusion_safe.py
(the official pipeline of ml-research/safe-latent-diffusion@a42923c).

SLD leaves the weights alone. At sampling time it runs a third UNet pass on a "safety concept" prompt S and
subtracts, inside the classifier-free guidance bracket, a masked direction towards S:

    eps = eps_0 + s_g * [(eps_p - eps_0) - gamma_t]
    gamma_t = mu_t * (eps_S - eps_0) + s_m * nu_t                 (subtracted only from step index delta on)
    mu_t = 0 where eps_p - eps_S >= lambda, else min(1, s_S * |eps_p - eps_S|)   (element-wise)
    nu_{t+1} = beta_m * nu_t + (1 - beta_m) * gamma_t              (momentum builds up during warm-up too)

eps_0, eps_p, eps_S: predictions for the empty, user and safety prompts. The element-wise mask mu applies the
safety term only where the user prompt's prediction is within `lambda` of the safety concept's (or below it), so
the guidance acts where the user prompt points towards the unsafe concept. The arithmetic follows the official
repository and diffusers' `StableDiffusionPipelineSafe` exactly.

MiniCanvas (registry): the safety concept is the concept prompt ("a digit three"), warm-up is counted in sampler
steps and scaled from 50 steps to the testbed's 10, and the STRONG preset's s_S and threshold are rescaled to
pixel-space noise predictions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch

from ..core.config import check_config
from .diffusion import DiffusionComponents, EditedDiffusion, EraseRequest, encode_prompts

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
    """Defaults are the diffusers pipeline defaults (= MEDIUM preset) for Stable Diffusion (huggingface/diffusers@58eb52c,
    pipelines/deprecated/stable_diffusion_safe/); a testbed's adaptations are declared in methods/registry.yaml."""

    sld_warmup_steps: int = 10  # delta; pipeline default (MEDIUM), counted out of `num_inference_steps`
    sld_guidance_scale: float = 1000.0  # s_S; pipeline default (MEDIUM); <= 1 disables safety guidance
    sld_threshold: float = 0.01  # lambda; pipeline default (MEDIUM)
    sld_momentum_scale: float = 0.3  # s_m; pipeline default (MEDIUM)
    sld_mom_beta: float = 0.4  # beta_m; pipeline default (MEDIUM)
    safety_concept: Optional[str] = None  # None: the request's concept prompt; official default is I2P_SAFETY_CONCEPT
    num_inference_steps: Optional[int] = None  # None: the components' sampler (SLD paper: 50 DDIM steps)

    def __post_init__(self):
        check_config(self, sld_warmup_steps=">=0", sld_guidance_scale="[0,1e6]", sld_threshold="[-1e3,1e3]",
                     sld_momentum_scale="[0,1e3]", sld_mom_beta="[0,1]", num_inference_steps=">=1")

    @classmethod
    def preset(cls, name: str, **overrides) -> "SLDConfig":
        return cls(**{**PRESETS[name], **overrides})


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


class SafeLatentDiffusion(EditedDiffusion):
    """The original components with SLD's safety-guided noise prediction (3 UNet passes per step when enabled)."""

    def __init__(self, components: DiffusionComponents, config: SLDConfig, safety_concept: str, info: dict):
        super().__init__(components, info)
        self.config = config
        self.safety_concept = safety_concept
        self.safety_embedding = encode_prompts(components, [safety_concept])

    def sample_embeddings(self, text, generator, *, num_inference_steps=None, **settings):
        # the card's own step count, if set, replaces the sampler's (SLD paper: 50 DDIM steps)
        steps = num_inference_steps or self.config.num_inference_steps
        return super().sample_embeddings(text, generator, num_inference_steps=steps, **settings)

    def guidance_state(self, sample: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(sample)  # the momentum nu, which builds up during warm-up too

    def guided_noise(self, scheduler, sample, t, text, uncond, guidance_scale, step_index=0, state=None, unet=None):
        # as in the official pipeline, safety guidance is off when s_S <= 1 or without classifier-free guidance
        if not (self.config.sld_guidance_scale > 1.0 and guidance_scale > 1.0):
            return super().guided_noise(scheduler, sample, t, text, uncond, guidance_scale, step_index, state, unet)
        unet = unet if unet is not None else self.components.unet
        # 1. One batched UNet call for the empty, user and safety-concept predictions.
        conditioning = torch.cat([uncond, text, self.safety_embedding.expand_as(text)])
        model_input = scheduler.scale_model_input(torch.cat([sample] * 3), t)
        predictions = unet(model_input, t, encoder_hidden_states=conditioning).sample.chunk(3)
        # 2. Guidance: plain CFG, minus the masked safety direction once warm-up is over.
        return safety_guidance(*predictions, state, step_index, guidance_scale, self.config)


def erase(components: DiffusionComponents, request: EraseRequest, config: SLDConfig, seed: int = 0) -> EditedDiffusion:
    """SLD changes no weights: it returns the original components with a safety-guided sampler."""
    start = time.perf_counter()
    safety_concept = config.safety_concept if config.safety_concept is not None else request.concept_prompt
    return SafeLatentDiffusion(components, config, safety_concept,
                               info={"safety_concept": safety_concept, "wall_time_s": time.perf_counter() - start})
