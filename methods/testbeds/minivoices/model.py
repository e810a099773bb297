"""MiniVoices' model side: a real transformers feature extractor and audio classifier.

- The tiny model is a `WhisperForAudioClassification` (a Whisper encoder: two 1-D convolutions, sinusoid-initialised
  positions, pre-LN transformer layers, mean-pooled into a projector and a linear classifier) built from a
  `WhisperConfig`; its features come from a real `WhisperFeatureExtractor` (log-mel with Whisper's normalisation,
  computed with `transformers.audio_utils`), here with 40 mel bins and 1 s clips.
- A real checkpoint (`--model`) is any `AutoModelForAudioClassification` folder or hub id with its feature extractor
  (a wav2vec2 / HuBERT keyword model, an AST, a Whisper classifier); its classification head is replaced for the
  testbed's keywords (`ignore_mismatched_sizes`), as UnSLU-Bench fine-tunes wav2vec2 on each dataset.

Checkpoints are written with `save_pretrained` (safetensors) and read back with `use_safetensors=True`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .config import MiniVoicesConfig


def build_feature_extractor(cfg: MiniVoicesConfig):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=cfg.n_mels, sampling_rate=cfg.sampling_rate, hop_length=cfg.hop_length,
                                   chunk_length=max(1, int(round(cfg.clip_seconds))), n_fft=400)


def tiny_config(cfg: MiniVoicesConfig, keywords):
    from transformers import WhisperConfig

    frames = cfg.clip_samples // cfg.hop_length  # Whisper's encoder takes exactly 2 x max_source_positions frames
    return WhisperConfig(
        num_mel_bins=cfg.n_mels, d_model=cfg.d_model, encoder_layers=cfg.layers, encoder_attention_heads=cfg.heads,
        encoder_ffn_dim=cfg.ffn_dim, max_source_positions=frames // 2, classifier_proj_size=cfg.d_model,
        # the decoder is unused by the classifier; keep it minimal and its special tokens inside its vocabulary
        decoder_layers=1, decoder_attention_heads=cfg.heads, decoder_ffn_dim=cfg.ffn_dim, vocab_size=8,
        max_target_positions=4, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        num_labels=len(keywords), id2label=dict(enumerate(keywords)), label2id={k: i for i, k in enumerate(keywords)},
    )


def build_tiny_classifier(cfg: MiniVoicesConfig, keywords, seed: int):
    """A freshly initialised tiny classifier (the same weights for the same seed)."""
    from transformers import WhisperForAudioClassification

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return WhisperForAudioClassification(tiny_config(cfg, keywords))


def load_pretrained(source: str, keywords):
    """A real audio-classification checkpoint and its feature extractor, its head resized to the keywords."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    feature_extractor = AutoFeatureExtractor.from_pretrained(source)
    model = AutoModelForAudioClassification.from_pretrained(
        source, num_labels=len(keywords), id2label=dict(enumerate(keywords)),
        label2id={k: i for i, k in enumerate(keywords)}, ignore_mismatched_sizes=True, use_safetensors=True)
    return model, feature_extractor


def fresh_like(model, seed: int):
    """A randomly initialised model of the same architecture and config (Bad Teaching's incompetent teacher,
    prune-and-regrow's regrowth initialisation)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return type(model)(model.config)


def save_checkpoint(model, feature_extractor, directory: Path) -> None:
    model.save_pretrained(str(directory), safe_serialization=True)
    feature_extractor.save_pretrained(str(directory))


def load_checkpoint(directory: Path, device):
    from transformers import AutoModelForAudioClassification

    model = AutoModelForAudioClassification.from_pretrained(str(directory), use_safetensors=True)
    return model.to(device).eval().requires_grad_(False)


def load_feature_extractor(directory: Path):
    from transformers import AutoFeatureExtractor

    return AutoFeatureExtractor.from_pretrained(str(directory))


def input_name(feature_extractor) -> str:
    """The model argument the feature extractor fills ("input_features" for Whisper / AST, "input_values" for
    wav2vec2 / HuBERT)."""
    return feature_extractor.model_input_names[0]


def extract_features(feature_extractor, clips: np.ndarray, sampling_rate: int, batch_size: int = 512) -> torch.Tensor:
    """The feature extractor on every clip (all clips have the same length, so no attention mask is needed)."""
    name, parts = input_name(feature_extractor), []
    for start in range(0, len(clips), batch_size):
        batch = [clip for clip in clips[start:start + batch_size]]
        out = feature_extractor(batch, sampling_rate=sampling_rate, padding="max_length", max_length=clips.shape[1],
                                truncation=True, return_tensors="pt")
        parts.append(out[name].float())
    return torch.cat(parts)


def sha256_of_checkpoint(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def describe(model) -> str:
    n = sum(p.numel() for p in model.parameters())
    return f"{type(model).__name__} ({n / 1e3:.0f}k parameters)" if n < 1e6 else f"{type(model).__name__} ({n / 1e6:.1f}M)"


def logits(model, name: str, inputs: torch.Tensor, batch_size: Optional[int] = None) -> torch.Tensor:
    """The classifier's logits for a batch of features (in chunks of `batch_size` without gradients when given)."""
    if batch_size is None:
        return model(**{name: inputs}).logits
    with torch.no_grad():
        return torch.cat([model(**{name: inputs[i:i + batch_size]}).logits for i in range(0, len(inputs), batch_size)])
