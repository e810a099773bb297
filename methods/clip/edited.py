"""What every CLIP card shares: the task it receives, the edited-model interface it returns, and the two pieces of
CLIP itself (normalised features, the contrastive loss, zero-shot classification).

A card is `unlearn(model, task, config, seed) -> info`: it edits `model` (a `transformers.CLIPModel`, a copy made by
the testbed) in place and returns a JSON-ready info dict. `CLIPTask` holds the forget and retain image-caption pairs
of the request, the class prompts of the axis it is scored on, and an encoder that turns images and texts into model
inputs (the 8x8 images as they are for the tiny model; RGB through the image processor for a real checkpoint).
`EditedCLIP` is what the testbed evaluates and what attacks reach into.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F


@dataclass
class EditedCLIP:
    model: Any  # a transformers.CLIPModel, frozen (eval mode, no gradients)
    encoder: Any  # the testbed's Encoder (tokenizer, image processor, device)
    info: dict = field(default_factory=dict)


@dataclass
class CLIPTask:
    """One forget request as a CLIP card sees it.

    forget / retain: image-caption pairs (`images` (N, C, H, W) raw testbed images, `captions` caption ids into
    `caption_texts`); `forget_labels` / `retain_labels`: each pair's class on the request's axis (for the backdoor
    task, the class its caption names); `classes` and `templates`: the axis' class names and their prompt templates
    (zero-shot head); `forget_classes`: the classes being forgotten (none for the backdoor task)."""

    kind: str  # digit, style, pair or backdoor
    forget: Any
    retain: Any
    forget_labels: torch.Tensor
    retain_labels: torch.Tensor
    caption_texts: tuple
    classes: tuple
    templates: list
    forget_classes: tuple
    encoder: Any
    seed: int
    extra: dict = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.pixels(images)

    def caption_tokens(self, caption_ids: torch.Tensor) -> dict:
        return self.encoder.texts([self.caption_texts[int(i)] for i in caption_ids])

    def head(self, model) -> torch.Tensor:
        """(classes, dim) normalised zero-shot class embeddings of the axis (templates averaged)."""
        rows = []
        for prompts in self.templates:
            rows.append(F.normalize(text_features(model, self.encoder.texts(prompts)).mean(dim=0), dim=-1))
        return torch.stack(rows)

    @torch.no_grad()
    def zero_shot_accuracy(self, model, images: torch.Tensor, labels: torch.Tensor, topk: int = 1,
                           batch_size: int = 512) -> float:
        """Share of `images` whose label is among the top-k zero-shot classes of the axis."""
        was_training = model.training
        model.eval()
        head = self.head(model)
        hits = 0
        for start in range(0, len(images), batch_size):
            logits = image_features(model, self.pixels(images[start:start + batch_size])) @ head.t()
            top = logits.topk(min(topk, logits.shape[1]), dim=1).indices.cpu()
            hits += int((top == labels[start:start + batch_size, None]).any(dim=1).sum())
        model.train(was_training)
        return hits / max(1, len(images))


def image_features(model, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    features = model.get_image_features(pixel_values=pixel_values)
    features = getattr(features, "pooler_output", features)
    return F.normalize(features, dim=-1) if normalize else features


def text_features(model, tokens: dict, normalize: bool = True) -> torch.Tensor:
    features = model.get_text_features(**tokens)
    features = getattr(features, "pooler_output", features)
    return F.normalize(features, dim=-1) if normalize else features


def same_caption(captions: torch.Tensor, others: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, B') positives of an in-batch contrastive loss: pairs with the same caption id."""
    others = captions if others is None else others
    return captions[:, None] == others[None, :]


def contrastive_loss(logits: torch.Tensor, positives: Optional[torch.Tensor] = None, reduction: str = "mean"):
    """CLIP's symmetric in-batch loss on (B, B) image->text logits.

    With `positives=None` it is CLIP's (targets = the diagonal). With a boolean `positives` matrix, each row's target
    is uniform over its positives: captions repeat inside a MiniCLIP batch, and a same-caption pair is not a
    negative; with unique captions the two forms agree. `reduction="none"` gives the per-pair loss (B,)."""
    if positives is None:
        positives = torch.eye(len(logits), dtype=torch.bool, device=logits.device)
    positives = positives.float()
    image_targets = positives / positives.sum(dim=1, keepdim=True)
    text_targets = positives.t() / positives.t().sum(dim=1, keepdim=True)
    image_to_text = -(image_targets * F.log_softmax(logits, dim=1)).sum(dim=1)
    text_to_image = -(text_targets * F.log_softmax(logits.t(), dim=1)).sum(dim=1)
    per_pair = (image_to_text + text_to_image) / 2
    return per_pair if reduction == "none" else per_pair.mean()


def pair_logits(model, task: CLIPTask, images: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
    """logit_scale * cos(image_i, caption_j) for a batch of pairs."""
    image = image_features(model, task.pixels(images))
    text = text_features(model, task.caption_tokens(captions))
    return model.logit_scale.exp() * image @ text.t()


def batches(n: int, batch_size: int, generator: torch.Generator, shuffle: bool = True) -> list:
    """Index batches over n items (one epoch), shuffled with `generator`."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return [order[start:start + batch_size] for start in range(0, n, batch_size)]


def parameter_groups(model, weight_decay: float) -> list:
    """open_clip's grouping (also CleanCLIP's and SLUG's): no weight decay on gains, biases and the logit scale."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        skip = parameter.ndim < 2 or "norm" in name or "bias" in name or "logit_scale" in name
        (no_decay if skip else decay).append(parameter)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def vision_parameters(model) -> list:
    """(name, parameter) of the image encoder as task_vectors fine-tunes it: the vision tower and its projection."""
    return [(name, p) for name, p in model.named_parameters()
            if name.startswith("vision_model.") or name.startswith("visual_projection.")]


def as_info(values: dict) -> dict:
    """Plain JSON-ready numbers and strings of a card's info dict."""
    return {k: (float(v) if isinstance(v, (float, int)) and not isinstance(v, bool) else v) for k, v in values.items()}


def seq(values: Sequence) -> list:
    return [float(v) for v in values]
