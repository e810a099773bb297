"""ESD: ESD-x trains only cross-attention (attn2), ESD-u only the rest; the input model is left untouched."""

import dataclasses

import pytest
import torch

from methods.registry import load_registry

from methods.t2i import esd
from methods.t2i.diffusion import state_fingerprint


def _tiny(variant: str) -> esd.ESDConfig:
    config = load_registry().card("esd").build_config("minicanvas")
    return dataclasses.replace(config, variant=variant, iterations=3, batch_size=2, ddim_steps=4, learning_rate=1e-2)


def _changed(before: dict, unet) -> set:
    return {name for name, p in unet.named_parameters() if not torch.equal(p, before[name])}


@pytest.mark.parametrize("sample_with", ["trained", "frozen"])
def test_esd_x_updates_only_cross_attention(components, request_three, sample_with):
    before = state_fingerprint(components.unet)
    result = esd.erase(components, request_three, dataclasses.replace(_tiny("x"), sample_with=sample_with), seed=0)
    changed = _changed(before, result.components.unet)
    assert changed, "ESD-x changed nothing"
    assert all("attn2" in name for name in changed)
    assert set(esd.trainable_parameter_names(components.unet, "x")) == {n for n in before if "attn2" in n}
    assert not _changed(before, components.unet), "the input UNet was modified in place"


def test_esd_u_updates_only_non_cross_attention(components, request_three):
    before = state_fingerprint(components.unet)
    result = esd.erase(components, request_three, _tiny("u"), seed=0)
    changed = _changed(before, result.components.unet)
    assert changed, "ESD-u changed nothing"
    assert not any("attn2" in name for name in changed)
    # paper-era `noxattn` also leaves the time embedding and the output layer alone
    assert not any(name.startswith(("time_embedding", "conv_out", "conv_norm_out")) for name in changed)
    assert any(name.startswith("down_blocks") for name in changed)


def test_esd_moves_concept_prediction_towards_negatively_guided_target(components, request_three):
    """After training, the concept prediction is closer to the ESD target than before (on fixed inputs)."""
    from methods.t2i.diffusion import encode_prompts

    config = dataclasses.replace(_tiny("x"), iterations=30, learning_rate=3e-3)
    result = esd.erase(components, request_three, config, seed=0)
    generator = torch.Generator().manual_seed(1)
    x_t = torch.randn(5, 1, 8, 8, generator=generator)
    t = torch.full((5,), 500)
    concept = encode_prompts(components, request_three.forget_prompts)
    neutral = encode_prompts(components, request_three.neutral_prompts)
    with torch.no_grad():
        eps_c = components.unet(x_t, t, encoder_hidden_states=concept).sample
        eps_n = components.unet(x_t, t, encoder_hidden_states=neutral).sample
        target = eps_n - config.negative_guidance * (eps_c - eps_n)
        edited = result.components.unet(x_t, t, encoder_hidden_states=concept).sample
    assert (edited - target).pow(2).mean() < 0.5 * (eps_c - target).pow(2).mean()


def test_esd_x_strict_updates_only_key_value(components, request_three):
    before = state_fingerprint(components.unet)
    result = esd.erase(components, request_three, _tiny("x-strict"), seed=0)
    changed = _changed(before, result.components.unet)
    assert changed and all("attn2.to_k" in name or "attn2.to_v" in name for name in changed)


def test_partial_sampling_stops_each_sample_at_its_step(components):
    """x_t for ESD: a sample stopped after 0 steps is the start noise; stopping is per sample."""
    from methods.core.seeding import make_generator
    from methods.t2i.diffusion import initial_noise, sample_cfg

    prompts = ["a digit three in plain style"] * 3
    stopped = sample_cfg(components, prompts, make_generator(0), stop_after_steps=torch.tensor([0, 2, 4]))
    noise = initial_noise(components, 3, make_generator(0))
    assert torch.equal(stopped[0], noise[0])
    assert not torch.equal(stopped[1], noise[1]) and not torch.equal(stopped[2], stopped[1])


def test_unknown_variant_is_rejected(components, request_three):
    with pytest.raises(ValueError, match="variant"):
        esd.erase(components, request_three, _tiny("z"), seed=0)


@pytest.mark.parametrize("pairing", ["paper-era", "equal"])
def test_fidelity_timestep_pairing_is_the_official_one(pairing, components):
    """paper-era (erasing@a2189e9 train-esd.py): t_enc ~ U{0..S-1}, the ldm sampler stops after its step of index
    t_enc - 1 (min(S, S - t_enc + 1) steps) and t ~ U[round(N t_enc / S), round(N (t_enc + 1) / S)); new code
    (erasing@25613d2 esd_sd.py `run_till_timestep`): k steps and t = timesteps[k]."""
    from methods.t2i.diffusion import timesteps_for

    config = esd.ESDConfig(ddim_steps=50, timestep_pairing=pairing)
    timesteps = timesteps_for(components, 50)
    stops, t = esd.pair_timesteps(config.timestep_pairing, config.ddim_steps, timesteps, 1000, (400,), torch.Generator().manual_seed(0))
    if pairing == "equal":
        assert torch.equal(t, timesteps[stops]) and stops.min() >= 0 and stops.max() <= 49
        return
    t_enc = (t // 20).long()  # the bin t was drawn in: [20 t_enc, 20 t_enc + 20)
    assert torch.equal(stops, torch.clamp(50 - t_enc + 1, max=50))
    assert t.min() >= 0 and t.max() < 1000 and len(set(t_enc.tolist())) > 40


def test_fidelity_loss_regresses_onto_the_negatively_guided_frozen_prediction(components, request_three, monkeypatch):
    """The loss the card minimises is MSE(eps_theta(x_t, c, t), eps*(x_t, n, t) - eta [eps*(x_t, c, t) -
    eps*(x_t, n, t)]) with the frozen original model eps*, recomputed here from the inputs the student saw."""
    calls = []

    class Recorder(torch.nn.Module):
        def __init__(self, unet, role):
            super().__init__()
            self.unet, self.role = unet, role

        def forward(self, x, t, encoder_hidden_states):
            if self.role == "student" and torch.is_grad_enabled():
                calls.append((x.detach().clone(), t.clone(), encoder_hidden_states.detach().clone()))
            return self.unet(x, t, encoder_hidden_states=encoder_hidden_states)

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.unet, name)

    copies = iter(["teacher", "student"])
    original_copy = esd.frozen_copy
    monkeypatch.setattr(esd, "frozen_copy", lambda module: Recorder(original_copy(module), next(copies)))
    config = dataclasses.replace(_tiny("x"), iterations=1, batch_size=3, negative_guidance=1.5, learning_rate=1e-12)
    result = esd.erase(components, request_three, config, seed=4)
    (x_t, t, concept), = calls
    from methods.t2i.diffusion import encode_prompts

    forget_emb = encode_prompts(components, request_three.forget_prompts)
    neutral_emb = encode_prompts(components, request_three.neutral_prompts)
    pairs = [next(i for i in range(len(forget_emb)) if torch.equal(forget_emb[i], row)) for row in concept]
    neutral = neutral_emb[pairs]  # each concept prompt's own neutral prompt
    with torch.no_grad():
        eps_c = components.unet(x_t, t, encoder_hidden_states=concept).sample
        eps_n = components.unet(x_t, t, encoder_hidden_states=neutral).sample
    target = eps_n - 1.5 * (eps_c - eps_n)
    assert result.info["final_loss"] == pytest.approx(torch.nn.functional.mse_loss(eps_c, target).item(), rel=1e-5)
