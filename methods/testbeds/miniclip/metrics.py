"""MiniCLIP's metrics: zero-shot accuracy on held-out images on the request's axis (forget / retain), on the other
axis (cross), the gap to the retrain oracle, and for the backdoor task clean accuracy and attack success rate.

- digit request: forget = digit accuracy on the test images of that digit (10-way); retain = on the other digits;
  cross = style accuracy (4-way) on every test image;
- style request: the same with the axes swapped;
- pair request (one caption): forget = 40-way caption accuracy on the caption's images; retain = on every other
  image; cross = on the images that share its digit or its style (its nearest associations);
- backdoor: clean = digit accuracy on clean test images; ASR = share of triggered test images whose digit is not the
  target that are read as the target (CleanCLIP's definitions);
- oracle_gap: mean |metric - oracle's metric| over the request's metrics (0 is the oracle itself).
"""

from __future__ import annotations

import numpy as np
import torch

from .data import BACKDOOR, PairSet, Request, add_trigger
from .model import Encoder, image_features, zero_shot_head

METRICS = ("forget_acc", "retain_acc", "cross_acc", "clean_acc", "asr")
GAP = "oracle_gap"


@torch.no_grad()
def predict(model, encoder: Encoder, images: torch.Tensor, head: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Zero-shot predictions: argmax over the class embeddings of each image's normalised feature."""
    out = []
    for start in range(0, len(images), batch_size):
        features = image_features(model, encoder.pixels(images[start:start + batch_size]))
        out.append((features @ head.t()).argmax(dim=1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(predictions: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor):
    return float((predictions[mask] == labels[mask]).float().mean()) if bool(mask.any()) else None


def confusion(predictions: torch.Tensor, labels: torch.Tensor, n: int) -> list:
    """Row-normalised confusion matrix (true class x predicted class)."""
    matrix = torch.zeros(n, n)
    matrix.index_put_((labels, predictions), torch.ones(len(labels)), accumulate=True)
    return (matrix / matrix.sum(dim=1, keepdim=True).clamp_min(1)).tolist()


@torch.no_grad()
def evaluate_model(model, encoder: Encoder, heads: dict, test: PairSet, request: Request, batch_size: int,
                   backdoor_target: int = 0, patch_pixels: int = 2) -> tuple:
    """(metrics, details) of one model on one request; `heads` maps an axis to its zero-shot class embeddings."""
    model.eval()
    metrics = {key: None for key in METRICS}
    labels = {"digit": test.digits, "style": test.styles, "caption": test.captions}
    predictions = {axis: predict(model, encoder, test.images, heads[axis], batch_size) for axis in heads}
    details = {"accuracy": {axis: accuracy(predictions[axis], labels[axis], torch.ones_like(labels[axis], dtype=torch.bool))
                            for axis in heads}}
    if request.kind == BACKDOOR:
        triggered = add_trigger(test.images, patch_pixels)
        attacked = predict(model, encoder, triggered, heads["digit"], batch_size)
        victims = test.digits != backdoor_target
        metrics["clean_acc"] = accuracy(predictions["digit"], test.digits, torch.ones_like(victims))
        metrics["asr"] = float((attacked[victims] == backdoor_target).float().mean())
        axis, shown, shown_labels = "digit", attacked, test.digits
    else:
        forget = request.forget_mask(test.digits, test.styles)
        axis = request.axis
        metrics["forget_acc"] = accuracy(predictions[axis], labels[axis], forget)
        metrics["retain_acc"] = accuracy(predictions[axis], labels[axis], ~forget)
        if request.kind == "digit":
            metrics["cross_acc"] = details["accuracy"]["style"]
        elif request.kind == "style":
            metrics["cross_acc"] = details["accuracy"]["digit"]
        else:
            neighbours = ((test.digits == request.digit) | (test.styles == request.style)) & ~forget
            metrics["cross_acc"] = accuracy(predictions["caption"], test.captions, neighbours)
        shown, shown_labels = predictions[axis], labels[axis]
    n = heads[axis].shape[0]
    details["confusion"] = {"axis": axis, "triggered": request.kind == BACKDOOR,
                            "matrix": confusion(shown, shown_labels, n)}
    return metrics, details


def oracle_gap(metrics: dict, oracle: dict) -> float:
    gaps = [abs(metrics[key] - oracle[key]) for key in METRICS
            if metrics.get(key) is not None and oracle.get(key) is not None]
    return float(np.mean(gaps)) if gaps else None
