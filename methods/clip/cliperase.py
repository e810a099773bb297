"""CLIPErase: unlearning visual-textual associations in CLIP (Yang et al., ACL 2025).

Follows the paper (arXiv 2410.23330): no code was released (its code link is a project page, and no repository of
it could be found), and only the paper's abstract-level description could be read here, so the three modules'
exact forms and weights below are this card's reading, not checked against the paper's equations.

Both encoders are fine-tuned on batches that join forget pairs and retain pairs, with
    L = lambda_f * L_forget + lambda_r * L_retain + lambda_c * L_consistency
- Forgetting module: L_forget = - mean over the forget pairs of CLIP's in-batch contrastive loss (image->text and
  text->image cross-entropy), which breaks each forget image's association with its caption (the forget set is the
  request's own image-caption pairs; `forget_text="class_prompt"` pairs the images with their class prompt instead);
- Retention module: L_retain = the same contrastive loss, averaged over the retain pairs;
- Consistency module: L_consistency = KL(p_original || p) of the image->text and text->image similarity
  distributions of the retain pairs, between the frozen original model and the model being unlearned.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.config import check_config
from ..core.seeding import make_generator
from .edited import CLIPTask, parameter_groups, batches, contrastive_loss, image_features, same_caption, text_features


@dataclass
class CLIPEraseConfig:
    # Not given in what could be read of the paper: CLIP fine-tuning values (open_clip / CleanCLIP's AdamW, weight
    # decay 0.1, learning rate 1e-5) and equal module weights.
    learning_rate: float = 1e-5
    weight_decay: float = 0.1
    epochs: int = 5  # passes over the forget pairs
    forget_batch_size: int = 32
    retain_batch_size: int = 32
    lambda_forget: float = 1.0
    lambda_retain: float = 1.0
    lambda_consistency: float = 1.0
    forget_text: str = "caption"  # the forget images' text: their own caption (the forget pairs), or the class prompt

    def __post_init__(self):
        check_config(self, {"forget_text": ("class_prompt", "caption")}, learning_rate=">0", weight_decay=">=0", epochs=">=1", forget_batch_size=">=1",
                     retain_batch_size=">=1", lambda_forget=">=0", lambda_retain=">=0", lambda_consistency=">=0")


def consistency_kl(logits: torch.Tensor, original_logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """KL(original || current) of the image->text and text->image distributions, averaged over the given rows."""
    kl_image = F.kl_div(F.log_softmax(logits, dim=1), F.softmax(original_logits, dim=1), reduction="none").sum(dim=1)
    kl_text = F.kl_div(F.log_softmax(logits.t(), dim=1), F.softmax(original_logits.t(), dim=1),
                       reduction="none").sum(dim=1)
    return (kl_image[rows].mean() + kl_text[rows].mean())


def cliperase_loss(logits: torch.Tensor, original_logits: torch.Tensor, positives: torch.Tensor,
                   is_forget: torch.Tensor, config: CLIPEraseConfig) -> tuple:
    """The three modules on one joint batch; returns (total, forget, retain, consistency)."""
    per_pair = contrastive_loss(logits, positives, reduction="none")
    forget = -per_pair[is_forget].mean()
    retain = per_pair[~is_forget].mean()
    consistency = consistency_kl(logits, original_logits, ~is_forget)
    total = config.lambda_forget * forget + config.lambda_retain * retain + config.lambda_consistency * consistency
    return total, forget, retain, consistency


def forget_texts(task: CLIPTask, index: torch.Tensor, mode: str) -> list:
    if mode == "caption" or not task.forget_classes:
        return [task.caption_texts[int(c)] for c in task.forget.captions[index]]
    return [task.templates[int(label)][0] for label in task.forget_labels[index]]


def text_logits(model, task: CLIPTask, images: torch.Tensor, texts: list) -> torch.Tensor:
    """logit_scale * cos(image_i, text_j)."""
    image = image_features(model, task.pixels(images))
    text = text_features(model, task.encoder.texts(texts))
    return model.logit_scale.exp() * image @ text.t()


def unlearn(model, task: CLIPTask, config: CLIPEraseConfig, seed: int = 0) -> dict:
    if len(task.forget) == 0 or len(task.retain) == 0:
        raise ValueError("CLIPErase needs forget and retain pairs")
    original = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.learning_rate)
    generator = make_generator(seed)
    history = []
    model.train()
    for _ in range(config.epochs):
        for forget_index in batches(len(task.forget), config.forget_batch_size, generator):
            retain_index = torch.randint(len(task.retain), (config.retain_batch_size,), generator=generator)
            images = torch.cat([task.forget.images[forget_index], task.retain.images[retain_index]])
            texts = forget_texts(task, forget_index, config.forget_text) + \
                [task.caption_texts[int(c)] for c in task.retain.captions[retain_index]]
            is_forget = torch.arange(len(texts)) < len(forget_index)
            logits = text_logits(model, task, images, texts)
            with torch.no_grad():
                original_logits = text_logits(original, task, images, texts)
            ids = {text: i for i, text in enumerate(dict.fromkeys(texts))}
            total, forget, retain, consistency = cliperase_loss(
                logits, original_logits, same_caption(torch.tensor([ids[t] for t in texts])).to(logits.device),
                is_forget.to(logits.device), config)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, 4.6052)
            history.append([float(total.detach()), float(forget.detach()), float(retain.detach()),
                            float(consistency.detach())])
    return {"steps": len(history), "final_losses": dict(zip(("total", "forget", "retain", "consistency"),
                                                             history[-1] if history else [None] * 4))}
