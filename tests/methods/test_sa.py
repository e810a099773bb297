"""Selective Amnesia: the Fisher is the squared per-sample gradient of the loss summed over timesteps; EWC is its
weighted squared distance."""

import dataclasses

import torch

from methods.registry import load_registry
from methods.t2i import sa
from methods.t2i.diffusion import encode_prompts


def test_fisher_is_the_squared_gradient_of_the_summed_loss(components):
    unet = components.unet
    params = [p for n, p in unet.named_parameters() if "attn2.to_k" in n]
    for p in params:
        p.requires_grad_(True)
    images = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    text = encode_prompts(components, ["a digit one", "a digit two"])
    fisher = sa.fisher_diagonal(components, unet, params, images, text, 4, torch.Generator().manual_seed(1))

    # independently: timesteps one at a time, the same noise draws, the sum rescaled to 1000 timesteps
    generator = torch.Generator().manual_seed(1)
    steps = torch.linspace(0, 999, 4).round().long()
    expected = [torch.zeros_like(p) for p in params]
    for x, c in zip(images, text):
        noise = torch.randn((4, *x.shape), generator=generator)
        total = 0
        for j, t in enumerate(steps):
            x_t = components.scheduler.add_noise(x[None], noise[j : j + 1], t[None])
            pred = unet(x_t, t[None], encoder_hidden_states=c[None]).sample
            total = total + ((pred - noise[j : j + 1]) ** 2).mean()
        grads = torch.autograd.grad(total * 1000 / 4, params)
        for e, g in zip(expected, grads):
            e += g ** 2 / 2
    for p in params:
        p.requires_grad_(False)
    for f, e in zip(fisher, expected):
        assert torch.allclose(f, e, rtol=1e-3, atol=1e-9)


def test_ewc_penalty_and_replay_keep_the_weights_near_theta_star(components, request_three):
    a, b, f = [torch.tensor([1.0, 2.0])], [torch.tensor([0.0, 4.0])], [torch.tensor([3.0, 0.5])]
    assert float(sa.ewc_penalty(a, b, f)) == 3.0 * 1 + 0.5 * 4  # no 1/2, as the official code
    config = dataclasses.replace(load_registry().card("sa").build_config("minicanvas"), epochs=2,
                                 num_surrogate_images=10, num_replay_images=10, fim_samples=3, fim_timesteps=5,
                                 batch_size=5, learning_rate=1e-2)
    distance = {}
    for lmbda in (0.0, 1e6):
        edited = sa.erase(components, request_three, dataclasses.replace(config, lmbda=lmbda), seed=0)
        distance[lmbda] = sum(float((p - q).pow(2).sum()) for p, q in
                              zip(edited.components.unet.parameters(), components.unet.parameters()))
    assert distance[1e6] < 0.5 * distance[0.0]
