"""SLD: guidance arithmetic as in the official pipeline; sampling-time only (weights untouched)."""

import dataclasses

import torch

from methods.registry import load_registry

from methods.t2i import sld
from methods.core.seeding import make_generator
from methods.t2i.diffusion import sample_cfg, state_fingerprint


def test_safety_term_acts_only_where_prompt_is_not_above_concept_by_threshold():
    config = sld.SLDConfig(sld_warmup_steps=0, sld_guidance_scale=1000.0, sld_threshold=0.1,
                           sld_momentum_scale=0.0, sld_mom_beta=0.0)
    eps_uncond = torch.zeros(6)
    eps_safety = torch.ones(6)
    # prompt minus concept: three elements above the threshold (left alone), three below (guided away)
    eps_prompt = eps_safety + torch.tensor([0.5, 0.3, 0.2, 0.05, 0.0, -0.5])
    guided, _ = sld.safety_guidance(eps_uncond, eps_prompt, eps_safety, torch.zeros(6), 0, 2.0, config)
    plain_cfg = eps_uncond + 2.0 * (eps_prompt - eps_uncond)
    assert torch.equal(guided[:3], plain_cfg[:3])
    # below the threshold: mu = min(1, s_S |diff|), so the safety direction (1) is subtracted, scaled by s_g = 2
    mu = torch.clamp((eps_prompt[3:] - eps_safety[3:]).abs() * 1000.0, max=1.0)
    assert torch.allclose(guided[3:], plain_cfg[3:] - 2.0 * mu * 1.0)
    assert mu[1] == 0  # identical predictions give a zero scale


def test_warmup_and_momentum_follow_the_official_update():
    config = sld.SLDConfig(sld_warmup_steps=2, sld_guidance_scale=10.0, sld_threshold=0.0,
                           sld_momentum_scale=0.5, sld_mom_beta=0.7)
    eps_uncond, eps_prompt, eps_safety = torch.zeros(3), torch.full((3,), -0.2), torch.full((3,), 0.3)
    momentum = torch.zeros(3)
    plain_cfg = eps_uncond + 3.0 * (eps_prompt - eps_uncond)
    expected_momentum = torch.zeros(3)
    for step in range(4):
        guided, momentum = sld.safety_guidance(eps_uncond, eps_prompt, eps_safety, momentum, step, 3.0, config)
        term = 1.0 * (eps_safety - eps_uncond) + 0.5 * expected_momentum  # mu = min(1, 10 * 0.5) = 1
        expected_momentum = 0.7 * expected_momentum + 0.3 * term
        assert torch.allclose(momentum, expected_momentum)  # momentum builds up during warm-up too
        if step < 2:
            assert torch.equal(guided, plain_cfg)
        else:
            assert torch.allclose(guided, plain_cfg - 3.0 * term)


def test_sld_changes_samples_but_not_weights(components, request_three):
    before = state_fingerprint(components.unet)
    config = dataclasses.replace(load_registry().card("sld").build_config("minicanvas"), sld_warmup_steps=0)
    result = sld.erase(components, request_three, config)
    prompts = ["a digit three in plain style"] * 4
    safe = result.sample(prompts, make_generator(0))
    plain = sample_cfg(components, prompts, make_generator(0))
    assert not torch.allclose(safe, plain)
    assert result.components is components
    assert all(torch.equal(p, before[n]) for n, p in components.unet.named_parameters())


def test_disabled_safety_guidance_is_plain_cfg(components, request_three):
    prompts = ["a digit three in plain style", "a digit five in thick style"]
    for disabled in (
        sld.SLDConfig(sld_guidance_scale=1.0),  # s_S <= 1 disables SLD, as in the official pipeline
        sld.SLDConfig(sld_warmup_steps=components.sampling.num_inference_steps, sld_momentum_scale=0.0),
    ):
        safe = sld.erase(components, request_three, disabled).sample(prompts, make_generator(5))
        plain = sample_cfg(components, prompts, make_generator(5))
        assert torch.allclose(safe, plain, atol=1e-6)


def test_safety_concept_defaults_to_request_concept(components, request_three):
    assert sld.erase(components, request_three, sld.SLDConfig()).info["safety_concept"] == "a digit three"
    custom = sld.SLDConfig(safety_concept=sld.I2P_SAFETY_CONCEPT)
    assert sld.erase(components, request_three, custom).info["safety_concept"] == sld.I2P_SAFETY_CONCEPT
