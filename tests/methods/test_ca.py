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


def test_fidelity_model_based_target_and_an_independent_regularisation_batch(components, request_three, monkeypatch):
    """One step: the target is the same network's anchor-prompt prediction on the noisy anchor images, without
    gradient (CompVis model-based loss); the concept prediction sees the same images and timesteps; the
    regularisation (diffusers prior preservation) is a second, independently drawn batch with anchor prompts."""
    calls = []
    real_frozen_copy = ca.frozen_copy

    def recording_copy(module):
        unet = real_frozen_copy(module)
        original_forward = unet.forward

        def forward(x, t, encoder_hidden_states, **kwargs):
            calls.append((x.detach().clone(), t.clone(), encoder_hidden_states.detach().clone(), torch.is_grad_enabled()))
            return original_forward(x, t, encoder_hidden_states=encoder_hidden_states, **kwargs)

        unet.forward = forward
        return unet

    monkeypatch.setattr(ca, "frozen_copy", recording_copy)
    config = ca.CAConfig(train_steps=1, batch_size=6, num_anchor_images=10, regularization_weight=1.0,
                         detach_shared_prefix_kv=False)
    ca.erase(components, request_three, config, seed=2)
    (x_target, t_target, anchor_a, grad_a), (x_concept, t_concept, concept, grad_c), (x_prior, t_prior, anchor_p, grad_p) = calls
    assert not grad_a and grad_c and grad_p
    assert torch.equal(x_target, x_concept) and torch.equal(t_target, t_concept)
    anchors = encode_prompts(components, request_three.anchor_prompts)
    forgets = encode_prompts(components, request_three.forget_prompts)
    pair = lambda emb, table: [next(i for i in range(len(table)) if torch.equal(table[i], row)) for row in emb]  # noqa: E731
    assert pair(anchor_a, anchors) == pair(concept, forgets), "each concept prompt is paired with its own anchor"
    pair(anchor_p, anchors)  # the regularisation uses anchor prompts
    assert not torch.equal(x_prior, x_target) and not torch.equal(t_prior, t_target), "its own images, noise and t"
