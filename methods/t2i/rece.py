"""RECE: Reliable and Efficient Concept Erasure (Gong et al., ECCV 2024). Catalog id: `gong2024reliable`.

Follows CharlesGong12/RECE@403a67f, train_object.py / train_artists.py (the epoch loop),
utils/embedding_calculation/close_form_emb.py (`close_form_emb_regzero`, the README's `close_regzero`) and
erase_methods/uce.py (`edit_model_adversarial`, technique "replace").

UCE (methods/t2i/uce.py) maps the concept's embedding c onto its anchor's in every cross-attention K/V projection,
but other embeddings can still make the edited model produce the concept. RECE finds such an embedding in closed
form and erases it too, for a few epochs. With W_l the edited and W_l^0 the original K/V projections (to_k and to_v
of every `attn2`, all summed), the embedding c' that makes the edited model reproduce what c produced in the
original model, regularised towards 0 (the official `regzero`, which keeps c' small so that erasing it moves
unrelated concepts less):

    c' = argmin_c'  sum_l ||W_l c' - W_l^0 c||^2 + lambda ||c'||^2
       = (lambda I + sum_l W_l^T W_l)^-1 (sum_l W_l^T W_l^0) c          (applied to every token of c)

Algorithm:
  0. UCE: edit the original model with the UCE card (`uce.erase`): the official runs start from a UCE checkpoint
     (`--target_ckpt`).
  1. For each epoch:
     a. for each forget prompt, the adversarial embedding c' of its encoded tokens (closed form above, W_l the
        current weights, W_l^0 the original model's);
     b. one UCE closed-form edit of every K/V projection (`uce.closed_form_edit`, from the current weights W):
        c' must give what the anchor g gives now, preserved embeddings keep their current output:

            min_W'  s_e sum_i ||W' c'_i - W g_i||^2 + s_p sum_j ||W' c_j - W c_j||^2 + lambda_1 ||W' - W||_F^2

        with RECE's lambda_1 = 0.1 and s_p = lambda_2 = 0.1 (the paper's Eq. 3 coefficients).
  2. The edited model samples like the base model (no randomness: `seed` is unused).

An epoch's edit holds only c' (erased) and the preserved prompts (kept); nothing holds the concept's own c on the
anchor, so where c' and c are correlated later epochs loosen the first erasure (on MiniCanvas, "three":
UA 1.0 after 1 epoch, 0.975 after 3, 0.60 after 10).

The token rows of c' that are erased are those of the UCE card (`uce.aligned_token_slices`: from the last token
where the forget and anchor prompts differ to the padded end, aligned with the anchor's slice); the official code
maps all 77 rows of c' onto the guide's 77 rows (see the registry's deviations).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch

from ..core.config import check_config
from . import uce
from .diffusion import DiffusionComponents, EraseRequest, EditedDiffusion, cross_attention_modules, encode_prompts


@dataclass
class RECEConfig:
    """Defaults are the official ones for Stable Diffusion 1.4 (CharlesGong12/RECE@403a67f, train_object.py and the
    README's notes); a testbed's adaptations are declared in methods/registry.yaml."""

    epochs: int = 1  # train_object.py --epochs default; README: 1 for styles and objects (2 unsafe, 3 nudity)
    regular_scale: float = 1e-3  # lambda of the embedding search; train_object.py default, README: styles, hard objects (1e-1 easy objects, nudity)
    lamb: float = 0.1  # lambda_1 of Eq. 3, weight of ||W' - W||^2; train_object.py --lamb default, README
    erase_scale: float = 1.0  # s_e; train_object.py --erase_scale default
    preserve_scale: float = 0.1  # lambda_2 of Eq. 3 (s_p); train_object.py --preserve_scale default, README
    edit_values: bool = True  # edit to_v as well as to_k (edit_model_adversarial's with_to_k=True edits both)
    add_empty_prompt_to_preserve: bool = True  # retain_texts = [''] + preserve_concepts (train_object.py)
    # step 0, the UCE checkpoint RECE starts from (UCE's own defaults; see methods/t2i/uce.py)
    uce_lamb: float = 0.5  # UCE's lambda (rohitgandikota/unified-concept-editing, train_erase.py)
    uce_preserve_scale: Optional[float] = None  # UCE's s_p; None = max(0.1, 1 / #preserve prompts)

    def __post_init__(self):
        check_config(self, epochs="[1,100]", regular_scale="[0,1e4]", lamb="[0,1e4]", erase_scale="[0,1e4]",
                     preserve_scale="[0,1e4]", uce_lamb="[0,1e4]", uce_preserve_scale="[0,1e4]")


def kv_projections(unet) -> list:
    """to_v then to_k of every cross-attention layer (the order of the official `projection_matrices`)."""
    layers = [attention for _, attention in cross_attention_modules(unet)]
    return [layer.to_v for layer in layers] + [layer.to_k for layer in layers]


def adversarial_embedding(edited_unet, original_unet, embedding: torch.Tensor, regular_scale: float) -> torch.Tensor:
    """The closed-form c' = (lambda I + sum W^T W)^-1 (sum W^T W0) c for every row c of `embedding` (..., d).

    W runs over the edited UNet's K/V projections, W0 over the original's (the official `close_form_emb_regzero`);
    computed in float64. Returns a tensor of the embedding's shape and dtype.
    """
    edited, original = kv_projections(edited_unet), kv_projections(original_unet)
    dim = edited[0].weight.shape[1]
    gram = regular_scale * torch.eye(dim, dtype=torch.float64, device=embedding.device)
    cross = torch.zeros(dim, dim, dtype=torch.float64, device=embedding.device)
    for new, old in zip(edited, original):
        w_new, w_old = new.weight.detach().double(), old.weight.detach().double()
        gram = gram + w_new.T @ w_new
        cross = cross + w_new.T @ w_old
    coefficient = torch.linalg.solve(gram, cross)  # (lambda I + sum W^T W)^-1 sum W^T W0
    return (embedding.detach().double() @ coefficient.T).to(embedding.dtype)


def erase(components: DiffusionComponents, request: EraseRequest, config: RECEConfig, seed: int = 0) -> EditedDiffusion:
    """UCE, then `epochs` rounds of: find the embedding that still regenerates the concept, erase it (closed form)."""
    start = time.perf_counter()

    # 0. The UCE-edited model RECE starts from (a copy of the UNet; `components` stays untouched).
    uce_config = uce.UCEConfig(lamb=config.uce_lamb, erase_scale=config.erase_scale,
                               preserve_scale=config.uce_preserve_scale, edit_values=config.edit_values,
                               add_empty_prompt_to_preserve=config.add_empty_prompt_to_preserve)
    unet = uce.erase(components, request, uce_config, seed).components.unet

    forget_emb = encode_prompts(components, request.forget_prompts)
    anchor_emb = encode_prompts(components, request.anchor_prompts)
    slices = [uce.aligned_token_slices(components.tokenizer, forget, anchor)
              for forget, anchor in zip(request.forget_prompts, request.anchor_prompts)]
    guide_inputs = torch.cat([anchor_emb[i, s_a: s_a + n] for i, (_, s_a, n) in enumerate(slices)])
    preserve_prompts = ([""] if config.add_empty_prompt_to_preserve else []) + list(request.preserve_prompts)
    preserve_inputs = encode_prompts(components, preserve_prompts).reshape(-1, forget_emb.shape[-1])

    history = []
    with torch.no_grad():
        for epoch in range(config.epochs):
            # 1a. The embeddings that regenerate the concept under the current model (every token, as official).
            adversarial = adversarial_embedding(unet, components.unet, forget_emb, config.regular_scale)
            erase_inputs = torch.cat([adversarial[i, s_f: s_f + n] for i, (s_f, _, n) in enumerate(slices)])
            # how far the current model is from reproducing the original K/V of the concept with c' (relative)
            history.append(_kv_gap(unet, components.unet, adversarial, forget_emb))

            # 1b. Erase them: a UCE edit of every K/V projection, from the current weights.
            for _, attention in cross_attention_modules(unet):
                for projection in [attention.to_k] + ([attention.to_v] if config.edit_values else []):
                    weight = projection.weight
                    targets = guide_inputs.to(weight.dtype) @ weight.T  # what the anchor gives now
                    projection.weight.copy_(uce.closed_form_edit(
                        weight, erase_inputs.to(weight.dtype), targets, preserve_inputs.to(weight.dtype),
                        config.lamb, config.erase_scale, config.preserve_scale,
                    ))

    # 2. The edited model samples like the base model.
    return EditedDiffusion(
        components.with_unet(unet),
        info={
            "epochs": config.epochs,
            "adversarial_kv_gap": history,  # per epoch, before its edit: ||W c' - W0 c|| / ||W0 c|| over all K/V
            "erase_vectors_per_epoch": int(erase_inputs.shape[0]),
            "preserve_vectors": int(preserve_inputs.shape[0]),
            "wall_time_s": time.perf_counter() - start,
        },
    )


def _kv_gap(edited_unet, original_unet, adversarial: torch.Tensor, concept: torch.Tensor) -> float:
    """||W c' - W0 c|| / ||W0 c|| summed over every K/V projection (how well c' regenerates the concept)."""
    gap = norm = 0.0
    for new, old in zip(kv_projections(edited_unet), kv_projections(original_unet)):
        reference = concept @ old.weight.T
        gap += float(((adversarial @ new.weight.T - reference) ** 2).sum())
        norm += float((reference ** 2).sum())
    return (gap / norm) ** 0.5
