"""MiniCanvas pieces that need no trained model: data, styles, tokenizer, prompts, metrics, cache."""

import dataclasses
import json

import pytest
import torch

from methods.testbeds import minicanvas as mc


@pytest.fixture(scope="module")
def data():
    return mc.load_data()


def test_split_is_deterministic_80_20_and_has_all_styles(data):
    again = mc.load_data()
    assert torch.equal(data["train"].images, again["train"].images)
    n_train, n_test = len(data["train"].images) // 4, len(data["test"].images) // 4
    assert (n_train, n_test) == (1438, 359)
    assert data["train"].images.shape[1:] == (1, 8, 8)
    assert data["train"].images.min() >= -1 and data["train"].images.max() <= 1
    assert torch.bincount(data["test"].styles).tolist() == [n_test] * 4


def test_styles():
    image = torch.full((1, 1, 8, 8), -1.0)
    image[0, 0, 2, 3] = 1.0
    assert torch.equal(mc.apply_style(image, "inverted"), -image)
    thick = mc.apply_style(image, "thick")
    assert thick.sum() > image.sum() and thick[0, 0, 2, 3] == 1.0 and thick[0, 0, 1, 2] == 1.0  # 2x2 dilation
    assert torch.equal(mc.apply_style(image, "rotated"), torch.rot90(image, 1, (2, 3)))
    assert torch.equal(mc.apply_style(image, "plain"), image)


def test_tokenizer_is_word_level_with_bos_eos_and_padding():
    tokenizer = mc.build_tokenizer()
    ids = tokenizer(["a digit three in plain style", "", "a digit cat"], padding="max_length",
                    max_length=8, return_tensors="pt").input_ids
    vocab = {w: i for i, w in enumerate(mc.VOCAB)}
    assert ids[0].tolist() == [vocab[w] for w in ["<bos>", "a", "digit", "three", "in", "plain", "style", "<eos>"]]
    assert ids[1].tolist() == [vocab["<bos>"], vocab["<eos>"]] + [vocab["<pad>"]] * 6
    assert ids[2, 3] == vocab["<unk>"]


def test_erase_request_for_a_digit_and_a_style():
    request = mc.build_erase_request("three")
    assert request.forget_prompts[0] == "a digit three in plain style"
    assert request.neutral_prompts[0] == "a digit in plain style"
    assert request.anchor_prompts[0] == "a digit eight in plain style"
    assert not any(" three" in p for p in request.preserve_prompts)
    style = mc.build_erase_request("inverted", anchor="thick")
    assert all("inverted" in p for p in style.forget_prompts)
    assert all("thick" in p for p in style.anchor_prompts)
    with pytest.raises(ValueError, match="unknown concept"):
        mc.build_erase_request("dog")
    with pytest.raises(ValueError, match="anchor"):
        mc.build_erase_request("three", anchor="plain")


def test_frechet_distance():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 8, generator=generator)
    b = torch.randn(2000, 8, generator=generator)
    assert mc.frechet_distance(a, a) < 1e-3
    assert mc.frechet_distance(a, b) < 0.1
    assert abs(mc.frechet_distance(a, b + 2.0) - 8 * 4.0) < 0.5  # mean shift of 2 in 8 dims


def test_config_hash_keys_the_cache():
    ci = mc.config_for("ci")
    assert mc.config_hash(ci.model_key()) == mc.config_hash(mc.config_for("ci").model_key())
    assert mc.config_hash(ci.model_key()) != mc.config_hash(mc.config_for("full").model_key())
    # evaluation-only settings do not retrain the model
    assert ci.model_key() == dataclasses.replace(ci, samples_per_prompt=3).model_key()
    with pytest.raises(ValueError, match="unknown scale"):
        mc.config_for("huge")


def test_cache_builds_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MMU_ATLAS_CACHE", str(tmp_path))
    calls = []

    def build(directory):
        calls.append(directory)
        (directory / "config.json").write_text(json.dumps({"ok": True}))

    target = mc.cache_root() / "minicanvas" / "abc"
    assert mc.cached(target, build, mc.CACHE_MARKER) == target
    assert mc.cached(target, build, mc.CACHE_MARKER) == target
    assert len(calls) == 1 and (target / "config.json").exists()
    assert str(target).startswith(str(tmp_path))


class _LabelJudge(mc.Judge):
    """Reads labels hidden in the image: pixel (0,0) encodes the digit, pixel (0,1) the style."""

    def predict(self, images, batch=2048):
        digits = torch.round((images[:, 0, 0, 0] + 1) * 4.5).long()
        styles = torch.round((images[:, 0, 0, 1] + 1) * 1.5).long()
        return digits, styles, images.flatten(1)


def _fake_testbed(data):
    return mc.MiniCanvasTestbed(dataclasses.replace(mc.config_for("ci"), samples_per_prompt=3), None, _LabelJudge(),
                                data, {}, {})


class _sampler:
    """A model whose images hide the prompt's labels after `mapping` (a digit -> digit dict)."""

    def __init__(self, mapping):
        self.mapping = mapping

    def sample(self, prompts, generator):
        mapping = self.mapping
        out = torch.zeros(len(prompts), 1, 8, 8)
        for i, prompt in enumerate(prompts):
            words = prompt.split()
            digit, style = mc.DIGITS.index(words[2]), mc.STYLES.index(words[4])
            digit = mapping.get(digit, digit)
            out[i, 0, 0, 0] = digit / 4.5 - 1
            out[i, 0, 0, 1] = style / 1.5 - 1
        return out


def _evaluate(testbed, model, concept):
    request = testbed.requests(0, concept)[0]
    evaluation = testbed.evaluate(model, request, seed=0)
    return {**evaluation.metrics, **evaluation.details}


def test_ua_ira_cra_definitions(data):
    testbed = _fake_testbed(data)
    perfect = _evaluate(testbed, _sampler({}), "three")
    assert (perfect["UA"], perfect["IRA"], perfect["CRA"]) == (0.0, 1.0, 1.0)
    erased = _evaluate(testbed, _sampler({3: 8}), "three")  # every three drawn as an eight
    assert (erased["UA"], erased["IRA"], erased["CRA"]) == (1.0, 1.0, 1.0)
    collateral = _evaluate(testbed, _sampler({3: 8, 5: 6}), "three")  # and fives drawn as sixes
    assert collateral["IRA"] == pytest.approx(8 / 9) and collateral["UA"] == 1.0
    style_axis = _evaluate(testbed, _sampler({3: 8}), "inverted")  # style erasure: digit errors are CRA
    assert style_axis["UA"] == 0.0 and style_axis["IRA"] == 1.0 and style_axis["CRA"] == pytest.approx(0.9)
    assert erased["n_samples"] == 10 * 4 * 3 and erased["FD"] >= 0


@pytest.mark.parametrize("scale", ["ci", "full"])
def test_scale_models_build_and_run(scale):
    cfg = mc.config_for(scale)
    text_encoder, unet = mc.build_models(mc.text_encoder_config(cfg), mc.unet_config(cfg))
    ids = mc.build_tokenizer()(["a digit three in plain style"], padding="max_length", max_length=8,
                               return_tensors="pt").input_ids
    with torch.no_grad():
        out = unet(torch.randn(1, 1, 8, 8), torch.tensor([500]), encoder_hidden_states=text_encoder(ids)[0]).sample
    assert out.shape == (1, 1, 8, 8)
    attn2 = [n for n, _ in unet.named_modules() if n.endswith("attn2")]
    assert len(attn2) == 4  # cross-attention only at 4x4: down, mid, 2 x up
