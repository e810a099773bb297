"""AdvUnlearn: only the text encoder's layers are trained (UNet and embeddings untouched), the inner attack lowers its
loss on the soft prefix token, and the outer loss is ESD's target regression plus gamma times the retain term."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from methods.attacks.t2i.hard_prompts import encode_token_embeddings
from methods.t2i import advunlearn
from methods.t2i.diffusion import encode_prompts, state_fingerprint, tokenize


def _tiny(**changes) -> advunlearn.AdvUnlearnConfig:
    base = dict(iterations=4, warmup_iter=2, attack_step=3, ddim_steps=4, retain_batch=3, learning_rate=1e-2,
                start_guidance=2.0, ddim_eta=1.0)
    return advunlearn.AdvUnlearnConfig(**{**base, **changes})


def _changed(before: dict, module) -> set:
    return {name for name, p in module.named_parameters() if not torch.equal(p, before[name])}


def test_only_the_text_encoder_layers_change(components, request_three):
    unet_before = state_fingerprint(components.unet)
    encoder_before = state_fingerprint(components.text_encoder)
    result = advunlearn.erase(components, request_three, _tiny(), seed=0)
    assert result.components.unet is components.unet and not _changed(unet_before, components.unet)
    changed = _changed(encoder_before, result.components.text_encoder)
    assert changed, "AdvUnlearn changed nothing"
    # text_encoder_full: encoder layers and the final layer norm, never the token / position embeddings
    assert all(name.startswith(("encoder.", "final_layer_norm.")) for name in changed)
    assert any(name.startswith("encoder.layers.0.") for name in changed)
    assert not _changed(encoder_before, components.text_encoder), "the input text encoder was modified in place"
    assert result.info["attack_rounds"] == 2  # one attack per iteration after the 2 warm-up iterations


def test_attack_rounds_follow_warmup_and_update_step(components, request_three):
    result = advunlearn.erase(components, request_three, _tiny(iterations=7, warmup_iter=3, adv_prompt_update_step=2),
                              seed=0)
    assert result.info["attack_rounds"] == 2  # iterations 4 and 6


def test_prefix_is_inserted_after_the_start_token(components):
    """A vocabulary row as the prefix encodes like the prompt with that word in front (the end token is kept)."""
    tokenizer, encoder = components.tokenizer, components.text_encoder
    ids = tokenize(tokenizer, ["a digit three in plain style"])
    word = tokenizer.convert_tokens_to_ids("eight")
    prefix = encoder.get_input_embeddings().weight[word].view(1, 1, -1)
    new_ids, rows = advunlearn.with_prefix(ids, encoder.get_input_embeddings()(ids), prefix, tokenizer.eos_token_id)
    assert new_ids.shape == ids.shape and rows.shape[1] == ids.shape[1]
    expected = encoder(tokenize(tokenizer, ["eight a digit three in plain style"]))[0]
    assert torch.allclose(encode_token_embeddings(encoder, new_ids, rows), expected, atol=1e-6)


def _attack_loss(encoder, unet, ids, prefix, x_t, t, target):
    """l_atk by hand: the prefix row after the start token, the rest shifted right, the last row dropped."""
    rows = encoder.get_input_embeddings()(ids)
    embeds = torch.cat([rows[:, :1], prefix, rows[:, 1:-1]], dim=1)
    cond = encode_token_embeddings(encoder, ids, embeds)
    with torch.no_grad():
        return F.mse_loss(unet(x_t, t, encoder_hidden_states=cond.expand(len(x_t), -1, -1)).sample, target).item()


def test_inner_attack_lowers_its_loss_on_the_prefix(components):
    torch.manual_seed(0)
    encoder, unet = components.text_encoder, components.unet
    ids = tokenize(components.tokenizer, ["a digit three in plain style"])
    concept = encode_prompts(components, ["a digit three in plain style"])
    steps = 25
    x_t = torch.randn(1, 1, 8, 8).expand(steps, -1, -1, -1)  # one fixed (x_t, t): every step sees the same loss
    t = torch.full((steps,), 400)
    # the attack's target: what a *different* model (here: another condition) predicts, so the loss starts high
    with torch.no_grad():
        target = unet(x_t, t, encoder_hidden_states=(concept * 3.0).expand(steps, -1, -1)).sample
    prefix = encoder.get_input_embeddings().weight[5].view(1, 1, -1).clone()
    config = _tiny(attack_step=steps, attack_lr=5e-2)
    before = _attack_loss(encoder, unet, ids, prefix, x_t[:1], t[:1], target[:1])
    found, losses = advunlearn.soft_prompt_attack(encoder, unet, ids, prefix, x_t, t, target, config,
                                                  components.tokenizer.eos_token_id)
    after = _attack_loss(encoder, unet, ids, found, x_t[:1], t[:1], target[:1])
    assert losses[0] == pytest.approx(before, rel=1e-5)
    assert after < 0.9 * before, (before, after)
    assert not torch.equal(found, prefix)
    assert all(p.grad is None for p in encoder.parameters()), "the attack must not touch the encoder"


def test_outer_loss_is_esd_regression_plus_weighted_retain(components, request_three):
    torch.manual_seed(1)
    unet = components.unet
    x_t, retain_x_t = torch.randn(1, 1, 8, 8), torch.randn(3, 1, 8, 8)
    t = torch.tensor([300])
    concept = encode_prompts(components, request_three.forget_prompts[:1])
    neutral = encode_prompts(components, request_three.neutral_prompts[:1])
    retain = encode_prompts(components, request_three.preserve_prompts[:3])
    cond, retain_cond = torch.randn_like(concept), torch.randn_like(retain)  # what a trained encoder would give
    eta, gamma = 1.0, 0.3
    target = advunlearn.unlearn_target(unet, x_t, t, neutral, concept, eta)
    with torch.no_grad():
        eps_n = unet(x_t, t, encoder_hidden_states=neutral).sample
        eps_c = unet(x_t, t, encoder_hidden_states=concept).sample
        retain_target = unet(retain_x_t, t.expand(3), encoder_hidden_states=retain).sample
        by_hand = (
            (unet(x_t, t, encoder_hidden_states=cond).sample - (eps_n - eta * (eps_c - eps_n))).pow(2).mean()
            + gamma * (unet(retain_x_t, t.expand(3), encoder_hidden_states=retain_cond).sample
                       - retain_target).pow(2).mean()
        )
        loss = advunlearn.outer_loss(unet, x_t, t, cond, target, retain_x_t, retain_cond, retain_target, gamma)
    assert torch.allclose(loss, by_hand, rtol=1e-5)
    # gamma = 0 leaves only ESD's term
    with torch.no_grad():
        only_esd = advunlearn.outer_loss(unet, x_t, t, cond, target, retain_x_t, retain_cond, retain_target, 0.0)
    assert torch.allclose(only_esd, (unet(x_t, t, encoder_hidden_states=cond).sample - target).pow(2).mean())


def test_retain_pool_draws_without_replacement_then_refills():
    pool = advunlearn.RetainPool(7, torch.Generator().manual_seed(0))
    first, second = pool.draw(3), pool.draw(3)
    assert len(set(first.tolist()) | set(second.tolist())) == 6
    third = pool.draw(3)  # one left < 3: refilled
    assert len(set(third.tolist())) == 3


def test_bad_config_values_are_rejected():
    from methods.core.config import ConfigError

    with pytest.raises(ConfigError, match="attack_init"):
        dataclasses.replace(_tiny(), attack_init="zeros")
    with pytest.raises(ConfigError, match="retain_batch"):
        dataclasses.replace(_tiny(), retain_batch=0)
