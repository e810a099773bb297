"""Scissorhands: SNIP scores |G * theta| trim the weights above the sparsity quantile, only inside the chosen layers."""

import dataclasses

import torch

from methods.registry import load_registry
from methods.t2i import scissorhands
from methods.t2i.diffusion import state_fingerprint


def test_trim_mask_is_the_kthvalue_rule():
    generator = torch.Generator().manual_seed(0)
    grads = [torch.rand(6, 4, generator=generator), torch.rand(9, generator=generator)]
    weights = [torch.randn(6, 4, generator=generator), torch.randn(9, generator=generator)]
    scores = scissorhands.snip_scores(grads, weights)
    for s, g, w in zip(scores, grads, weights):
        assert torch.allclose(s, (g * w).abs())
    masks = scissorhands.trim_mask(scores, 0.8)
    flat = torch.cat([s.flatten() for s in scores]).sort().values
    threshold = flat[int(0.8 * len(flat)) - 1]  # the k-th smallest score
    assert sum(int(m.sum()) for m in masks) == int((flat > threshold).sum()) == len(flat) - int(0.8 * len(flat))
    for m, s in zip(masks, scores):
        assert torch.equal(m, s > threshold)


def test_trimming_touches_only_the_chosen_layers(components, request_three):
    config = load_registry().card("scissorhands").build_config("minicanvas")
    layer = "up_blocks.0.attentions.0."
    config = dataclasses.replace(config, sparsity=0.9, epochs=0, prune_num=2, num_forget_images=10,
                                 num_retain_images=10, batch_size=5, reinit_layers=(layer,))
    before = state_fingerprint(components.unet)
    edited = scissorhands.erase(components, request_three, config, seed=0)
    changed = {n: int((p != before[n]).sum()) for n, p in edited.components.unet.named_parameters()
               if not torch.equal(p, before[n])}
    assert changed and all(name.startswith(layer) for name in changed)
    # every trimmed weight of those layers was re-drawn (a bias re-set to zero may already have been zero)
    assert sum(changed.values()) <= edited.info["reinitialised_weights"] <= edited.info["trimmed_weights"]
    assert all(torch.equal(p, before[n]) for n, p in components.unet.named_parameters())


def test_the_ascent_repair_raises_the_forget_loss(components, request_three):
    """The official class-forgetting repair: L_r - lam * L_f lowers the model's fit to the forget images."""
    from methods.core.seeding import make_generator
    from methods.t2i.diffusion import encode_prompts
    from methods.t2i.training import denoising_loss, prompt_images

    config = dataclasses.replace(load_registry().card("scissorhands").build_config("minicanvas"), forget_loss="ascent",
                                 lam=1.0, epochs=6, prune_num=1, num_forget_images=20, num_retain_images=20,
                                 batch_size=5, learning_rate=3e-3, reinit_layers=())
    # against the same repair without the ascent term (lam 0): on a random model the retain descent alone moves the
    # forget loss too, so the ascent's effect is what it adds on top
    ascent = scissorhands.erase(components, request_three, config, seed=0)
    descent_only = scissorhands.erase(components, request_three, dataclasses.replace(config, lam=0.0), seed=0)
    images, index = prompt_images(components, request_three, request_three.forget_prompts, 8, make_generator(5))
    text = encode_prompts(components, request_three.forget_prompts)[index]
    with torch.no_grad():
        with_ascent = denoising_loss(components, ascent.components.unet, images, text, make_generator(6))
        without = denoising_loss(components, descent_only.components.unet, images, text, make_generator(6))
    assert with_ascent > without
