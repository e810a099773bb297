"""MiniCLIP's model: a tiny `transformers.CLIPModel` built from configs (ViT patches on the 8x8 single-channel
MiniCanvas images, the MiniCanvas word-level tokenizer), the zero-shot heads of each label space, and the real-model
path (a CLIP checkpoint folder or hub id with its processor and ImageNet-style class prompts)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..minicanvas.prompts import CORE_MAX_TOKENS as MAX_PROMPT_TOKENS  # MiniCLIP keeps the 22-word vocabulary
from ..minicanvas.prompts import CORE_VOCAB as VOCAB
from ..minicanvas.prompts import DIGITS, STYLES, object_only_prompt, style_only_prompt
from ..minicanvas.prompts import build_tokenizer as build_minicanvas_tokenizer
from .config import MiniCLIPConfig
from .data import CAPTIONS

EOT = "<eot>"  # CLIP's end-of-text token is its highest id; the pooled text feature is read there


class ModelLoadError(ValueError):
    """A --model that cannot be loaded as a CLIP checkpoint (one line)."""


def build_tokenizer():
    """The MiniCanvas word-level tokenizer with CLIP's end-of-text convention: an `<eot>` token with the highest id
    closes every caption (MiniCanvas' `<eos>` has id 2, which transformers' CLIPTextTransformer treats as the legacy
    "take the argmax id" pooling; with `<eot>` last and highest both pooling rules pick the same position)."""
    from tokenizers import processors

    tokenizer = build_minicanvas_tokenizer(VOCAB, MAX_PROMPT_TOKENS)
    tokenizer.add_special_tokens({"eos_token": EOT})
    bos, eot = tokenizer.convert_tokens_to_ids("<bos>"), tokenizer.convert_tokens_to_ids(EOT)
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"<bos> $A {EOT}", special_tokens=[("<bos>", bos), (EOT, eot)])
    return tokenizer


def clip_config(cfg: MiniCLIPConfig):
    from transformers import CLIPConfig

    text = dict(vocab_size=len(VOCAB) + 1, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, max_position_embeddings=MAX_PROMPT_TOKENS,
                pad_token_id=VOCAB.index("<pad>"), bos_token_id=VOCAB.index("<bos>"), eos_token_id=len(VOCAB),
                projection_dim=cfg.projection_dim)
    vision = dict(hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.layers,
                  num_attention_heads=cfg.heads, num_channels=1, image_size=8, patch_size=cfg.patch_size,
                  projection_dim=cfg.projection_dim)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim)


def build_model(cfg: MiniCLIPConfig):
    from transformers import CLIPModel

    return CLIPModel(clip_config(cfg))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- encoding --------------------------------------------------------------------------------------------------------

class Encoder:
    """Turns MiniCanvas images and texts into model inputs for the tiny model or a real CLIP checkpoint.

    The tiny model takes the 8x8 single-channel images as they are; a real checkpoint gets them as RGB in [0, 1]
    through its image processor (resized and normalised as it was trained). Texts go through the model's tokenizer,
    padded to a fixed length."""

    def __init__(self, tokenizer, device, image_processor=None, max_length: int = MAX_PROMPT_TOKENS):
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.image_processor = image_processor
        self.max_length = max_length

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        if self.image_processor is None:
            return images.to(self.device)
        rgb = ((images.float().clamp(-1, 1) + 1) / 2).repeat(1, 3, 1, 1)
        processed = self.image_processor(images=list(rgb), do_rescale=False, return_tensors="pt")
        return processed["pixel_values"].to(self.device)

    def texts(self, texts: Sequence[str]) -> dict:
        encoded = self.tokenizer(list(texts), padding="max_length", max_length=self.max_length, truncation=True,
                                 return_tensors="pt")
        return {"input_ids": encoded["input_ids"].to(self.device),
                "attention_mask": encoded["attention_mask"].to(self.device)}


def image_features(model, pixel_values: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    features = model.get_image_features(pixel_values=pixel_values)
    features = getattr(features, "pooler_output", features)
    return torch.nn.functional.normalize(features, dim=-1) if normalize else features


def text_features(model, tokens: dict, normalize: bool = True) -> torch.Tensor:
    features = model.get_text_features(**tokens)
    features = getattr(features, "pooler_output", features)
    return torch.nn.functional.normalize(features, dim=-1) if normalize else features


# --- zero-shot heads -------------------------------------------------------------------------------------------------

AXES = ("digit", "style", "caption")


def class_names(axis: str) -> tuple:
    return {"digit": DIGITS, "style": STYLES, "caption": CAPTIONS}[axis]


def tiny_templates(axis: str) -> list:
    """Class prompts of an axis for the tiny model: "a digit three" (digits), "a digit in inverted style" (styles),
    the full caption (captions); one template per class."""
    if axis == "digit":
        return [[object_only_prompt(digit)] for digit in DIGITS]
    if axis == "style":
        return [[style_only_prompt(style)] for style in STYLES]
    return [[caption] for caption in CAPTIONS]


def real_templates(axis: str) -> list:
    """ImageNet-style class prompts for a real CLIP checkpoint (CLIP's MNIST prompt for the digits)."""
    if axis == "digit":
        return [[f'a photo of the number: "{digit}".'] for digit in DIGITS]
    if axis == "style":
        return [[f"a photo of a {style} digit."] for style in STYLES]
    return [[f'a photo of the number: "{digit}", {style}.'] for digit in DIGITS for style in STYLES]


def zero_shot_head(model, encoder: Encoder, templates: list) -> torch.Tensor:
    """(classes, dim) normalised class embeddings: each class's template embeddings normalised, averaged and
    normalised again (task_vectors' build_classification_head; the logit scale is applied by the caller)."""
    rows = []
    for prompts in templates:
        embeddings = text_features(model, encoder.texts(prompts))
        rows.append(torch.nn.functional.normalize(embeddings.mean(dim=0), dim=-1))
    return torch.stack(rows)


# --- real checkpoints ------------------------------------------------------------------------------------------------

def check_model_argument(model: str) -> None:
    path = Path(model)
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"--model {model!r} is a file; give a CLIP checkpoint folder or a hub id (owner/name)")
        return
    if path.is_absolute() or re.fullmatch(r"[\w.-]+/[\w.-]+", model) is None:
        raise ModelLoadError(f"--model {model!r} is neither a local folder nor a hub id (owner/name)")


def load_real_clip(model: str, device):
    """(CLIPModel, tokenizer, image processor) from a local folder or hub id; ModelLoadError otherwise."""
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    try:
        clip = CLIPModel.from_pretrained(str(model), use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(str(model))
        image_processor = AutoImageProcessor.from_pretrained(str(model))
    except (OSError, ValueError) as error:
        text = str(error).strip().splitlines()
        raise ModelLoadError(f"cannot load a CLIP checkpoint from --model {model!r}: "
                             f"{text[0] if text else type(error).__name__}") from None
    return clip.to(device).eval().requires_grad_(False), tokenizer, image_processor


def max_text_length(tokenizer, default: Optional[int] = None) -> int:
    length = getattr(tokenizer, "model_max_length", None)
    return int(length) if isinstance(length, int) and 0 < length < 10_000 else (default or 77)
