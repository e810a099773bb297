"""MiniCanvas' data: `sklearn.datasets.load_digits` at its native 8x8, scaled to [-1, 1], each image rendered in 4
deterministic styles (plain, inverted, thick = 2x2 max-filter dilation, rotated 90 degrees)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .prompts import STYLES


def apply_style(images: torch.Tensor, style: str) -> torch.Tensor:
    """Render (N, 1, 8, 8) images in [-1, 1] in one of the 4 deterministic styles."""
    if style == "plain":
        return images
    if style == "inverted":
        return -images  # 1 - x in [0, 1] is -x in [-1, 1]
    if style == "thick":
        # 2x2 max-filter dilation: pad right/bottom by one pixel with the background value, then max-pool.
        padded = F.pad(images, (0, 1, 0, 1), value=-1.0)
        return F.max_pool2d(padded, kernel_size=2, stride=1)
    if style == "rotated":
        return torch.rot90(images, k=1, dims=(2, 3))
    raise ValueError(f"unknown style {style!r}")


@dataclass
class DigitsData:
    """Images (N, 1, 8, 8) in [-1, 1] with digit and style labels, for one split."""

    images: torch.Tensor
    digits: torch.Tensor
    styles: torch.Tensor


def load_data(split_seed: int = 0, test_fraction: float = 0.2) -> dict:
    """Deterministic 80/20 split of load_digits (1437 / 360), each digit rendered in all 4 styles."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = torch.tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16.0 * 2.0 - 1.0
    labels = torch.tensor(raw.target, dtype=torch.long)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(split_seed))
    n_test = int(round(len(images) * test_fraction))
    splits = {"test": order[:n_test], "train": order[n_test:]}
    data = {}
    for name, index in splits.items():
        styled = [apply_style(images[index], style) for style in STYLES]
        data[name] = DigitsData(
            images=torch.cat(styled),
            digits=labels[index].repeat(len(STYLES)),
            styles=torch.arange(len(STYLES)).repeat_interleave(len(index)),
        )
    return data


def prompt_concepts(prompt: str) -> tuple:
    """(digit index or None, style index or None) that a MiniCanvas prompt names ("a digit three" -> (3, None))."""
    from .prompts import DIGITS

    words = prompt.split()
    digit = next((DIGITS.index(word) for word in words if word in DIGITS), None)
    style = next((STYLES.index(word) for word in words if word in STYLES), None)
    return digit, style


def images_for_prompts(split: DigitsData, prompts, forget: str) -> dict:
    """Real images of each prompt, for the cards that train on images: the digit and the style the prompt names
    (any digit or style where it names none). A prompt that does not name the forget concept gets no image of it
    (the retain data of UnlearnCanvas-style unlearning: "a digit in plain style" while forgetting "three" shows
    every digit but three), so retain images never teach the concept back."""
    from .prompts import DIGITS, concept_axis

    forget_digit = DIGITS.index(forget) if concept_axis(forget) == "object" else None
    forget_style = STYLES.index(forget) if concept_axis(forget) == "style" else None
    images = {}
    for prompt in dict.fromkeys(prompts):
        digit, style = prompt_concepts(prompt)
        keep = torch.ones(len(split.digits), dtype=torch.bool)
        if digit is not None:
            keep &= split.digits == digit
        elif forget_digit is not None:
            keep &= split.digits != forget_digit
        if style is not None:
            keep &= split.styles == style
        elif forget_style is not None:
            keep &= split.styles != forget_style
        images[prompt] = split.images[keep]
    return images
