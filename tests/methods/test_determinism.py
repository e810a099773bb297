"""Same seed -> same output, for every registered method."""

import dataclasses

import pytest
import torch

from methods import ca, esd
from methods.common import make_generator
from methods.registry import REGISTRY, default_config

FAST = {
    "esd": dict(iterations=3, batch_size=2, ddim_steps=4),
    "ca": dict(train_steps=3, batch_size=4, num_anchor_images=6),
    "uce": {},
    "sld": {},
}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_same_seed_same_samples(name, components, request_three):
    config = dataclasses.replace(default_config(name), **FAST[name])
    prompts = ["a digit three in plain style", "a digit seven in rotated style"]
    outputs = []
    for _ in range(2):
        result = REGISTRY[name].erase(components, request_three, config, seed=7)
        outputs.append(result.sample_fn(prompts, make_generator(11)))
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("module,name", [(esd, "esd"), (ca, "ca")])
def test_different_seed_different_training(module, name, components, request_three):
    config = dataclasses.replace(default_config(name), **FAST[name])
    weights = []
    for seed in (0, 1):
        unet = module.erase(components, request_three, config, seed=seed).components.unet
        weights.append(torch.cat([p.flatten() for p in unet.parameters()]))
    assert not torch.equal(weights[0], weights[1])
