"""MiniCanvas' metrics, as UnlearnCanvas defines them (UA, IRA, CRA), and a Fréchet distance on the judge's features.

- UA: share of the forget concept's prompts whose samples the judge does *not* read as the concept;
- IRA: the judge's accuracy on the same axis for the other concepts' prompts;
- CRA: its accuracy on the other axis (style for a digit, digit for a style) for those prompts;
- FD: Fréchet distance between judge penultimate features of all samples and of the real test images.
"""

from __future__ import annotations

import numpy as np
import torch

from .prompts import DIGITS, STYLES, concept_axis, full_prompt


def evaluation_prompts(samples_per_prompt: int):
    """Every (digit, style) prompt, `samples_per_prompt` times, with labels (the UnlearnCanvas answer set)."""
    prompts, digits, styles = [], [], []
    for d, digit in enumerate(DIGITS):
        for s, style in enumerate(STYLES):
            prompts += [full_prompt(digit, style)] * samples_per_prompt
            digits += [d] * samples_per_prompt
            styles += [s] * samples_per_prompt
    return prompts, torch.tensor(digits), torch.tensor(styles)


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (the FID formula on judge features)."""
    from scipy import linalg

    a, b = features_a.double().numpy(), features_b.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    offset = np.eye(cov_a.shape[0]) * 1e-6  # keeps sqrtm stable when some features are always zero (ReLU)
    covmean = np.real(linalg.sqrtm((cov_a + offset) @ (cov_b + offset)))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))


def score(judge, images: torch.Tensor, digit_labels, style_labels, forget: str, real_features) -> tuple:
    """(metrics, details) of judged samples for erasing `forget`."""
    digit_pred, style_pred, features = judge.predict(images)
    digit_ok = (digit_pred == digit_labels).float()
    style_ok = (style_pred == style_labels).float()
    if concept_axis(forget) == "object":
        forget_mask = digit_labels == DIGITS.index(forget)
        same_axis_ok, other_axis_ok = digit_ok, style_ok
    else:
        forget_mask = style_labels == STYLES.index(forget)
        same_axis_ok, other_axis_ok = style_ok, digit_ok
    retain_mask = ~forget_mask
    metrics = {
        "UA": float(1.0 - same_axis_ok[forget_mask].mean()),
        "IRA": float(same_axis_ok[retain_mask].mean()),
        "CRA": float(other_axis_ok[retain_mask].mean()),
        "FD": frechet_distance(features, real_features),
        "forget_accuracy": float(same_axis_ok[forget_mask].mean()),
    }
    details = {
        "forget_other_axis_accuracy": float(other_axis_ok[forget_mask].mean()),
        "object_accuracy": float(digit_ok.mean()),
        "style_accuracy": float(style_ok.mean()),
        "per_digit_accuracy": {digit: float(digit_ok[digit_labels == d].mean()) for d, digit in enumerate(DIGITS)},
        "per_style_accuracy": {style: float(style_ok[style_labels == s].mean()) for s, style in enumerate(STYLES)},
    }
    return metrics, details
