"""SalUn: the saliency mask is the global top fraction of |gradient|, and only masked weights move."""

import dataclasses

import torch

from methods.registry import load_registry
from methods.t2i import salun
from methods.t2i.diffusion import state_fingerprint


def _tiny(**changes) -> salun.SalUnConfig:
    config = load_registry().card("salun").build_config("minicanvas")
    tiny = dict(epochs=1, num_forget_images=10, num_retain_images=10, batch_size=4, mask_batch_size=5,
                learning_rate=1e-2)
    return dataclasses.replace(config, **{**tiny, **changes})


def test_the_mask_keeps_the_global_top_fraction_of_gradient_magnitudes():
    generator = torch.Generator().manual_seed(0)
    gradients = {"a": torch.randn(7, 3, generator=generator), "b": torch.randn(11, generator=generator) * 3}
    masks = salun.saliency_mask(gradients, 0.3)
    # independently: the threshold is the k-th largest |g| over both tensors together
    magnitudes = torch.cat([g.abs().flatten() for g in gradients.values()])
    k = int(len(magnitudes) * 0.3)
    threshold = magnitudes.sort(descending=True).values[k - 1]
    for name, g in gradients.items():
        assert torch.equal(masks[name].bool(), g.abs() >= threshold), name
    assert sum(int(m.sum()) for m in masks.values()) == k


def test_only_masked_weights_move_and_the_input_is_untouched(components, request_three, monkeypatch):
    captured = {}
    original = salun.saliency_mask

    def keep(gradients, ratio):
        captured.update(original(gradients, ratio))
        return captured

    monkeypatch.setattr(salun, "saliency_mask", keep)
    before = state_fingerprint(components.unet)
    edited = salun.erase(components, request_three, _tiny(), seed=0)
    after = dict(edited.components.unet.named_parameters())
    moved = unmasked_moved = 0
    for name, mask in captured.items():
        delta = (after[name] - before[name]) != 0
        moved += int(delta.sum())
        unmasked_moved += int((delta & (mask == 0)).sum())
    assert moved > 0 and unmasked_moved == 0
    assert abs(edited.info["masked_fraction"] - 0.5) < 1e-3
    assert all(torch.equal(p, before[n]) for n, p in components.unet.named_parameters())

