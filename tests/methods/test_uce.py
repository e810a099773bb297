"""UCE: the closed-form edit maps erased tokens' K/V to the anchor's and keeps preserved tokens' K/V."""

import dataclasses

import torch

from methods.registry import load_registry

from minicanvas_dummies import get_dummy_components
from methods.t2i import uce
from methods.t2i.diffusion import EraseRequest, cross_attention_modules, encode_prompts, state_fingerprint
from methods.testbeds import minicanvas


def test_closed_form_solves_the_normal_equations():
    generator = torch.Generator().manual_seed(0)
    w_old = torch.randn(12, 16, generator=generator)
    c_e, c_p = torch.randn(5, 16, generator=generator), torch.randn(30, 16, generator=generator)
    v_e = torch.randn(5, 12, generator=generator)
    lamb, s_e, s_p = 0.5, 1.0, 0.3
    w = uce.closed_form_edit(w_old, c_e, v_e, c_p, lamb, s_e, s_p)
    # gradient of the UCE objective at the solution must vanish
    w.requires_grad_(True)
    objective = (
        s_e * ((c_e @ w.T - v_e) ** 2).sum()
        + s_p * ((c_p @ w.T - c_p @ w_old.T) ** 2).sum()
        + lamb * ((w - w_old) ** 2).sum()
    )
    objective.backward()
    assert w.grad.abs().max() < 1e-4


def test_fidelity_edit_minimises_the_official_objective_with_every_preserved_token():
    """The official edit (unified-concept-editing@35e91e2 `edit_model`): the edited K/V weights minimise
    s_e sum ||W c_i - W_old g_i||^2 + s_p sum ||W c_j - W_old c_j||^2 + lambda ||W - W_old||^2, where the erase rows
    run from the concept's token (`attention_mask.sum() - 2`) to the trimmed end, and the preserve rows are every
    token of '' and of every preserve prompt, with multiplicity (a prompt given twice counts twice). Computed here
    from the official rules, independently of uce.py: the objective's gradient vanishes at the edited weights."""
    torch.set_default_dtype(torch.float64)
    try:
        components = get_dummy_components(hidden_size=16)
        components.unet.double()
        components.text_encoder.double()
    finally:
        torch.set_default_dtype(torch.float32)
    preserve = ["a digit five in plain style", "a digit five in plain style", "a digit one"]
    request = EraseRequest(["a digit three"], [""], ["a digit eight"], preserve, "a digit three")
    config = uce.UCEConfig(lamb=0.5, erase_scale=1.0, preserve_scale=None)
    edited = uce.erase(components, request, config).components

    tokenizer = components.tokenizer
    length = tokenizer.model_max_length  # every prompt is padded to it, as Stable Diffusion's 77
    ids = tokenizer(["a digit three", "a digit eight"], padding="max_length", max_length=length, return_tensors="pt")
    embeddings = components.text_encoder(ids.input_ids)[0].detach()
    last = [int(mask.sum()) - 2 for mask in ids.attention_mask]  # the official final_token_idx
    farthest = max(last)
    c_e = embeddings[0, last[0]: length - max(0, farthest - last[0])]
    g_e = embeddings[1, last[1]: length - max(0, farthest - last[1])]
    retain = [""] + preserve
    retain_ids = tokenizer(retain, padding="max_length", max_length=length, return_tensors="pt").input_ids
    c_p = components.text_encoder(retain_ids)[0].detach().reshape(-1, 16)  # every token, duplicates kept
    s_p = max(0.1, 1 / len(retain))
    for (_, old), (_, new) in zip(cross_attention_modules(components.unet), cross_attention_modules(edited.unet)):
        for projection in ("to_k", "to_v"):
            w_old = getattr(old, projection).weight.detach()
            w = getattr(new, projection).weight.detach().clone().requires_grad_(True)
            objective = (((c_e @ w.T - g_e @ w_old.T) ** 2).sum() + s_p * ((c_p @ w.T - c_p @ w_old.T) ** 2).sum()
                         + 0.5 * ((w - w_old) ** 2).sum())
            objective.backward()
            assert w.grad.abs().max() < 1e-8 * max(1.0, float(objective.detach())), (projection, float(w.grad.abs().max()))


def test_the_preserve_set_is_not_deduplicated(components):
    """A prompt given twice weighs twice: the edit differs from the one with the prompt given once."""
    one = EraseRequest(["a digit three"], [""], ["a digit eight"], ["a digit five"], "a digit three")
    two = dataclasses.replace(one, preserve_prompts=["a digit five", "a digit five"])
    config = uce.UCEConfig(preserve_scale=0.5)
    first, second = uce.erase(components, one, config), uce.erase(components, two, config)
    length = components.tokenizer.model_max_length
    assert first.info["preserve_vectors"] == 2 * length and second.info["preserve_vectors"] == 3 * length
    assert not torch.equal(first.components.unet.state_dict()["mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"],
                           second.components.unet.state_dict()["mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"])


def test_token_alignment_starts_at_the_last_differing_token():
    tokenizer = minicanvas.build_tokenizer()
    # concept in the middle of the prompt: slice from "three"/"eight" (index 3) to the end
    tail = tokenizer.model_max_length - 3  # from the concept token (index 3) to the padded end
    assert uce.aligned_token_slices(tokenizer, "a digit three in plain style", "a digit eight in plain style") == (3, 3, tail)
    # guide "" (paper default on SD): the forget slice starts at the concept, the guide slice at <bos>
    assert uce.aligned_token_slices(tokenizer, "a digit three", "") == (3, 0, tail)
    # style concept: slice from the style word
    assert uce.aligned_token_slices(tokenizer, "a digit one in thick style", "a digit one in plain style") == (5, 5, tokenizer.model_max_length - 5)


def test_erased_kv_match_anchor_and_preserved_kv_stay():
    components = get_dummy_components(hidden_size=64)
    full = minicanvas.build_erase_request("three")
    # a small problem stays well posed (fewer vectors than the 64 embedding dimensions): two forget prompts: 2 x 9 erase rows + 3 x 12 preserve rows < 64 dimensions, so both can hold exactly
    request = dataclasses.replace(full, forget_prompts=full.forget_prompts[:2], neutral_prompts=full.neutral_prompts[:2],
                                  anchor_prompts=full.anchor_prompts[:2],
                                  preserve_prompts=["a digit five in plain style", "a digit one in thick style"])
    config = uce.UCEConfig(lamb=1e-3, erase_scale=1.0, preserve_scale=1.0)
    edited = uce.erase(components, request, config).components

    forget = encode_prompts(components, request.forget_prompts)[:, 3:]  # concept token onwards (index 3)
    anchor = encode_prompts(components, request.anchor_prompts)[:, 3:]
    preserve = encode_prompts(components, request.preserve_prompts + [""])
    for (name, old), (_, new) in zip(cross_attention_modules(components.unet), cross_attention_modules(edited.unet)):
        for projection in ("to_k", "to_v"):
            w_old, w_new = getattr(old, projection).weight, getattr(new, projection).weight
            gap_before = (forget @ w_old.T - anchor @ w_old.T).norm()
            gap_after = (forget @ w_new.T - anchor @ w_old.T).norm()
            drift = (preserve @ w_new.T - preserve @ w_old.T).norm() / (preserve @ w_old.T).norm()
            assert gap_after / gap_before < 0.02, (name, projection, float(gap_after / gap_before))
            assert drift < 0.02, (name, projection, float(drift))


def test_default_request_moves_erased_kv_most_of_the_way(components, request_three):
    edited = uce.erase(components, request_three, load_registry().card("uce").build_config("minicanvas")).components
    forget = encode_prompts(components, request_three.forget_prompts)[:, 3:]
    anchor = encode_prompts(components, request_three.anchor_prompts)[:, 3:]
    for (_, old), (_, new) in zip(cross_attention_modules(components.unet), cross_attention_modules(edited.unet)):
        w_old, w_new = old.to_k.weight, new.to_k.weight
        gap_before = (forget @ w_old.T - anchor @ w_old.T).norm()
        gap_after = (forget @ w_new.T - anchor @ w_old.T).norm()
        assert gap_after < 0.35 * gap_before


def test_only_cross_attention_key_value_weights_change(components, request_three):
    before = state_fingerprint(components.unet)
    edited = uce.erase(components, request_three, load_registry().card("uce").build_config("minicanvas")).components
    changed = {n for n, p in edited.unet.named_parameters() if not torch.equal(p, before[n])}
    expected = {n for n in before if "attn2.to_k.weight" in n or "attn2.to_v.weight" in n}
    assert changed == expected
    # the input components are not modified in place
    assert all(torch.equal(p, before[n]) for n, p in components.unet.named_parameters())


def test_sd_style_request_with_empty_guide(components):
    """The Stable Diffusion path: free-text concept, guide '' (one prompt each)."""
    request = EraseRequest(["a digit three"], [""], [""], ["a digit five"], "a digit three")
    result = uce.erase(components, request, uce.UCEConfig())
    assert result.info["edited_matrices"] == 2 * len(cross_attention_modules(components.unet))
