"""Task vectors: tau = theta_ft - theta_pre and theta_new = theta_pre - alpha tau; task_vectors' cosine schedule."""

import dataclasses
import math

import torch

from methods.registry import load_registry
from methods.t2i import taskvector


def test_negation_subtracts_alpha_times_the_weight_difference():
    pre = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.5]), "steps": torch.tensor(3)}
    ft = {"w": torch.tensor([1.5, 1.0]), "b": torch.tensor([0.0]), "steps": torch.tensor(7)}
    tau = taskvector.task_vector(pre, ft)
    assert set(tau) == {"w", "b"}  # integer buffers are skipped
    new = taskvector.apply_negated(pre, tau, 2.0)
    assert torch.equal(new["w"], torch.tensor([0.0, 4.0])) and torch.equal(new["b"], torch.tensor([1.5]))
    assert torch.equal(new["steps"], pre["steps"])


def test_the_cosine_schedule_of_task_vectors():
    assert taskvector.cosine_lr(0, 1.0, 4, 20) == 0.25  # warm-up: base * (step + 1) / warmup
    assert taskvector.cosine_lr(4, 1.0, 4, 20) == 1.0
    assert math.isclose(taskvector.cosine_lr(12, 1.0, 4, 20), 0.5)
    assert taskvector.cosine_lr(20, 1.0, 4, 20) < 1e-12


def test_alpha_zero_is_the_base_model_and_alpha_scales_the_edit(components, request_three):
    config = dataclasses.replace(load_registry().card("taskvector").build_config("minicanvas"), epochs=2,
                                 num_images=10, batch_size=5, warmup_steps=1, learning_rate=1e-2)
    base = dict(components.unet.named_parameters())
    untouched = taskvector.erase(components, request_three, dataclasses.replace(config, scaling_coef=0.0), seed=0)
    assert all(torch.equal(p, base[n]) for n, p in untouched.components.unet.named_parameters())
    one = dict(taskvector.erase(components, request_three, dataclasses.replace(config, scaling_coef=1.0), seed=0)
               .components.unet.named_parameters())
    two = dict(taskvector.erase(components, request_three, dataclasses.replace(config, scaling_coef=2.0), seed=0)
               .components.unet.named_parameters())
    for name, p in base.items():  # the same fine-tune (same seed): the edit is linear in alpha
        assert torch.allclose(two[name] - p, 2 * (one[name] - p), atol=1e-6)
    assert any(not torch.equal(one[n], p) for n, p in base.items())
