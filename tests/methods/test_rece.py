"""RECE: the closed-form embedding search and the erasure of the found embedding (checked from the official rules)."""

import dataclasses

import pytest
import torch

from methods.core.config import ConfigError
from methods.registry import load_registry

from minicanvas_dummies import get_dummy_components
from methods.t2i import rece, uce
from methods.t2i.diffusion import EraseRequest, cross_attention_modules, encode_prompts, state_fingerprint
from methods.testbeds import minicanvas


def _double_components(hidden_size):
    torch.set_default_dtype(torch.float64)
    try:
        components = get_dummy_components(hidden_size=hidden_size)
        components.unet.double()
        components.text_encoder.double()
    finally:
        torch.set_default_dtype(torch.float32)
    return components


def _kv_weights(unet):
    """Every cross-attention to_k and to_v weight (the official embedding search sums over both)."""
    return [getattr(attention, name).weight.detach() for _, attention in cross_attention_modules(unet)
            for name in ("to_k", "to_v")]


def _search_objective(c_adv, concept, edited_unet, original_unet, regular_scale):
    """The official `close_form_emb_regzero` objective: sum_l ||W_l c' - W0_l c||^2 + lambda ||c'||^2."""
    total = regular_scale * (c_adv ** 2).sum()
    for w, w0 in zip(_kv_weights(edited_unet), _kv_weights(original_unet)):
        total = total + ((c_adv @ w.T - concept @ w0.T) ** 2).sum()
    return total


def test_fidelity_found_embedding_minimises_the_official_search_objective():
    """c' = (lambda I + sum W^T W)^-1 (sum W^T W0) c is the minimiser: the objective's gradient vanishes at c', and
    c' regenerates the concept's original K/V under the UCE-edited model better than c itself does."""
    components = _double_components(hidden_size=16)
    request = EraseRequest(["a digit three"], [""], ["a digit eight"], ["a digit five"], "a digit three")
    edited_unet = uce.erase(components, request, uce.UCEConfig()).components.unet
    concept = encode_prompts(components, ["a digit three in plain style"])[0].detach()
    for regular_scale in (1e-3, 1e-1):
        c_adv = rece.adversarial_embedding(edited_unet, components.unet, concept, regular_scale)
        c_var = c_adv.clone().requires_grad_(True)
        objective = _search_objective(c_var, concept, edited_unet, components.unet, regular_scale)
        objective.backward()
        assert c_var.grad.abs().max() < 1e-8 * max(1.0, float(objective.detach())), float(c_var.grad.abs().max())
        # a perturbation only raises it (strictly convex), and c itself is a worse regenerator than c'
        bumped = _search_objective(c_adv + 1e-3 * torch.randn_like(c_adv), concept, edited_unet, components.unet, regular_scale)
        at_concept = _search_objective(concept, concept, edited_unet, components.unet, regular_scale)
        assert float(objective.detach()) < float(bumped) and float(objective.detach()) < float(at_concept)


def test_fidelity_each_epoch_is_the_official_edit_of_the_found_embedding():
    """One epoch = `edit_model_adversarial` (technique 'replace') from the UCE weights W_u: the RECE weights minimise
    s_e ||W c'_i - W_u g_i||^2 + s_p ||W c_j - W_u c_j||^2 + lambda_1 ||W - W_u||^2 (c' found from W_u, preserved
    tokens: every token of '' and of every preserve prompt), computed here independently of rece.py."""
    components = _double_components(hidden_size=16)
    request = EraseRequest(["a digit three"], [""], ["a digit eight"], ["a digit five in plain style"], "a digit three")
    config = rece.RECEConfig(epochs=1)
    uce_unet = uce.erase(components, request, uce.UCEConfig(lamb=config.uce_lamb)).components.unet
    rece_unet = rece.erase(components, request, config).components.unet

    # the official embedding search, written out with explicit inverses (close_form_emb_regzero)
    d = 16
    mat1 = config.regular_scale * torch.eye(d, dtype=torch.float64)
    mat2 = torch.zeros(d, d, dtype=torch.float64)
    for w, w0 in zip(_kv_weights(uce_unet), _kv_weights(components.unet)):
        mat1 = mat1 + w.T @ w
        mat2 = mat2 + w.T @ w0
    concept = encode_prompts(components, ["a digit three"])[0].detach()
    anchor = encode_prompts(components, ["a digit eight"])[0].detach()
    c_adv = concept @ (torch.inverse(mat1) @ mat2).T
    c_e, g_e = c_adv[3:], anchor[3:]  # from the concept token (index 3) to the padded end, as the UCE card
    c_p = encode_prompts(components, ["", "a digit five in plain style"]).detach().reshape(-1, d)
    for (_, old), (_, new) in zip(cross_attention_modules(uce_unet), cross_attention_modules(rece_unet)):
        for projection in ("to_k", "to_v"):
            w_u = getattr(old, projection).weight.detach()
            w = getattr(new, projection).weight.detach().clone().requires_grad_(True)
            objective = (config.erase_scale * ((c_e @ w.T - g_e @ w_u.T) ** 2).sum()
                         + config.preserve_scale * ((c_p @ w.T - c_p @ w_u.T) ** 2).sum()
                         + config.lamb * ((w - w_u) ** 2).sum())
            objective.backward()
            assert w.grad.abs().max() < 1e-8 * max(1.0, float(objective.detach())), (projection, float(w.grad.abs().max()))


def test_edited_kv_map_the_found_embedding_to_the_anchor():
    """A well-posed problem (fewer erase + preserve rows than the 64 dimensions, small lambda_1): after the epoch the
    found embedding's K/V are the anchor's, the preserved prompts' K/V stay, and c' no longer regenerates the concept."""
    components = get_dummy_components(hidden_size=64)
    full = minicanvas.build_erase_request("three")
    request = dataclasses.replace(full, forget_prompts=full.forget_prompts[:2], neutral_prompts=full.neutral_prompts[:2],
                                  anchor_prompts=full.anchor_prompts[:2],
                                  preserve_prompts=["a digit five in plain style", "a digit one in thick style"])
    config = rece.RECEConfig(epochs=1, lamb=1e-3, preserve_scale=1.0, uce_lamb=1e-3, uce_preserve_scale=1.0)
    uce_unet = uce.erase(components, request, uce.UCEConfig(lamb=1e-3, preserve_scale=1.0)).components.unet
    result = rece.erase(components, request, config)
    rece_unet = result.components.unet

    concept = encode_prompts(components, request.forget_prompts)
    c_adv = rece.adversarial_embedding(uce_unet, components.unet, concept, config.regular_scale)[:, 3:]
    anchor = encode_prompts(components, request.anchor_prompts)[:, 3:]
    preserve = encode_prompts(components, request.preserve_prompts + [""])
    with torch.no_grad():
        for (name, base), (_, old), (_, new) in zip(cross_attention_modules(components.unet),
                                                    cross_attention_modules(uce_unet), cross_attention_modules(rece_unet)):
            for projection in ("to_k", "to_v"):
                w0, w_u, w = (getattr(m, projection).weight for m in (base, old, new))
                gap_before = (c_adv @ w_u.T - anchor @ w_u.T).norm()
                gap_after = (c_adv @ w.T - anchor @ w_u.T).norm()
                drift = (preserve @ w.T - preserve @ w_u.T).norm() / (preserve @ w_u.T).norm()
                assert gap_after / gap_before < 0.02, (name, projection, float(gap_after / gap_before))
                assert drift < 0.02, (name, projection, float(drift))
    # c' reproduced the concept's original K/V under UCE; after RECE it does not
    gap = result.info["adversarial_kv_gap"][0]
    assert gap < 0.5
    assert rece._kv_gap(rece_unet, components.unet, rece.adversarial_embedding(
        uce_unet, components.unet, concept, config.regular_scale), concept) > 2 * gap


def test_only_cross_attention_key_value_weights_change(components, request_three):
    before = state_fingerprint(components.unet)
    config = load_registry().card("rece").build_config("minicanvas")
    result = rece.erase(components, request_three, config)
    changed = {n for n, p in result.components.unet.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {n for n in before if "attn2.to_k.weight" in n or "attn2.to_v.weight" in n}
    assert all(torch.equal(p, before[n]) for n, p in components.unet.named_parameters())
    # RECE is more than UCE: its weights differ from the UCE card's with the same UCE settings
    uce_unet = uce.erase(components, request_three, uce.UCEConfig(lamb=config.uce_lamb)).components.unet
    key = "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    assert not torch.allclose(uce_unet.state_dict()[key], result.components.unet.state_dict()[key])
    assert len(result.info["adversarial_kv_gap"]) == config.epochs


def test_more_epochs_keep_erasing(components, request_three):
    """Each epoch finds a new embedding from the current weights and erases it: two epochs differ from one."""
    one = rece.erase(components, request_three, rece.RECEConfig(epochs=1)).components.unet.state_dict()
    two = rece.erase(components, request_three, rece.RECEConfig(epochs=2)).components.unet.state_dict()
    key = "mid_block.attentions.0.transformer_blocks.0.attn2.to_v.weight"
    assert not torch.allclose(one[key], two[key])


@pytest.mark.parametrize("field,value", [("epochs", 0), ("regular_scale", -1.0), ("lamb", float("nan")),
                                         ("preserve_scale", -0.1)])
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        rece.RECEConfig(**{field: value})
