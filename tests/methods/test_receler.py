"""Receler: erasers zero at initialisation after every cross-attention (the edited model is the base model before
training), the concept mask and the concept-localised regulariser (hand-computed), the soft-token attack step, the
insertion of the soft tokens, and the whole card on tiny components."""

import dataclasses

import pytest
import torch
import torch.nn as nn

from methods.core.config import ConfigError
from methods.core.seeding import make_generator
from methods.t2i import receler
from methods.t2i.diffusion import cross_attention_modules, encode_prompts, state_fingerprint


def _tiny_config(**overrides):
    fields = dict(iterations=2, ddim_steps=4, start_guidance=2.0, ddim_eta=1.0, advrs_iters=2,
                  num_advrs_prompts=2, rank=4, mask_resolution=4)
    fields.update(overrides)
    return receler.RecelerConfig(**fields)


def test_erasers_are_zero_at_init_on_every_cross_attention(components):
    unet, network = receler.erased_unet(components.unet, rank=8, seed=0)
    assert unet is not components.unet
    names = [name.replace(".", "_") for name, _ in cross_attention_modules(components.unet)]
    assert sorted(network.erasers.keys()) == sorted(names) and names
    for eraser in network.erasers.values():
        assert eraser.down.out_features == 8 and eraser.up.in_features == 8
        assert torch.count_nonzero(eraser.up.weight) == 0 and torch.count_nonzero(eraser.up.bias) == 0
    x = torch.randn(2, *components.sample_shape, generator=make_generator(1))
    emb = encode_prompts(components, ["a digit three", "a digit eight"])
    t = torch.tensor(500)
    network.enabled = True
    assert torch.allclose(unet(x, t, encoder_hidden_states=emb).sample,
                          components.unet(x, t, encoder_hidden_states=emb).sample, atol=1e-6)


def test_eraser_adds_its_output_to_the_cross_attention_output(components):
    unet, network = receler.erased_unet(components.unet, rank=8, seed=0)
    name, attention = cross_attention_modules(unet)[0]
    eraser = network.erasers[name.replace(".", "_")]
    nn.init.normal_(eraser.up.weight)
    h = torch.randn(2, 16, attention.to_q.in_features)
    context = torch.randn(2, 8, attention.to_k.in_features)
    network.enabled = False
    plain = attention(h, encoder_hidden_states=context)
    network.enabled = True
    erased = attention(h, encoder_hidden_states=context)
    expected = plain + eraser.up(torch.nn.functional.gelu(eraser.down(plain)))
    assert torch.allclose(erased, expected, atol=1e-5)
    assert not torch.allclose(erased, plain)


def test_concept_mask_thresholds_the_normalised_average_map():
    # two layers at 2x2 (averaged) and one at 4x4 (left out: the mask resolution is 2); one sample
    maps = {"a": torch.tensor([[0.0, 0.1, 0.6, 1.0]]), "b": torch.tensor([[0.2, 0.1, 0.6, 1.0]]),
            "c": torch.rand(1, 16)}
    masks = receler.concept_mask(maps, threshold=0.3, resolution=2)
    # average [0.1, 0.1, 0.6, 1.0] -> normalised [0, 0, 5/9, 1] -> >= 0.3: [0, 0, 1, 1]
    assert torch.equal(masks["a"], torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    assert torch.equal(masks["b"], masks["a"])
    expected_4x4 = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.float32)
    assert torch.equal(masks["c"], expected_4x4.flatten()[None])  # nearest upsampling


def test_regulariser_penalises_eraser_output_only_outside_the_mask():
    # one layer, one sample, 4 pixels, dim 2; mask [1, 0, 1, 0]: only pixels 1 and 3 count
    out = torch.tensor([[[5.0, 7.0], [1.0, 3.0], [9.0, 9.0], [2.0, 0.0]]])
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    value = receler.concept_regulariser({"l": out}, {"l": mask})
    # mean_d of squares at pixel 1: (1 + 9) / 2 = 5, pixel 3: (4 + 0) / 2 = 2; / 2 outside pixels
    assert torch.allclose(value, torch.tensor(3.5))
    # changing the eraser output inside the mask leaves it unchanged; the layers are averaged
    inside = out.clone()
    inside[0, 0] = 100.0
    assert torch.allclose(receler.concept_regulariser({"l": inside}, {"l": mask}), value)
    two = receler.concept_regulariser({"l": out, "m": torch.zeros_like(out)}, {"l": mask, "m": mask})
    assert torch.allclose(two, torch.tensor(1.75))


def test_esd_target_and_soft_token_insertion():
    e0, ep = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 1.0])
    assert torch.allclose(receler.esd_target(e0, ep, 1.0), torch.tensor([-1.0, 3.0]))
    emb = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    soft = torch.full((2, 3), -1.0)
    joined = receler.with_soft_tokens(emb, [(1, 2), (1, 3)], soft)
    assert joined.shape == (2, 6, 3)
    assert torch.equal(joined[0, :2], emb[0, :2]) and torch.equal(joined[0, 2:4], soft)
    assert torch.equal(joined[0, 4:], emb[0, 2:])
    assert torch.equal(joined[1, :3], emb[1, :3]) and torch.equal(joined[1, 3:5], soft)


def test_concept_span_finds_the_concept_tokens(components):
    tok = components.tokenizer
    first, end = receler.concept_span(tok, "a digit three in inverted style", "a digit in inverted style")
    ids = tok("a digit three in inverted style").input_ids
    assert (first, end) == (3, 4) and tok.convert_ids_to_tokens(ids[first:end]) == ["three"]
    assert receler.concept_span(tok, "a digit three", "") == (1, 4)  # a bare concept vs "": every word


def test_inner_attack_lowers_its_own_loss(components):
    unet, network = receler.erased_unet(components.unet, rank=8, seed=0)
    network.enabled = True
    for eraser in network.erasers.values():  # an erased model that differs from the original
        nn.init.normal_(eraser.up.weight, std=0.5)
    g = make_generator(0)
    x = torch.randn(2, *components.sample_shape, generator=g)
    emb = encode_prompts(components, ["a digit three in plain style"] * 2)
    t = torch.tensor(400)
    network.enabled = False
    with torch.no_grad():
        target = unet(x, t, encoder_hidden_states=emb).sample
    network.enabled = True
    soft = nn.Parameter(torch.rand((4, emb.shape[-1]), generator=g))
    optimizer = torch.optim.Adam([soft], lr=0.05)
    predict = lambda tokens: unet(x, t, encoder_hidden_states=receler.with_soft_tokens(emb, [(3, 4)] * 2, tokens)).sample
    losses = [receler.soft_token_attack_step(predict, soft, optimizer, target)[1].item() for _ in range(30)]
    assert losses[-1] < losses[0]
    for eraser in network.erasers.values():
        assert eraser.up.weight.grad is None  # the attack moves the soft tokens only


def test_erase_trains_only_the_erasers_and_is_deterministic(components, request_three):
    before = state_fingerprint(components.unet)
    edited = receler.erase(components, request_three, _tiny_config(), seed=0)
    assert all(torch.equal(p, before[n]) for n, p in components.unet.named_parameters())  # base untouched
    assert edited.components.unet is not components.unet
    assert isinstance(edited, receler.RecelerDiffusion) and edited.network.enabled
    assert edited.info["erasers"] == len(cross_attention_modules(components.unet))
    assert 0.0 < edited.info["mask_coverage"] <= 1.0
    assert any(torch.count_nonzero(e.up.weight) > 0 for e in edited.network.erasers.values())
    again = receler.erase(components, request_three, _tiny_config(), seed=0)
    a = edited.sample(["a digit three"], make_generator(3))
    b = again.sample(["a digit three"], make_generator(3))
    assert torch.equal(a, b)
    # the non-adversarial variant still takes erasure steps
    plain = receler.erase(components, request_three, _tiny_config(advrs_iters=0), seed=0)
    assert plain.info["final_adversarial_loss"] is None
    assert any(torch.count_nonzero(e.up.weight) > 0 for e in plain.network.erasers.values())


@pytest.mark.parametrize("field,value", [("rank", 0), ("advrs_iters", -1), ("mask_threshold", 1.5),
                                         ("learning_rate", 0.0), ("num_advrs_prompts", 0)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(receler.RecelerConfig(), **{field: value})
