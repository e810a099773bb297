"""UCE: Unified Concept Editing (Gandikota et al., WACV 2024). Catalog id: `gandikota2023unified`.

Follows rohitgandikota/unified-concept-editing@35e91e2, train-scripts/train_erase.py (`edit_model`, technique
"replace"), the paper-era code.

UCE edits each cross-attention key / value projection W (to_k, to_v of every `attn2`) in closed form. Erase
embeddings c_i must produce what their guide (anchor) embedding produced, v_i* = W_old g_i, while preserved
embeddings c_j keep their output:

    min_W  s_e sum_i ||W c_i - v_i*||^2 + s_p sum_j ||W c_j - W_old c_j||^2 + lambda ||W - W_old||_F^2

    W = (lambda W_old + s_e sum_i v_i* c_i^T + s_p sum_j W_old c_j c_j^T)
        (lambda I + s_e sum_i c_i c_i^T + s_p sum_j c_j c_j^T)^-1

No gradient training, so it takes milliseconds on MiniCanvas and seconds on Stable Diffusion.

Which token embeddings:
  1. Erase pairs: the token slice from the concept to the end of the sequence (EOS and padding included), aligned
     with the guide prompt's slice (the official `final_token_idx` trimming). The official code takes the prompt's
     last word as the concept; here it is the last token where the forget and anchor prompts differ: the same for
     "Van Gogh" vs "art", and it also works when the concept sits mid-prompt ("a digit three in plain style"),
     where CLIP's causal mask makes every later token depend on it.
  2. Preserve set: '' first, then every preserve prompt as given, each with all its tokens (padding included): the
     sums run over every token of every retained prompt with its multiplicity, as in the official code (nothing is
     deduplicated, so a token many prompts share, like the start token, weighs as often as it occurs).
  3. s_p defaults to the official max(0.1, 1 / #retained prompts), '' counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch

from ..core.config import check_config
from .diffusion import (
    DiffusionComponents,
    EraseRequest,
    EditedDiffusion,
    cross_attention_modules,
    encode_prompts,
    frozen_copy,
)


@dataclass
class UCEConfig:
    """Defaults are the official paper-era ones for Stable Diffusion 1.x (rohitgandikota/unified-concept-editing@35e91e2,
    train-scripts/train_erase.py); a testbed's adaptations are declared in methods/registry.yaml."""

    lamb: float = 0.5  # lambda, weight of ||W - W_old||^2 (old and new official code)
    erase_scale: float = 1.0  # s_e (old and new official code)
    preserve_scale: Optional[float] = None  # s_p; None = paper-era code's max(0.1, 1 / #preserve prompts)
    edit_values: bool = True  # edit to_v as well as to_k (official code edits both)
    add_empty_prompt_to_preserve: bool = True  # paper-era code always preserves ''

    def __post_init__(self):
        check_config(self, lamb="[0,1e4]", erase_scale="[0,1e4]", preserve_scale="[0,1e4]")


def aligned_token_slices(tokenizer, forget_prompt: str, anchor_prompt: str) -> tuple:
    """(start_forget, start_anchor, length) of the token slices that an erase pair maps onto each other.

    Each slice starts at the prompt's last token that differs from the other prompt (found by stripping the
    common prefix and the common suffix of the unpadded token ids) and runs to the end of the padded sequence;
    both are trimmed to the same length, as in the paper-era code's `final_token_idx` alignment.
    """
    ids_forget = tokenizer(forget_prompt, truncation=True).input_ids
    ids_anchor = tokenizer(anchor_prompt, truncation=True).input_ids
    prefix = 0
    while prefix < min(len(ids_forget), len(ids_anchor)) and ids_forget[prefix] == ids_anchor[prefix]:
        prefix += 1
    suffix = 0
    while (
        suffix < min(len(ids_forget), len(ids_anchor)) - prefix
        and ids_forget[-1 - suffix] == ids_anchor[-1 - suffix]
    ):
        suffix += 1
    # last differing token; for an empty middle (anchor "" inside the forget prompt) the token before it
    start_forget = max(0, len(ids_forget) - suffix - 1)
    start_anchor = max(0, len(ids_anchor) - suffix - 1)
    length = tokenizer.model_max_length - max(start_forget, start_anchor)
    return start_forget, start_anchor, length


def closed_form_edit(
    weight: torch.Tensor,
    erase_inputs: torch.Tensor,
    erase_targets: torch.Tensor,
    preserve_inputs: torch.Tensor,
    lamb: float,
    erase_scale: float,
    preserve_scale: float,
) -> torch.Tensor:
    """Solve the UCE least-squares problem for one projection (computed in float64 for stability).

    weight: (d_out, d_in); erase_inputs: (n_e, d_in); erase_targets: (n_e, d_out); preserve_inputs: (n_p, d_in).
    """
    w_old = weight.double()
    c_e, v_e, c_p = erase_inputs.double(), erase_targets.double(), preserve_inputs.double()
    eye = torch.eye(w_old.shape[1], dtype=torch.float64, device=w_old.device)
    # right factor: lambda I + s_e C_e^T C_e + s_p C_p^T C_p   (d_in x d_in, symmetric positive definite)
    gram = lamb * eye + erase_scale * c_e.T @ c_e + preserve_scale * c_p.T @ c_p
    # left factor: lambda W_old + s_e V*^T C_e + s_p W_old C_p^T C_p   (d_out x d_in)
    rhs = lamb * w_old + erase_scale * v_e.T @ c_e + preserve_scale * w_old @ (c_p.T @ c_p)
    # W = rhs @ gram^-1, i.e. gram @ W^T = rhs^T (gram is symmetric)
    return torch.linalg.solve(gram, rhs.T).T.to(weight.dtype)


def erase(components: DiffusionComponents, request: EraseRequest, config: UCEConfig, seed: int = 0) -> EditedDiffusion:
    """Edit a copy of the UNet's cross-attention K/V projections in closed form (`seed` is unused: no randomness)."""
    start = time.perf_counter()

    # 1. Erase pairs: aligned token slices of each forget prompt and its anchor prompt.
    forget_emb = encode_prompts(components, request.forget_prompts)
    anchor_emb = encode_prompts(components, request.anchor_prompts)
    erase_inputs, guide_inputs = [], []
    for i, (forget, anchor) in enumerate(zip(request.forget_prompts, request.anchor_prompts)):
        start_f, start_a, length = aligned_token_slices(components.tokenizer, forget, anchor)
        erase_inputs.append(forget_emb[i, start_f : start_f + length])
        guide_inputs.append(anchor_emb[i, start_a : start_a + length])
    erase_inputs, guide_inputs = torch.cat(erase_inputs), torch.cat(guide_inputs)

    # 2. Preserve set: '' first (official `retain_texts = [''] + preserve_concepts`), then every preserve prompt,
    #    every token of each, with its multiplicity.
    preserve_prompts = ([""] if config.add_empty_prompt_to_preserve else []) + list(request.preserve_prompts)
    if not preserve_prompts:
        raise ValueError("UCE needs at least one prompt to preserve (add_empty_prompt_to_preserve adds '')")
    preserve_emb = encode_prompts(components, preserve_prompts)
    preserve_inputs = preserve_emb.reshape(-1, preserve_emb.shape[-1])
    preserve_scale = config.preserve_scale
    if preserve_scale is None:
        preserve_scale = max(0.1, 1.0 / len(preserve_prompts))

    # 3. Closed-form edit of to_k and to_v of every cross-attention layer, on a copy of the UNet.
    unet = frozen_copy(components.unet)
    edited_layers = 0
    with torch.no_grad():
        for _, attention in cross_attention_modules(unet):
            projections = [attention.to_k] + ([attention.to_v] if config.edit_values else [])
            for projection in projections:
                weight = projection.weight
                # the guide output v* = W_old g (a bias, if any, is the same on both sides and cancels)
                targets = guide_inputs.to(weight.dtype) @ weight.T
                projection.weight.copy_(
                    closed_form_edit(
                        weight, erase_inputs.to(weight.dtype), targets, preserve_inputs.to(weight.dtype),
                        config.lamb, config.erase_scale, preserve_scale,
                    )
                )
                edited_layers += 1

    # 4. The edited model samples like the base model.
    return EditedDiffusion(
        components.with_unet(unet),
        info={
            "edited_matrices": edited_layers,
            "erase_vectors": int(erase_inputs.shape[0]),
            "preserve_vectors": int(preserve_inputs.shape[0]),
            "preserve_scale": preserve_scale,
            "wall_time_s": time.perf_counter() - start,
        },
    )
