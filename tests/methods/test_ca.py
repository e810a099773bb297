"""Concept Ablation: training lowers the gap between concept and anchor predictions, touching only attn2 K/V."""

import dataclasses

import torch

from methods.registry import load_registry

from methods.t2i import ca
from methods.t2i.diffusion import encode_prompts, state_fingerprint


def _prediction_gap(components, unet, request, x_t, t) -> float:
    concept = encode_prompts(components, request.forget_prompts)
    anchor = encode_prompts(components, request.anchor_prompts)
    with torch.no_grad():
        eps_concept = unet(x_t, t, encoder_hidden_states=concept).sample
        eps_anchor = unet(x_t, t, encoder_hidden_states=anchor).sample
    return float((eps_concept - eps_anchor).pow(2).mean())


def test_ca_lowers_concept_anchor_gap(components, request_three):
    config = dataclasses.replace(
        load_registry().card("ca").build_config("minicanvas"), train_steps=40, batch_size=10, num_anchor_images=20, learning_rate=1e-2
    )
    generator = torch.Generator().manual_seed(3)
    x_t = torch.randn(len(request_three.forget_prompts), 1, 8, 8, generator=generator)
    t = torch.full((len(x_t),), 400)
    gap_before = _prediction_gap(components, components.unet, request_three, x_t, t)
    result = ca.erase(components, request_three, config, seed=0)
    gap_after = _prediction_gap(components, result.components.unet, request_three, x_t, t)
    assert gap_after < 0.5 * gap_before, (gap_before, gap_after)


def test_ca_cross_attn_group_trains_only_key_value(components, request_three):
    before = state_fingerprint(components.unet)
    config = dataclasses.replace(
        load_registry().card("ca").build_config("minicanvas"), train_steps=2, batch_size=4, num_anchor_images=5, learning_rate=1e-2
    )
    result = ca.erase(components, request_three, config, seed=0)
    changed = {n for n, p in result.components.unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("attn2.to_k" in n or "attn2.to_v" in n for n in changed)
    assert all(torch.equal(p, before[n]) for n, p in components.unet.named_parameters())
