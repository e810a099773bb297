"""Forget-Me-Not: attention re-steering (Zhang et al., 2023). Catalog id: `zhang2023forgetmenot`.

Follows SHI-Labs/Forget-Me-Not@a4a81e8, src/train_attn.py with configs/attn.yaml (stage 2, attention re-steering).

Every cross-attention layer (`attn2`) of the UNet is hooked to record its attention probabilities
A_l = softmax(Q_l K_l^T / sqrt(d)) (heads x pixels x tokens). On a noisy image of the concept x_t (a real concept
image noised at a uniformly drawn timestep) under the concept prompt c, FMN minimises the attention mass that the
pixels put on the concept's tokens:

    L_attn = || concat_{layers, heads, pixels} A_l[:, :, concept tokens] ||_2        (one unsquared norm)

The UNet's noise prediction itself is not used (there is no denoising term). With `use_pooler` the end-of-text
token counts as a concept token too (on Stable Diffusion 1.x, whose tokenizer pads with the end-of-text id, that
selects every padding position, as the official matching by token id does). AdamW, constant learning rate, gradient
norm clipped to 1, the whole UNet by default (`only_optimize_ca` trains `attn2` only); the text encoder is frozen.

The concept's tokens are the tokens in which a forget prompt differs from its anchor prompt ("three" in "a digit three
in plain style" against "a digit eight in plain style"; every word of "Van Gogh" against the empty anchor on Stable
Diffusion), in place of the official matching of the concept name's token ids (`concept_positions`). Stage 1 (optional textual inversion of the concept into
new tokens, `use_ti`) is not run: the concept's own words are the tokens (`use_ti: false` in the official config).

Images: the request's real images of the concept (the official `data/<concept>` folder), or samples of the base
model when it carries none (always on Stable Diffusion).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..core.config import check_config
from ..core.seeding import make_generator
from .diffusion import (DiffusionComponents, EditedDiffusion, EraseRequest, cross_attention_modules, encode_prompts,
                        differing_span, explicit_attention, finetuned_model, frozen_copy)
from .salun import split_evenly
from .training import noisy, prompt_images, random_batch, trainable


@dataclass
class FMNConfig:
    """Defaults are the official ones (SHI-Labs/Forget-Me-Not@a4a81e8, configs/attn.yaml, for SD 2.1-base); a
    testbed's adaptations are declared in methods/registry.yaml."""

    learning_rate: float = 2e-6  # attn.yaml `learning_rate`, AdamW, constant schedule
    train_steps: int = 35  # attn.yaml `max_train_steps`
    batch_size: int = 1  # attn.yaml `train_batch_size`
    only_optimize_ca: bool = False  # attn.yaml: the whole UNet (True: attn2 only)
    use_pooler: bool = True  # attn.yaml: the end-of-text token counts as a concept token
    max_grad_norm: float = 1.0  # attn.yaml `max_grad_norm`
    weight_decay: float = 0.01  # attn.yaml `adam_weight_decay`
    num_images: int = 20  # attn.yaml `num_class_images` (the data/<concept> folder holds a few real images)

    def __post_init__(self):
        check_config(self, learning_rate="(0,1]", train_steps=">=1", batch_size=">=1", max_grad_norm="(0,1e6]",
                     weight_decay="[0,1]", num_images=">=1")


def concept_positions(tokenizer, forget_prompt: str, other_prompt: str, use_pooler: bool) -> torch.Tensor:
    """Boolean mask over the padded token positions of `forget_prompt`: the tokens `other_prompt` lacks (the
    span left after removing the common prefix and suffix of the unpadded ids), plus every end-of-text token with
    `use_pooler` (matched by id, as the official code does)."""
    ids = tokenizer(forget_prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True).input_ids
    start, end = differing_span(tokenizer, forget_prompt, other_prompt)
    mask = torch.zeros(len(ids), dtype=torch.bool)
    mask[start:end] = True
    if use_pooler and tokenizer.eos_token_id is not None:
        mask |= torch.tensor(ids) == tokenizer.eos_token_id
    return mask


class AttentionRecorder:
    """Cross-attention processor that computes attention explicitly and keeps the probabilities on the concept's
    tokens (the official `MyCrossAttnProcessor` + `AttnController`)."""

    def __init__(self):
        self.positions = None  # (batch, tokens) boolean
        self.selected = []

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        return explicit_attention(attn, hidden_states, encoder_hidden_states, observe=self._keep)

    def _keep(self, probs: torch.Tensor) -> None:
        if self.positions is not None:
            heads = probs.shape[0] // len(self.positions)
            self.selected.append(probs[self.positions.repeat_interleave(heads, dim=0)[:, None, :].expand_as(probs)])

    def loss(self) -> torch.Tensor:
        """|| concat of every recorded attention probability on the concept's tokens ||_2."""
        return torch.cat(self.selected).norm()


def erase(components: DiffusionComponents, request: EraseRequest, config: FMNConfig, seed: int = 0) -> EditedDiffusion:
    """Attention re-steering of a copy of the UNet on images of the concept."""
    start = time.perf_counter()
    generator = make_generator(seed)
    torch.manual_seed(seed)

    # 1. Images of the concept, its prompts and the positions of its tokens in each prompt.
    images, index = prompt_images(components, request, request.forget_prompts,
                                  split_evenly(config.num_images, len(request.forget_prompts)), generator)
    text = encode_prompts(components, request.forget_prompts)
    positions = torch.stack([concept_positions(components.tokenizer, f, a, config.use_pooler)
                             for f, a in zip(request.forget_prompts, request.anchor_prompts)]).to(components.device)

    # 2. A copy of the UNet whose cross-attention records the probabilities on those tokens.
    unet = frozen_copy(components.unet)
    recorder = AttentionRecorder()
    originals = {}
    for name, attention in cross_attention_modules(unet):
        originals[name] = attention.processor
        attention.set_processor(recorder)
    names = [n for n, _ in unet.named_parameters() if not config.only_optimize_ca or "attn2" in n]
    params = trainable(unet, names)
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)

    # 3. Minimise the attention mass on the concept's tokens (the noise prediction is not used).
    losses = []
    for _ in range(config.train_steps):
        batch = random_batch(len(images), config.batch_size, generator)
        x_t, _, t = noisy(components, images[batch], generator)
        recorder.positions, recorder.selected = positions[index[batch]], []
        unet(x_t, t, encoder_hidden_states=text[index[batch]])
        loss = recorder.loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        losses.append(loss.item())

    # 4. Restore the ordinary attention processors; the edited model samples like the base model.
    recorder.positions, recorder.selected = None, []
    for name, attention in cross_attention_modules(unet):
        attention.set_processor(originals[name])
    edited = finetuned_model(components, unet, params, losses, start)
    edited.info.update(concept_tokens=int(positions.sum()), images=len(images))
    return edited
