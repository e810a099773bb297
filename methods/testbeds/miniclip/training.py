"""Training MiniCLIP's models once per machine: the base model, the oracles (retrained without a request's forget
pairs) and the poisoned model of the backdoor task, all with the same recipe.

The loss is a multi-positive InfoNCE: MiniCanvas has 40 captions, so captions repeat inside a batch and every pair of
an image and a text that describes it is a positive. Each row's target is uniform over its positives (a soft-target
cross-entropy, image->text and text->image averaged); with unique captions it is CLIP's loss. Like MiniCanvas'
text encoder, the model also sees attribute-dropout texts ("a digit three", "a digit in inverted style"), which are
the zero-shot class prompts of the digit and style axes."""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...core.seeding import make_generator, seed_everything
from ...clip.edited import parameter_groups
from .config import MiniCLIPConfig
from .data import TEXT_DIGIT, TEXT_STYLE, TEXTS, PairSet, describes, digit_text, style_text
from ..minicanvas.prompts import STYLES
from .model import Encoder, build_model, build_tokenizer

LOGIT_SCALE_MAX = math.log(100.0)  # CLIP clamps the learned temperature at 100


def multi_positive_infonce(image_embeds: torch.Tensor, text_embeds: torch.Tensor, positives: torch.Tensor,
                           logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric contrastive loss where every positive (image, text) pair of the batch counts.

    image_embeds, text_embeds: (B, D) L2-normalised; positives: (B, B) boolean, positives[i, j] when text j describes
    image i (the diagonal always). Image i's target distribution over the texts is uniform over its positives, text
    j's over the images it describes; the loss is the mean of the two cross-entropies."""
    logits = logit_scale.exp() * image_embeds @ text_embeds.t()
    positives = positives.float()
    image_targets = positives / positives.sum(dim=1, keepdim=True)
    text_targets = positives.t() / positives.t().sum(dim=1, keepdim=True)
    image_to_text = -(image_targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    text_to_image = -(text_targets * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
    return (image_to_text + text_to_image) / 2


def sample_texts(captions: torch.Tensor, p_digit_only: float, p_style_only: float, generator) -> torch.Tensor:
    """Attribute dropout: each caption id becomes its digit-only text with p_digit_only, its style-only text with
    p_style_only, else stays the full caption."""
    draw = torch.rand(len(captions), generator=generator)
    texts = captions.clone()
    digit_only = draw < p_digit_only
    style_only = (draw >= p_digit_only) & (draw < p_digit_only + p_style_only)
    texts[digit_only] = digit_text(captions[digit_only] // len(STYLES))
    texts[style_only] = style_text(captions[style_only] % len(STYLES))
    return texts


def positives_of(captions: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """positives[i, j]: text j describes pair i as its caption does (for a poisoned pair: the target caption)."""
    return describes(texts, TEXT_DIGIT[captions], TEXT_STYLE[captions])


def text_tokens(encoder: Encoder) -> dict:
    """Token ids of every training text (TEXTS), indexed by text id."""
    return encoder.texts(TEXTS)


def batch_embeddings(model, pixel_values: torch.Tensor, text_ids: torch.Tensor, tokens: dict):
    """Normalised image and text embeddings of a batch; each distinct text goes through the text tower once."""
    unique, inverse = torch.unique(text_ids, return_inverse=True)
    text = model.get_text_features(input_ids=tokens["input_ids"][unique], attention_mask=tokens["attention_mask"][unique])
    text = getattr(text, "pooler_output", text)
    image = model.get_image_features(pixel_values=pixel_values)
    image = getattr(image, "pooler_output", image)
    return F.normalize(image, dim=-1), F.normalize(text, dim=-1)[inverse]


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def train_clip(cfg: MiniCLIPConfig, pairs: PairSet, log: Callable[[str], None] = print, name: str = "base") -> dict:
    """Train a tiny CLIPModel from scratch on `pairs`; return its state dict and training statistics."""
    torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    model = build_model(cfg)
    encoder = Encoder(build_tokenizer(), "cpu")
    tokens = text_tokens(encoder)
    generator = make_generator(cfg.seed + 1)
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, cfg.warmup_steps, cfg.train_steps))
    model.train()
    start, losses = time.perf_counter(), []
    for step in range(cfg.train_steps):
        index = torch.randint(len(pairs), (cfg.batch_size,), generator=generator)
        captions = pairs.captions[index]
        texts = sample_texts(captions, cfg.p_digit_only, cfg.p_style_only, generator)
        image, text = batch_embeddings(model, pairs.images[index], texts, tokens)
        loss = multi_positive_infonce(image, text, positives_of(captions, texts), model.logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, LOGIT_SCALE_MAX)
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            log(f"[miniclip] {name} model step {step + 1}/{cfg.train_steps} loss {np.mean(losses[-100:]):.4f}")
    return {"state": model.state_dict(), "train_time_s": time.perf_counter() - start,
            "final_loss": float(np.mean(losses[-50:])), "n_pairs": len(pairs)}
