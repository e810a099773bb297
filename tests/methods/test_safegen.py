"""SafeGen: a block-average mosaic, the x_c - x_m + eps target, and only self-attention (attn1) learns."""

import dataclasses

import torch

from methods.registry import load_registry
from methods.t2i import safegen


def test_mosaic_is_the_block_mean():
    images = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    out = safegen.mosaic(images, 2)
    expected = torch.tensor([[2.5, 2.5, 4.5, 4.5], [2.5, 2.5, 4.5, 4.5],
                             [10.5, 10.5, 12.5, 12.5], [10.5, 10.5, 12.5, 12.5]])
    assert torch.equal(out[0, 0], expected)
    partial = safegen.mosaic(torch.ones(1, 1, 5, 5), 2)  # edge tiles average what they cover
    assert partial.shape == (1, 1, 5, 5) and torch.equal(partial, torch.ones(1, 1, 5, 5))


def test_the_mosaic_target_makes_the_denoised_estimate_mosaic_coloured(components):
    """eps* = x_c - x_m + eps: with a_t = 1/2 the one-step x_0 estimate from x_t is exactly the mosaic."""
    concept = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    mosaics, noise = safegen.mosaic(concept, 4), torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    target = safegen.safegen_targets(concept, mosaics, noise)
    assert torch.equal(target, concept - mosaics + noise)
    a = 0.5
    x_t = a ** 0.5 * concept + (1 - a) ** 0.5 * noise
    assert torch.allclose((x_t - (1 - a) ** 0.5 * target) / a ** 0.5, mosaics, atol=1e-6)


def test_only_self_attention_changes(components, request_three):
    config = dataclasses.replace(load_registry().card("safegen").build_config("minicanvas"), train_steps=5,
                                 num_images=10, batch_size=4)
    edited = safegen.erase(components, request_three, config, seed=0)
    base = dict(components.unet.named_parameters())
    changed = [n for n, p in edited.components.unet.named_parameters() if not torch.equal(p, base[n])]
    assert changed and all("attn1" in n for n in changed)
