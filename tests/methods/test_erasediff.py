"""EraseDiff: the BOME multiplier is max(eta - cos(grad L_r, grad q), 0); the loop lowers the forget objective."""

import dataclasses

import torch
import torch.nn.functional as F

from methods.registry import load_registry
from methods.t2i import erasediff
from methods.t2i.diffusion import encode_prompts


def test_the_adaptive_multiplier_is_the_bome_rule():
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        grad_r, grad_q = torch.randn(50, generator=generator), torch.randn(50, generator=generator)
        cosine = float(F.cosine_similarity(grad_r, grad_q, dim=0))
        assert abs(erasediff.bome_multiplier(grad_r, grad_q, 0.1) - max(0.1 - cosine, 0.0)) < 1e-5
    aligned = torch.ones(10)
    assert erasediff.bome_multiplier(aligned, aligned, 0.1) == 0.0  # cos 1 > eta: no push
    assert erasediff.bome_multiplier(aligned, torch.zeros(10), 0.1) == 0.0  # vanishing grad q


def _forget_objective(components, unet, request) -> float:
    """f on fixed inputs: the forget prompt's prediction against the (unrelated = anchor) prompt's."""
    x_t = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.full((5,), 600)
    with torch.no_grad():
        out = unet(x_t, t, encoder_hidden_states=encode_prompts(components, request.forget_prompts)).sample
        target = unet(x_t, t, encoder_hidden_states=encode_prompts(components, request.anchor_prompts)).sample
    return float(F.mse_loss(out, target))


def test_the_upper_level_lowers_the_forget_objective(components, request_three):
    config = dataclasses.replace(load_registry().card("erasediff").build_config("minicanvas"), epochs=4,
                                 num_forget_images=20, num_retain_images=20, batch_size=5, learning_rate=1e-2)
    edited = erasediff.erase(components, request_three, config, seed=0)
    assert _forget_objective(components, edited.components.unet, request_three) < \
        0.5 * _forget_objective(components, components.unet, request_three)
    assert edited.info["mean_lambda"] == config.lambda_bome

