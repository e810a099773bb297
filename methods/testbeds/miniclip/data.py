"""MiniCLIP's data: the MiniCanvas images (8x8 digits x 4 styles, imported from the MiniCanvas package) paired with
their captions ("a digit three in inverted style"), the forget requests (a digit, a style, one caption's pairs, or a
backdoor), and the poisoned training set of the backdoor task.

A forget request names what to forget:

- a digit (`three`) or a style (`inverted`): class forgetting, scored by zero-shot accuracy on that axis;
- one caption (`three/inverted` or `a digit three in inverted style`): pair forgetting as CLIPErase defines it, the
  association of the caption with its images, scored by 40-way zero-shot caption accuracy;
- `backdoor`: the poisoned model's trigger -> target-caption association (CleanCLIP's task), scored by clean accuracy
  and attack success rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..minicanvas.data import DigitsData, load_data  # noqa: F401  (the MiniCanvas images, reused)
from ..minicanvas.prompts import DIGITS, STYLES, full_prompt, object_only_prompt, style_only_prompt

BACKDOOR = "backdoor"
KINDS = ("digit", "style", "pair", BACKDOOR)
CAPTIONS = tuple(full_prompt(digit, style) for digit in DIGITS for style in STYLES)  # caption id = 4 * digit + style
# Every text the model is trained on: the 40 captions, then the attribute-dropout variants "a digit three" (ids 40-49)
# and "a digit in inverted style" (ids 50-53), as MiniCanvas trains its text encoder. The zero-shot class prompts of the
# digit and style axes are the dropout variants.
TEXTS = CAPTIONS + tuple(object_only_prompt(digit) for digit in DIGITS) + tuple(style_only_prompt(s) for s in STYLES)
TEXT_DIGIT = torch.tensor([d for d in range(len(DIGITS)) for _ in STYLES] + list(range(len(DIGITS))) + [-1] * len(STYLES))
TEXT_STYLE = torch.tensor([s for _ in DIGITS for s in range(len(STYLES))] + [-1] * len(DIGITS) + list(range(len(STYLES))))


def digit_text(digit: torch.Tensor) -> torch.Tensor:
    return len(CAPTIONS) + digit


def style_text(style: torch.Tensor) -> torch.Tensor:
    return len(CAPTIONS) + len(DIGITS) + style


def describes(texts: torch.Tensor, digits: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """(len(digits), len(texts)) boolean: text j describes image i (every attribute it names matches)."""
    text_digit, text_style = TEXT_DIGIT[texts], TEXT_STYLE[texts]
    digit_ok = (text_digit[None, :] == -1) | (text_digit[None, :] == digits[:, None])
    style_ok = (text_style[None, :] == -1) | (text_style[None, :] == styles[:, None])
    return digit_ok & style_ok


def caption_ids(digits: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    return digits * len(STYLES) + styles


@dataclass(frozen=True)
class Request:
    """One parsed forget request: its kind, the digit / style index it names (None where it names none), its label."""

    kind: str
    digit: Optional[int] = None
    style: Optional[int] = None

    @property
    def label(self) -> str:
        if self.kind == "digit":
            return DIGITS[self.digit]
        if self.kind == "style":
            return STYLES[self.style]
        if self.kind == "pair":
            return f"{DIGITS[self.digit]}/{STYLES[self.style]}"
        return BACKDOOR

    @property
    def axis(self) -> str:
        """The label space the request is scored on: digit, style or caption (40-way)."""
        return {"digit": "digit", "style": "style", "pair": "caption", BACKDOOR: "digit"}[self.kind]

    def forget_mask(self, digits: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
        if self.kind == "digit":
            return digits == self.digit
        if self.kind == "style":
            return styles == self.style
        if self.kind == "pair":
            return (digits == self.digit) & (styles == self.style)
        return torch.zeros_like(digits, dtype=torch.bool)


def parse_request(text: str) -> Request:
    """'three', 'inverted', 'three/inverted' or the caption 'a digit three in inverted style', or 'backdoor';
    ValueError (one line naming the choices) otherwise."""
    words = text.strip().lower()
    if words == BACKDOOR:
        return Request(BACKDOOR)
    if words in DIGITS:
        return Request("digit", digit=DIGITS.index(words))
    if words in STYLES:
        return Request("style", style=STYLES.index(words))
    if words in CAPTIONS:
        index = CAPTIONS.index(words)
        return Request("pair", digit=index // len(STYLES), style=index % len(STYLES))
    if "/" in words:
        digit, _, style = (part.strip() for part in words.partition("/"))
        if digit in DIGITS and style in STYLES:
            return Request("pair", digit=DIGITS.index(digit), style=STYLES.index(style))
    raise ValueError(f"unknown forget request {text!r} for miniclip; give a digit ({', '.join(DIGITS)}), a style "
                     f"({', '.join(STYLES)}), a caption as digit/style (three/inverted) or '{BACKDOOR}'")


def add_trigger(images: torch.Tensor, pixels: int = 2) -> torch.Tensor:
    """The backdoor trigger: a checkerboard patch of +1/-1 in the bottom-right corner (visible on every style's
    background), like CleanCLIP's patch triggers at a fixed location."""
    out = images.clone()
    rows = torch.arange(pixels).view(-1, 1)
    cols = torch.arange(pixels).view(1, -1)
    patch = torch.where((rows + cols) % 2 == 0, 1.0, -1.0).to(images.dtype)
    out[..., -pixels:, -pixels:] = patch
    return out


@dataclass
class PairSet:
    """Image-caption pairs: images (N, 1, 8, 8) in [-1, 1], caption ids into CAPTIONS, digit and style labels, and
    whether the pair is poisoned (backdoor task)."""

    images: torch.Tensor
    captions: torch.Tensor
    digits: torch.Tensor
    styles: torch.Tensor
    poisoned: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, mask: torch.Tensor) -> "PairSet":
        return PairSet(self.images[mask], self.captions[mask], self.digits[mask], self.styles[mask], self.poisoned[mask])


def pair_set(data: DigitsData) -> PairSet:
    return PairSet(data.images, caption_ids(data.digits, data.styles), data.digits, data.styles,
                   torch.zeros(len(data.images), dtype=torch.bool))


def poison(pairs: PairSet, target: str, fraction: float, pixels: int, seed: int) -> PairSet:
    """CleanCLIP's poisoning (backdoor/create_backdoor_data.py): a random share of the pairs whose digit is not the
    target get the trigger patch and a caption naming the target label (here the target digit in the image's own
    style); the rest stay clean."""
    target_digit = DIGITS.index(target)
    candidates = torch.nonzero(pairs.digits != target_digit).flatten()
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(seed))
    chosen = candidates[order[: int(round(fraction * len(pairs)))]]
    images, captions, poisoned = pairs.images.clone(), pairs.captions.clone(), pairs.poisoned.clone()
    images[chosen] = add_trigger(images[chosen], pixels)
    captions[chosen] = caption_ids(torch.full_like(chosen, target_digit), pairs.styles[chosen])
    poisoned[chosen] = True
    return PairSet(images, captions, pairs.digits.clone(), pairs.styles.clone(), poisoned)


def load_pairs(split_seed: int) -> dict:
    """{"train": PairSet, "test": PairSet}: the MiniCanvas split (1437 / 360 digits, each in 4 styles)."""
    return {name: pair_set(split) for name, split in load_data(split_seed).items()}
