"""MiniProfiles' model side: the word-level tokenizer, a real `LlavaProcessor`, the tiny `LlavaForConditionalGeneration`
(a CLIP vision tower + a Llama) built from configs, checkpoint loading (safetensors only), and the encoder that
turns questions into padded model inputs (for the tiny processor and a real LLaVA processor alike).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ...core.cache import sha256_file
from .config import MiniProfilesConfig
from .data import IMAGE_TOKEN, QA, build_vocab, format_prompt, refusal_vocab


def build_tokenizer(model_max_length: int = 64):
    """A word-level `PreTrainedTokenizerFast` built offline; it adds <bos> (answers get <eos> from the encoder).

    Its vocabulary is the trained vocabulary (`build_vocab`) followed by the refusal words (`refusal_vocab`), which
    the tiny model is not built with (see `build_model_config`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(build_vocab() + refusal_vocab())}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])])
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        # LlavaProcessor reads tokenizer.image_token
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        model_max_length=model_max_length,
    )


def build_processor(cfg: MiniProfilesConfig):
    """A real LlavaProcessor. Gotchas 1 and 5: one extra image token for CLIP's CLS, explicit 32 px sizes."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": cfg.image_size},
        crop_size={"height": cfg.image_size, "width": cfg.image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        patch_size=cfg.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


def build_model_config(cfg: MiniProfilesConfig, tokenizer):
    """Tiny CLIP vision tower + tiny Llama in a LlavaConfig (vision_feature_layer -1, untied embeddings)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=cfg.vision_hidden_size,
        intermediate_size=cfg.vision_intermediate_size,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        projection_dim=cfg.vision_hidden_size,
    )
    # The trained vocabulary only: the refusal words the tokenizer appends get embedding rows from the cards that
    # train towards them, so the vanilla model (and every result scored on it) is the same with or without them.
    text = LlamaConfig(
        vocab_size=len(build_vocab()),
        hidden_size=cfg.text_hidden_size,
        intermediate_size=cfg.text_intermediate_size,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_heads,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        image_seq_length=(cfg.image_size // cfg.patch_size) ** 2,
        vision_feature_layer=-1,  # -2 (the LLaVA-1.5 default) leaves the last CLIP layer without gradient
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )


def build_tiny_llava(cfg: MiniProfilesConfig, tokenizer, seed: int):
    """A randomly initialised tiny LlavaForConditionalGeneration (seeded) with greedy-decoding defaults."""
    from transformers import LlavaForConditionalGeneration

    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(build_model_config(cfg, tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def load_checkpoint(path, device: torch.device, dtype: Optional[torch.dtype] = None):
    """LlavaForConditionalGeneration from a directory or hub id, safetensors weights only."""
    from transformers import LlavaForConditionalGeneration

    kwargs = {"use_safetensors": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = LlavaForConditionalGeneration.from_pretrained(str(path), **kwargs)
    return model.to(device).eval()


@dataclass(frozen=True)
class Encoded:
    """Token ids of one question: prompt (image tokens expanded) and answer (+ eos); options for MC scoring."""

    qa: QA
    prompt_ids: tuple
    answer_ids: tuple  # answer tokens + eos: the training target
    option_ids: tuple = ()  # per option: its tokens (no eos), scored by likelihood


class Encoder:
    """Turns QA items into padded model inputs. Labels are -100 except on answer tokens (MLLMU-Bench `ans_only`)."""

    def __init__(self, processor, images: np.ndarray, device: torch.device, prompt_style: str = "plain"):
        self.processor = processor
        self.prompt_style = prompt_style
        self.tokenizer = processor.tokenizer
        self.images = images
        self.device = device
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        self.eos_id = self.tokenizer.eos_token_id
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        # How many placeholder tokens the processor expands one <image> into (16 here, 576 for LLaVA-1.5).
        probe = processor(text=IMAGE_TOKEN, images=images[0, 0], return_tensors="pt")
        self.image_tokens = int((probe["input_ids"][0] == self.image_token_id).sum())
        self._pixels = {}  # (face, view) -> processed tensor; kept only when small (a real LLaVA resizes to 336 px)
        self._cache_pixels = probe["pixel_values"][0].numel() <= 3 * 64 * 64

    def _ids(self, texts: Sequence[str]) -> list:
        return self.tokenizer(list(texts))["input_ids"]

    def _expand(self, ids: Sequence[int]) -> tuple:
        out = []
        for token in ids:
            out.extend([token] * self.image_tokens if token == self.image_token_id else [token])
        return tuple(out)

    def _answer_ids(self, prompt_ids: Sequence[int], full_ids: Sequence[int], answer: str) -> tuple:
        if list(full_ids[: len(prompt_ids)]) == list(prompt_ids):
            return tuple(full_ids[len(prompt_ids) :])
        return tuple(self.tokenizer(" " + answer, add_special_tokens=False)["input_ids"])  # boundary merged

    def encode(self, items: Sequence[QA]) -> list:
        prompts = [format_prompt(q.question, q.visual, self.prompt_style) for q in items]
        prompt_ids = self._ids(prompts)
        full_ids = self._ids([p + " " + q.answer for p, q in zip(prompts, items)])
        option_texts = [p + " " + o for p, q in zip(prompts, items) for o in q.options]
        option_full = iter(self._ids(option_texts)) if option_texts else iter(())
        encoded = []
        for q, p_ids, f_ids in zip(items, prompt_ids, full_ids):
            answer = self._answer_ids(p_ids, f_ids, q.answer) + (self.eos_id,)
            options = tuple(self._answer_ids(p_ids, next(option_full), o) for o in q.options)
            encoded.append(Encoded(q, self._expand(p_ids), answer, options))
        return encoded

    def with_answers(self, rows: Sequence[Encoded], answers: Sequence[str]) -> list:
        """The rows with their training targets replaced by new answer texts (e.g. refusals), tokenized in context."""
        prompts = [format_prompt(row.qa.question, row.qa.visual, self.prompt_style) for row in rows]
        prompt_ids = self._ids(prompts)
        full_ids = self._ids([p + " " + answer for p, answer in zip(prompts, answers)])
        return [dataclasses.replace(row, answer_ids=self._answer_ids(p, f, answer) + (self.eos_id,))
                for row, p, f, answer in zip(rows, prompt_ids, full_ids, answers)]  # fmt: skip

    def pixel_values(self, face: int, view: int) -> torch.Tensor:
        key = (face, view)
        if key in self._pixels:
            return self._pixels[key]
        pixels = self.processor.image_processor(images=self.images[face, view], return_tensors="pt")["pixel_values"][0]
        if self._cache_pixels:
            self._pixels[key] = pixels
        return pixels

    def _views(self, rows: Sequence[Encoded], train_views: Sequence[int], generator) -> list:
        """The view of each visual row: its own, or a random training view (drawn from `generator`)."""
        views = []
        for row in rows:
            if row.qa.view >= 0:
                views.append(row.qa.view)
            else:
                pick = int(torch.randint(len(train_views), (1,), generator=generator)) if generator is not None else 0
                views.append(train_views[pick])
        return views

    def batch(self, rows: Sequence[Encoded], targets: Optional[Sequence[tuple]] = None,
              train_views: Sequence[int] = (0,), generator: Optional[torch.Generator] = None,
              left_pad: bool = False) -> dict:  # fmt: skip
        """Right-padded prompt + target (default: the answer) with labels on the target tokens.

        `targets` replaces the answers (MC options). Rows without an image carry no pixel values: `pixel_values`
        holds the images of the visual rows in row order, which is what LLaVA's masked scatter expects (gotcha 3).
        With `left_pad=True` and empty targets it builds generation prompts.
        """
        targets = [row.answer_ids for row in rows] if targets is None else targets
        sequences = [tuple(row.prompt_ids) + tuple(target) for row, target in zip(rows, targets)]
        length = max(len(s) for s in sequences)
        input_ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), length), -100, dtype=torch.long)
        attention = torch.zeros((len(rows), length), dtype=torch.long)
        for i, (seq, target) in enumerate(zip(sequences, targets)):
            start = length - len(seq) if left_pad else 0
            input_ids[i, start : start + len(seq)] = torch.tensor(seq)
            attention[i, start : start + len(seq)] = 1
            if len(target):
                labels[i, start + len(seq) - len(target) : start + len(seq)] = torch.tensor(target)
        batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
        visual = [row for row in rows if row.qa.visual]
        if visual:
            views = self._views(visual, train_views, generator)
            batch["pixel_values"] = torch.stack([self.pixel_values(r.qa.face, v) for r, v in zip(visual, views)])
        return {k: v.to(self.device) for k, v in batch.items()}


def sha256_of_checkpoint(directory: Path) -> str:
    """sha256 of the safetensors weights (of the sorted shard digests when the checkpoint is sharded)."""
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors file in {directory}")
    digests = [sha256_file(path) for path in files]
    return digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()


def _dtype_for(source: str, device: torch.device):
    return None if source == "tiny" else _pretrained_dtype(device)


def _pretrained_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32
