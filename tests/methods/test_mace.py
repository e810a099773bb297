"""MACE: the closed-form refinement and the LoRA fusion solve their objectives (gradients vanish), the attention
loss is the norm of the attention inside the mask on the concept's tokens, masks come from the pixels, and one run
erases several concepts."""

import dataclasses

import pytest
import torch

from methods.core.config import ConfigError
from methods.registry import load_registry
from methods.t2i import mace
from methods.t2i.diffusion import cross_attention_modules, encode_prompts
from methods.testbeds import minicanvas


def _tokens(tokenizer, prompt, indices):
    ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length).input_ids
    return [tokenizer.convert_ids_to_tokens(ids[i]) for i in indices]


def test_refinement_aligns_every_coexisting_token_but_the_concept():
    tokenizer = minicanvas.build_tokenizer()
    old, new = mace.coexisting_indices(tokenizer, "a digit three in plain style", "a digit eight in plain style")
    assert 3 not in old and len(old) == len(new) == tokenizer.model_max_length - 1
    assert _tokens(tokenizer, "a digit three in plain style", old)[:7] == \
        ["<bos>", "a", "digit", "in", "plain", "style", "<eos>"]
    # unequal lengths (Stable Diffusion's "Van Gogh" -> "art" kind): aligned from the end of the concept on
    old, new = mace.coexisting_indices(tokenizer, "a digit three", "a digit")
    assert _tokens(tokenizer, "a digit three", old)[:4] == ["<bos>", "a", "digit", "<eos>"]
    assert _tokens(tokenizer, "a digit", new)[:4] == ["<bos>", "a", "digit", "<eos>"]
    assert len(old) == len(new)


def _objective(w, w_start, pairs, preserve, w_orig, lamb, s_p):
    """Independent of mace.py: sum over fitted pairs ||W x - y||^2 + lamb ||W - W_start||^2
    + s_p sum_j ||W c_j - W_orig c_j||^2."""
    loss = lamb * (w - w_start).pow(2).sum() + s_p * (preserve @ w.T - preserve @ w_orig.T).pow(2).sum()
    for x, y in pairs:
        loss = loss + (x @ w.T - y).pow(2).sum()
    return loss


def _gradient_norm(w_solved, *args):
    w = w_solved.double().clone().requires_grad_(True)
    _objective(w, *args).backward()
    return float(w.grad.norm())


def test_fidelity_closed_form_refinement_minimises_its_objective(components, request_three):
    """CFR: co-existing tokens of the forget prompts -> the surrogate's aligned outputs under W_old, ridge lamb,
    preservation of the preserve prompts' tokens; the gradient of that objective vanishes at the solution."""
    concepts = mace.concept_requests(request_three, ())
    inputs, guides = mace.refinement_pairs(components, concepts)
    preserve = encode_prompts(components, request_three.preserve_prompts).flatten(0, 1)
    _, attention = cross_attention_modules(components.unet)[0]
    projection = torch.nn.Linear(attention.to_k.in_features, attention.to_k.out_features, bias=False).double()
    w_old = attention.to_k.weight.detach().double()
    projection.weight.data.copy_(w_old)
    lamb, s_p = 0.7, 0.3
    x, g, p = inputs.double(), guides.double(), preserve.double()
    mace.solve_projections([projection], [w_old], x, [g @ w_old.T], p, [w_old], lamb, s_p)
    solved = projection.weight.detach()
    assert not torch.allclose(solved, w_old)
    args = (w_old, [(x, g @ w_old.T)], p, w_old, lamb, s_p)
    scale = _gradient_norm(w_old, *args)
    assert _gradient_norm(solved, *args) < 1e-7 * scale
    assert _gradient_norm(solved + 1e-3, *args) > 1e-4 * scale  # the check can fail


def test_fidelity_lora_fusion_is_the_closed_form_of_all_loras():
    """Fusion: every concept's tokens -> (W_cfr + B_k A_k) c, ridge to W_cfr, preservation of W_orig's outputs."""
    g = torch.Generator().manual_seed(0)
    d_in, d_out = 6, 5
    w_orig = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    w_cfr = w_orig + 0.1 * torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    deltas = [torch.randn(d_out, 1, generator=g, dtype=torch.float64) @ torch.randn(1, d_in, generator=g, dtype=torch.float64)
              for _ in range(3)]
    tokens = [torch.randn(4, d_in, generator=g, dtype=torch.float64) for _ in range(3)]
    preserve = torch.randn(5, d_in, generator=g, dtype=torch.float64)
    projection = torch.nn.Linear(d_in, d_out, bias=False).double()
    lamb, s_p = 0.5, 2.0
    inputs = torch.cat(tokens)
    targets = torch.cat([c @ (w_cfr + d).T for c, d in zip(tokens, deltas)])
    mace.solve_projections([projection], [w_cfr], inputs, [targets], preserve, [w_orig], lamb, s_p)
    solved = projection.weight.detach()
    args = (w_cfr, [(c, c @ (w_cfr + d).T) for c, d in zip(tokens, deltas)], preserve, w_orig, lamb, s_p)
    assert _gradient_norm(solved, *args) < 1e-8 * _gradient_norm(w_cfr, *args)
    # explicit formula of the paper / fuse_lora_close_form.py
    mat1 = lamb * w_cfr + sum((w_cfr + d) @ c.T @ c for c, d in zip(tokens, deltas)) + s_p * w_orig @ preserve.T @ preserve
    mat2 = lamb * torch.eye(d_in, dtype=torch.float64) + inputs.T @ inputs + s_p * preserve.T @ preserve
    assert torch.allclose(solved, mat1 @ torch.linalg.inv(mat2), atol=1e-10)
    # one concept, no ridge, no preservation, enough tokens: the fused weight is that concept's LoRA-merged weight
    many = torch.randn(10, d_in, generator=g, dtype=torch.float64)
    mace.solve_projections([projection], [w_cfr], many, [many @ (w_cfr + deltas[0]).T], None, [w_orig], 0.0, 0.0)
    assert torch.allclose(projection.weight, w_cfr + deltas[0], atol=1e-8)


def test_masked_attention_loss_is_the_norm_inside_the_mask_on_the_concept_tokens():
    g = torch.Generator().manual_seed(1)
    batch, heads, pixels, tokens = 2, 3, 16, 5
    probs = torch.softmax(torch.randn(batch * heads, pixels, tokens, generator=g), dim=-1)
    mask = torch.rand(batch, pixels, generator=g) > 0.5
    positions = torch.zeros(batch, tokens, dtype=torch.bool)
    positions[0, 2], positions[1, 2], positions[1, 4] = True, True, True
    # official AttnController (batch 1): attn_prob[:, resized_mask, :][:, :, concept_positions[0]], then the norm
    expected = torch.cat([probs[b * heads:(b + 1) * heads][:, mask[b], :][:, :, positions[b]].flatten()
                          for b in range(batch)]).norm()
    assert torch.allclose(mace.masked_attention_loss(probs, mask, positions), expected)
    no_mask = torch.cat([probs[b * heads:(b + 1) * heads][:, :, positions[b]].flatten() for b in range(batch)]).norm()
    assert torch.allclose(mace.masked_attention_loss(probs, None, positions), no_mask)
    assert not torch.allclose(expected, no_mask)


def test_pixel_masks_find_the_digit_on_dark_and_light_backgrounds():
    image = -torch.ones(1, 1, 8, 8)
    image[0, 0, 2:6, 3:5] = 1.0
    mask = mace.pixel_masks(image, 0.5)
    assert mask.shape == (1, 8, 8) and int(mask.sum()) == 8 and bool(mask[0, 2:6, 3:5].all())
    assert torch.equal(mace.pixel_masks(-image, 0.5), mask)  # inverted style: light background


def test_importance_sampling_peaks_between_200_and_400():
    w = mace.importance_weights(1000)
    assert torch.isclose(w.sum(), torch.tensor(1.0, dtype=w.dtype))
    assert 250 <= int(w.argmax()) <= 350 and float(w[:100].sum() + w[500:].sum()) < 0.05


def test_one_run_erases_several_concepts_and_edits_only_cross_attention_kv(components, request_three):
    config = dataclasses.replace(load_registry().card("mace").build_config("minicanvas"), train_steps=2,
                                 num_images=4, extra_concepts=("five",))
    edited = mace.erase(components, request_three, config, seed=0)
    assert edited.info["concepts"] == ["three", "five"]
    base = dict(components.unet.named_parameters())
    changed = [n for n, p in edited.components.unet.named_parameters() if not torch.equal(p, base[n])]
    assert changed and all("attn2.to_k" in n or "attn2.to_v" in n for n in changed)
    assert not any(isinstance(m.processor, mace.LoRAAttention)
                   for _, m in cross_attention_modules(edited.components.unet))
    again = mace.erase(components, request_three, config, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(edited.components.unet.parameters(),
                                                 again.components.unet.parameters()))
    # the extra concept's prompts and the pruned preserve set
    concepts = mace.concept_requests(request_three, ("five",))
    assert concepts[1][1][-1] == "a digit five" and concepts[1][2] == request_three.anchor_prompts
    assert not any("five" in p.split() for p in mace.preserved_prompts(request_three, ("five",)))
    with pytest.raises(ConfigError, match="extra_concepts"):
        mace.concept_requests(request_three, ("eight",))  # the surrogate cannot be erased
    with pytest.raises(ConfigError, match="rank"):
        mace.MACEConfig(rank=0)
