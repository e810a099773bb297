"""SAeUron: the TopK SAE forward (per position and BatchTopK), the feature-importance score and its percentile
selection, the gated ablation (only selected features above their gate change; a position where none fires is left
exactly as it was), and the sampler leaving the base UNet without hooks."""

import dataclasses

import pytest
import torch

from methods.core.config import ConfigError
from methods.core.seeding import make_generator
from methods.t2i import saeuron
from methods.t2i.diffusion import state_fingerprint


def _sae(d_in=4, expansion=3, k=2, seed=0):
    sae = saeuron.TopKSAE(d_in, expansion, k, make_generator(seed))
    with torch.no_grad():
        sae.encoder.bias.normal_(generator=make_generator(seed + 1))
        sae.b_dec.normal_(generator=make_generator(seed + 2))
    return sae


def test_topk_sae_forward_matches_the_formula():
    sae = _sae()
    x = torch.randn(5, 4, generator=make_generator(3))
    pre = torch.relu((x - sae.b_dec) @ sae.encoder.weight.T + sae.encoder.bias)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(12), atol=1e-5)  # unit-norm decoder rows
    expected = torch.zeros_like(pre)
    for i in range(len(pre)):  # per position: keep the k largest
        top = pre[i].argsort(descending=True)[:2]
        expected[i, top] = pre[i, top]
    assert torch.allclose(sae.latents(x), expected)
    assert torch.allclose(sae(x), expected @ sae.W_dec + sae.b_dec, atol=1e-6)
    # BatchTopK: the k x N largest over the whole batch
    batch = sae.latents(x, batch_topk=True)
    threshold = pre.flatten().sort(descending=True).values[2 * 5 - 1]
    assert torch.equal(batch, torch.where(pre >= threshold, pre, torch.zeros_like(pre)))
    assert (sae.latents(x, batch_topk=True) > 0).sum() <= 10


def test_feature_importance_and_selection():
    # 2 samples x 1 timestep x 4 latents per concept
    latents = {"forget": torch.tensor([[[4.0, 0.0, 1.0, 3.0]], [[2.0, 0.0, 1.0, 1.0]]]),
               "a": torch.tensor([[[1.0, 1.0, 1.0, 1.0]]]),
               "b": torch.tensor([[[0.0, 3.0, 1.0, 0.0]]])}
    mean_x = torch.tensor([3.0, 0.0, 1.0, 2.0])
    mean_o = torch.tensor([0.5, 2.0, 1.0, 0.5])  # others pooled sample-wise
    expected = mean_x / mean_x.sum() - mean_o / mean_o.sum()
    scores = saeuron.feature_importance(latents, "forget", 0)
    assert torch.allclose(scores, expected, atol=1e-6)
    selection = saeuron.select_features(latents, "forget", 0, percentile=50.0, multiplier=-2.0)
    assert selection["index"].tolist() == sorted(torch.where(expected > expected.quantile(0.5))[0].tolist())
    assert selection["index"].tolist() == [0, 3]
    assert torch.allclose(selection["scaling"], -2.0 * mean_x[[0, 3]])
    gate = (mean_x + torch.tensor([1.0, 1.0, 1.0, 1.0]) + torch.tensor([0.0, 3.0, 1.0, 0.0])) / 3  # mean over concepts
    assert torch.allclose(selection["gate"], gate[[0, 3]])


def test_ablation_changes_only_selected_features_above_their_gate():
    sae = _sae(d_in=4, expansion=4, k=4)
    x = torch.randn(64, 4, generator=make_generator(5))
    latents = sae.latents(x)
    feature = int(latents.gt(0).sum(0).argmax())  # a feature that fires on some positions
    gate = latents[:, feature][latents[:, feature] > 0].median()
    selection = {"index": torch.tensor([feature]), "scaling": torch.tensor([-3.0]), "gate": gate.reshape(1)}
    out = saeuron.ablate(sae, x, selection, preserve_error=True)
    fired = latents[:, feature] > gate
    assert fired.any() and (~fired).any()
    # positions where the feature stays at or below its gate are returned exactly
    assert torch.equal(out[~fired], x[~fired])
    # elsewhere: x + (scaled - original) activation along that feature's decoder row
    delta = (latents[fired, feature] * (-3.0 - 1.0))[:, None] * sae.W_dec[feature]
    assert torch.allclose(out[fired], x[fired] + delta, atol=1e-5)
    # without the error term: the decoded edited latents
    edited = latents.clone()
    edited[fired, feature] *= -3.0
    assert torch.allclose(saeuron.ablate(sae, x, selection, preserve_error=False), edited @ sae.W_dec + sae.b_dec,
                          atol=1e-5)


def test_sae_training_reduces_fvu():
    x = torch.randn(512, 6, generator=make_generator(7)) @ torch.randn(6, 6, generator=make_generator(8))
    config = saeuron.SAeUronConfig(expansion_factor=2, k=3, learning_rate=1e-2, batch_size=128, epochs=10)
    sae, fvus = saeuron.train_sae(x, config, make_generator(0))
    assert fvus[-1] < 0.5 * fvus[0]


def test_erase_samples_with_the_hook_and_leaves_the_base_unet_alone(components, request_three):
    config = saeuron.SAeUronConfig(hookpoint="up_blocks.0.attentions.1", samples_per_prompt=1, num_inference_steps=2,
                                   guidance_scale=2.0, epochs=1, expansion_factor=2, k=2, percentile=50.0,
                                   multiplier=-5.0)
    before = state_fingerprint(components.unet)
    edited = saeuron.erase(components, request_three, config, seed=0)
    assert all(torch.equal(p, before[n]) for n, p in components.unet.named_parameters())
    block = components.unet.get_submodule(config.hookpoint)
    assert not block._forward_hooks
    assert edited.info["features_per_step"] > 0
    samples = edited.sample(["a digit three"] * 2, make_generator(1), num_inference_steps=2)
    plain = saeuron.EditedDiffusion(components).sample(["a digit three"] * 2, make_generator(1), num_inference_steps=2)
    assert not block._forward_hooks
    assert samples.shape == plain.shape and not torch.allclose(samples, plain)
    # no selected feature (percentile 100): with the error put back the sampler is the base model
    none = dataclasses.replace(config, percentile=100.0)
    same = saeuron.erase(components, request_three, none, seed=0)
    assert same.info["features_per_step"] == 0
    again = same.sample(["a digit three"] * 2, make_generator(1), num_inference_steps=2)
    assert torch.allclose(again, plain, atol=1e-5)


def test_bad_values_name_the_field():
    with pytest.raises(ConfigError, match="percentile"):
        saeuron.SAeUronConfig(percentile=101.0)
    with pytest.raises(ConfigError, match="k"):
        saeuron.SAeUronConfig(k=0)
