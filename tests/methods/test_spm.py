"""SPM: rank-1 membranes zero at initialisation on the transformer blocks' layers, the erasure + Latent Anchoring loss,
the anchors' sampling, and Facilitated Transport (strength m^2 from max(cosine, token overlap))."""

import dataclasses

import pytest
import torch
import torch.nn as nn

from methods.core.config import ConfigError
from methods.core.seeding import make_generator
from methods.registry import load_registry
from methods.t2i import spm
from methods.t2i.diffusion import EditedDiffusion, encode_prompts, state_fingerprint


def _expected_layers(unet):
    names = []
    for name, module in unet.named_modules():
        if module.__class__.__name__ == "Transformer2DModel":
            names += [f"{name}.{child_name}".replace(".", "_") for child_name, child in module.named_modules()
                      if isinstance(child, (nn.Linear, nn.Conv2d))]
    return names


def test_adapters_are_rank_one_zero_at_init_on_every_transformer_layer(components):
    unet, network = spm.adapted_unet(components.unet, spm.SPMConfig(), seed=0)
    assert unet is not components.unet
    assert sorted(network.layers.keys()) == sorted(_expected_layers(components.unet))
    assert len(network.layers) > 0
    for layer in network.layers.values():
        assert layer.down.weight.shape[0] == 1 and layer.up.weight.shape[1] == 1  # one dimension
        assert torch.count_nonzero(layer.up.weight) == 0  # zero at initialisation
        assert torch.count_nonzero(layer.down.weight) > 0
    # at initialisation the adapted model is the original one, whatever the strength
    x = torch.randn(2, *components.sample_shape, generator=make_generator(1))
    emb = encode_prompts(components, ["a digit three", "a digit eight"])
    t = torch.tensor(500)
    network.multiplier = 1.0
    assert torch.allclose(unet(x, t, encoder_hidden_states=emb).sample,
                          components.unet(x, t, encoder_hidden_states=emb).sample, atol=1e-6)


def test_membrane_adds_scaled_rank_one_update_per_sample():
    linear = nn.Linear(6, 5)
    class Transformer2DModel(nn.Module):  # the official target module's class name
        pass

    holder = nn.Module()
    holder.block = Transformer2DModel()
    holder.block.proj = linear
    network = spm.SPMNetwork(holder, rank=1, alpha=2.0)
    layer = network.layers["block_proj"]
    nn.init.normal_(layer.up.weight)
    x = torch.randn(3, 4, 6)
    network.multiplier = torch.tensor([0.0, 0.25, 1.0])
    out = linear(x)
    update = (x @ layer.down.weight.T) @ layer.up.weight.T  # (B, N, 5), rank 1
    for b, m in enumerate([0.0, 0.25, 1.0]):
        assert torch.allclose(out[b], x[b] @ linear.weight.T + linear.bias + m * 2.0 * update[b], atol=1e-5)
    network.multiplier = 0.0
    assert torch.equal(linear(x), x @ linear.weight.T + linear.bias)


def test_erasure_and_latent_anchoring_loss():
    g = make_generator(0)
    target, positive, neutral = (torch.randn(2, 1, 4, 4, generator=g) for _ in range(3))
    anchor, anchor_original = torch.randn(8, 1, 4, 4, generator=g), torch.randn(8, 1, 4, 4, generator=g)
    loss = spm.spm_loss(target, positive, neutral, anchor, anchor_original, guidance=1.5, la_strength=1000.0)
    erase = ((target - (neutral - 1.5 * (positive - neutral))) ** 2).mean()
    anchoring = ((anchor - anchor_original) ** 2).mean()
    assert torch.allclose(loss["erase"], erase)
    assert torch.allclose(loss["anchoring"], anchoring)
    assert torch.allclose(loss["loss"], erase + 1000.0 * anchoring)
    # without anchors: the ESD-like erasure only; g = 1 gives 2 n - p
    plain = spm.spm_loss(target, positive, neutral)
    assert torch.allclose(plain["loss"], ((target - (2 * neutral - positive)) ** 2).mean())


def test_anchors_are_random_embeddings_around_the_concept_norm():
    target = torch.randn(6, 8, generator=make_generator(3)) * 4
    anchors = spm.sample_anchors(target, 50, make_generator(0))
    assert anchors.shape == (50, 6, 8)
    ratio = anchors.flatten(1).norm(dim=1) / target.norm()
    assert ratio.min() >= 0.8 - 1e-5 and ratio.max() <= 1.2 + 1e-5
    cosine = torch.nn.functional.cosine_similarity(anchors.flatten(1), target.flatten()[None], dim=1)
    assert cosine.abs().max() < 0.9  # random directions, not copies of the concept
    assert torch.equal(anchors, spm.sample_anchors(target, 50, make_generator(0)))


def test_facilitated_transport_strength():
    concept = torch.randn(1, 4, 3, generator=make_generator(0))
    far = torch.randn(1, 4, 3, generator=make_generator(1))
    far = far - (far.flatten() @ concept.flatten()) / concept.norm() ** 2 * concept  # orthogonal to the concept
    prompts = torch.cat([concept, 2.0 * concept, far])
    # equal (or parallel) to the concept: 1; orthogonal with no shared token: 0
    m = spm.transport_strength(prompts, concept, torch.zeros(3, 1))
    assert torch.allclose(m, torch.tensor([1.0, 1.0, 0.0]), atol=1e-5)
    # a shared token lifts the far prompt to its token overlap (the maximum of the two terms)
    m = spm.transport_strength(prompts, concept, torch.tensor([[0.0], [0.0], [0.5]]))
    assert torch.allclose(m[2], torch.tensor(0.5))
    assert torch.allclose(spm.transport_strength(prompts, concept, None, "clipcos"), torch.tensor([1.0, 1.0, 0.0]),
                          atol=1e-5)
    assert spm.token_overlap([1, 7, 9, 2], [1, 9, 2], special_ids={1, 2}) == 1.0
    assert spm.token_overlap([1, 7, 2], [1, 9, 5, 2], special_ids={1, 2}) == 0.0
    assert spm.token_overlap([1, 9, 2], [1, 9, 5, 2], special_ids={1, 2}) == 0.5


def _smoke_config(**overrides):
    config = load_registry().card("spm").build_config("minicanvas")
    return dataclasses.replace(config, iterations=3, batch_size=2, anchor_samples=2, **overrides)


def test_spm_sampler_uses_the_prompt_strength_and_leaves_the_base_untouched(components, request_three):
    before = state_fingerprint(components.unet)
    edited = spm.erase(components, request_three, _smoke_config(), seed=0)
    assert isinstance(edited, EditedDiffusion) and edited.components is components
    assert all(torch.equal(p, before[n]) for n, p in components.unet.named_parameters())
    assert edited.info["erased_concept"] == "three"
    # the concept's word: token overlap 1, so strength m^2 = 1; a prompt without it: the cosine term only
    with_concept = edited.encode(["a digit three in plain style"])
    without = edited.encode(["a digit eight in plain style"])
    assert torch.allclose(edited.strength(with_concept), torch.ones(1))
    cosine = torch.nn.functional.cosine_similarity(without.flatten(1), edited.concept_embeds.flatten(1)).clamp(min=0)
    assert torch.allclose(edited.strength(without), cosine ** 2, atol=1e-5)
    # an embedding `encode` did not produce (a soft prompt) gets the cosine term only
    soft = with_concept + 1e-3
    cos_soft = torch.nn.functional.cosine_similarity(soft.flatten(1), edited.concept_embeds.flatten(1))
    assert torch.allclose(edited.strength(soft), torch.clamp(cos_soft, min=0) ** 2, atol=1e-5)
    # prompts and their embeddings sample alike; the strength is differentiable for attacks
    prompts = ["a digit three in plain style", "a digit eight"]
    a = edited.sample(prompts, make_generator(0))
    b = edited.sample_embeddings(edited.encode(prompts), make_generator(0))
    assert torch.equal(a, b)
    text = edited.encode(prompts).clone().requires_grad_(True)
    scheduler = components.fresh_scheduler()
    scheduler.set_timesteps(3)
    x = torch.randn(2, *components.sample_shape, generator=make_generator(2))
    eps, _ = edited.guided_noise(scheduler, x, scheduler.timesteps[0], text, edited.encode([""]).expand_as(text), 2.0)
    eps.sum().backward()
    assert text.grad is not None and text.grad.abs().sum() > 0
    assert edited.network.multiplier == 0.0  # reset after the call


def test_trained_membrane_changes_concept_samples_and_transport_off_is_full_strength(components, request_three):
    edited = spm.erase(components, request_three, _smoke_config(learning_rate=0.1), seed=0)
    assert any(torch.count_nonzero(layer.up.weight) > 0 for layer in edited.network.layers.values())
    prompts = ["a digit three in plain style"] * 2
    base = EditedDiffusion(components).sample(prompts, make_generator(0))
    assert not torch.allclose(edited.sample(prompts, make_generator(0)), base)
    full = spm.SPMDiffusion(components, edited.unet, edited.network, ["three"],
                            dataclasses.replace(edited.config, transport=False), {})
    assert torch.equal(full.strength(full.encode(["a digit eight"])), torch.ones(1))
    # same seed, same adapters
    again = spm.erase(components, request_three, _smoke_config(learning_rate=0.1), seed=0)
    assert all(torch.equal(p, q) for p, q in zip(edited.network.parameters(), again.network.parameters()))


def test_bad_config_is_rejected():
    with pytest.raises(ConfigError, match="rank"):
        spm.SPMConfig(rank=0)
    with pytest.raises(ConfigError, match="matching_metric"):
        spm.SPMConfig(matching_metric="jaccard")
