"""MiniCanvas: a miniature of UnlearnCanvas that needs no download and trains on CPU in about two minutes.

UnlearnCanvas (Zhang et al., 2024) fine-tunes Stable Diffusion on 60 painting styles x 20 objects and judges
generations with a ViT that has a style head and an object head. MiniCanvas keeps that structure at toy size:

- objects: the 10 digits of `sklearn.datasets.load_digits`, at their native 8x8, scaled to [-1, 1];
- styles: 4 deterministic renderings (plain, inverted, thick = 2x2 max-filter dilation, rotated 90 degrees);
- prompts: "a digit three in inverted style" from a 22-word vocabulary (word-level `PreTrainedTokenizerFast`);
- model: a tiny `CLIPTextModel` + `UNet2DConditionModel` trained from scratch with DDPM (text encoder jointly),
  sampled with DDIM (trailing spacing, eta 1, 10 steps, CFG 2);
- judge: a small CNN with a digit head and a style head, trained on the real train split;
- metrics: UA / IRA / CRA as in UnlearnCanvas, a Frechet distance on judge features, sampling time.

Settings follow the measured prototype in `minicanvas-feasibility.md`. Why the sampler is unusual: with the
default DDIM setup (leading spacing, eta 0) or many steps, this tiny epsilon-model collapses styles; eta 1, trailing
spacing and few steps are what work. Trained weights are cached as safetensors under
`$MMU_ATLAS_CACHE/minicanvas/<config hash>/` (default cache root `~/.cache/mmu-atlas`), so a machine trains once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import (
    DiffusionComponents,
    EraseRequest,
    SamplingSettings,
    make_generator,
    seed_everything,
    standard_sampler,
)
from .cache import cache_root, cached, config_hash

# The file a finished cache build writes last: its presence means the folder is complete.
CACHE_MARKER = "config.json"


# ----------------------------------------------------------------------------------------------------------
# Vocabulary and prompts
# ----------------------------------------------------------------------------------------------------------
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
STYLES = ("plain", "inverted", "thick", "rotated")
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
VOCAB = SPECIAL_TOKENS + ("a", "digit", "in", "style") + DIGITS + STYLES
MAX_PROMPT_TOKENS = 8  # "<bos> a digit three in plain style <eos>"


def full_prompt(digit: str, style: str) -> str:
    return f"a digit {digit} in {style} style"


def object_only_prompt(digit: str) -> str:
    """Style dropped: also a training prompt (attribute dropout), and the concept's own prompt."""
    return f"a digit {digit}"


def style_only_prompt(style: str) -> str:
    """Object dropped: a training prompt (attribute dropout); the 'neutral' version of an object prompt."""
    return f"a digit in {style} style"


def concept_axis(concept: str) -> str:
    """'object' for a digit word, 'style' for a style word; ValueError otherwise."""
    if concept in DIGITS:
        return "object"
    if concept in STYLES:
        return "style"
    raise ValueError(f"unknown concept {concept!r} for minicanvas; choose one of: {', '.join(DIGITS + STYLES)}")


def default_anchor(concept: str) -> str:
    """The concept a forgotten one is mapped to by UCE and CA.

    Testbed adaptation: the papers use a broader concept ("" or a superclass). Here the object-free prompt draws a
    random digit that is often the erased one (the feasibility study measured UA 0.73-0.94 across runs with it), so
    a fixed other concept of the same axis is the stable anchor: "eight" for digits, "plain" for styles.
    """
    if concept_axis(concept) == "object":
        return "eight" if concept != "eight" else "zero"
    return "plain" if concept != "plain" else "thick"


def build_erase_request(concept: str, anchor: Optional[str] = None) -> EraseRequest:
    """Prompts for erasing one digit or one style (see `EraseRequest` for the meaning of each list)."""
    axis = concept_axis(concept)
    anchor = anchor or default_anchor(concept)
    if concept_axis(anchor) != axis or anchor == concept:
        raise ValueError(f"anchor {anchor!r} must be another concept of the same axis as {concept!r}")
    if axis == "object":
        others = [d for d in DIGITS if d != concept]
        forget = [full_prompt(concept, s) for s in STYLES] + [object_only_prompt(concept)]
        neutral = [style_only_prompt(s) for s in STYLES] + [""]
        anchors = [full_prompt(anchor, s) for s in STYLES] + [object_only_prompt(anchor)]
        preserve = (
            [full_prompt(d, s) for d in others for s in STYLES]
            + [object_only_prompt(d) for d in others]
            + [style_only_prompt(s) for s in STYLES]
            + [""]
        )
        concept_prompt = object_only_prompt(concept)
    else:
        others = [s for s in STYLES if s != concept]
        forget = [full_prompt(d, concept) for d in DIGITS] + [style_only_prompt(concept)]
        neutral = [object_only_prompt(d) for d in DIGITS] + [""]
        anchors = [full_prompt(d, anchor) for d in DIGITS] + [style_only_prompt(anchor)]
        preserve = (
            [full_prompt(d, s) for d in DIGITS for s in others]
            + [style_only_prompt(s) for s in others]
            + [object_only_prompt(d) for d in DIGITS]
            + [""]
        )
        concept_prompt = style_only_prompt(concept)
    return EraseRequest(forget, neutral, anchors, preserve, concept_prompt)


def build_tokenizer():
    """A real `PreTrainedTokenizerFast` with a word-level model, built offline with the `tokenizers` library."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(VOCAB)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        model_max_length=MAX_PROMPT_TOKENS,
    )


# ----------------------------------------------------------------------------------------------------------
# Data: load_digits x 4 styles
# ----------------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------------
# Configuration (scale presets) and cache
# ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MiniCanvasConfig:
    """Everything that determines the trained testbed; its hash keys the cache."""

    scale: str = "ci"
    seed: int = 0  # base-model and judge training seed (run seeds do not retrain the testbed)
    split_seed: int = 0
    num_threads: int = 1  # fixed torch thread count: results are only bit-reproducible at a fixed count
    # text encoder (feasibility note: hidden 64, 2 layers, 4 heads, ffn 128)
    text_hidden_size: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate_size: int = 128
    # UNet (feasibility note: (16, 32), cross-attention only at 4x4; attention_head_dim is the head *count*)
    block_out_channels: tuple = (16, 32)
    attention_head_dim: int = 8
    norm_num_groups: int = 8
    # DDPM training
    train_steps: int = 1000
    batch_size: int = 128
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    ema_decay: float = 0.995
    p_drop_all: float = 0.1  # "" -> unconditional branch for CFG
    p_drop_object: float = 0.1  # "a digit in S style"
    p_drop_style: float = 0.1  # "a digit three"
    # sampler (see module docstring for why these values)
    sample_steps: int = 10
    guidance_scale: float = 2.0
    eta: float = 1.0
    # judge
    judge_epochs: int = 15
    judge_noise_std: float = 0.1
    # evaluation
    samples_per_prompt: int = 20

    def model_key(self) -> dict:
        """Fields that change the trained diffusion model (and the data it sees)."""
        skip = {"scale", "judge_epochs", "judge_noise_std", "samples_per_prompt", "sample_steps", "guidance_scale", "eta"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}

    def judge_key(self) -> dict:
        keys = ("seed", "split_seed", "num_threads", "judge_epochs", "judge_noise_std")
        return {k: getattr(self, k) for k in keys}


SCALES = {
    # ci: the feasibility defaults (~2 min training on CPU, 20 samples per prompt = 800 per evaluation)
    "ci": MiniCanvasConfig(),
    # full: 4x the UNet (reference-quality run in the note), longer training, 50 samples per prompt
    "full": MiniCanvasConfig(
        scale="full", block_out_channels=(32, 64), train_steps=1500, samples_per_prompt=50
    ),
}


def config_for(scale: str) -> MiniCanvasConfig:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of: {', '.join(SCALES)}")
    return SCALES[scale]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------
def text_encoder_config(cfg: MiniCanvasConfig) -> dict:
    return dict(
        vocab_size=len(VOCAB),
        hidden_size=cfg.text_hidden_size,
        intermediate_size=cfg.text_intermediate_size,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        max_position_embeddings=MAX_PROMPT_TOKENS,
        pad_token_id=VOCAB.index("<pad>"),
        bos_token_id=VOCAB.index("<bos>"),
        eos_token_id=VOCAB.index("<eos>"),
    )


def unet_config(cfg: MiniCanvasConfig) -> dict:
    return dict(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=list(cfg.block_out_channels),
        layers_per_block=1,
        # cross-attention only at the lowest resolution (4x4): self-attention at 8x8 dominates CPU cost
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
        cross_attention_dim=cfg.text_hidden_size,
        attention_head_dim=cfg.attention_head_dim,  # diffusers naming bug: this is the number of heads
        norm_num_groups=cfg.norm_num_groups,
    )


NOISE_SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon")


def build_models(text_cfg: dict, unet_cfg: dict):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**text_cfg)), UNet2DConditionModel(**unet_cfg)


def build_schedulers():
    """DDPM for training; DDIM with *trailing* spacing for sampling (inherits clip_sample=True, which helps here)."""
    from diffusers import DDIMScheduler, DDPMScheduler

    ddpm = DDPMScheduler(**NOISE_SCHEDULER_CONFIG)
    ddim = DDIMScheduler.from_config(ddpm.config, timestep_spacing="trailing")
    return ddpm, ddim


class Judge(nn.Module):
    """Small CNN with a digit head and a style head; `features` (penultimate layer) feed the Frechet distance."""

    def __init__(self, feature_dim: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, feature_dim), nn.ReLU(),
        )
        self.digit_head = nn.Linear(feature_dim, len(DIGITS))
        self.style_head = nn.Linear(feature_dim, len(STYLES))

    def forward(self, images: torch.Tensor):
        features = self.body(images)
        return self.digit_head(features), self.style_head(features), features

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch: int = 2048):
        """(digit predictions, style predictions, features) for a batch of images in [-1, 1]."""
        digits, styles, feats = [], [], []
        for start in range(0, len(images), batch):
            d, s, f = self(images[start : start + batch].float().cpu())
            digits.append(d.argmax(1))
            styles.append(s.argmax(1))
            feats.append(f)
        return torch.cat(digits), torch.cat(styles), torch.cat(feats)


# ----------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------
def _prompt_table(tokenizer) -> torch.Tensor:
    """Token ids for every (digit, style, variant): variants = full, object dropped, style dropped, empty."""
    from ..common import tokenize

    table = torch.zeros(len(DIGITS), len(STYLES), 4, MAX_PROMPT_TOKENS, dtype=torch.long)
    for d, digit in enumerate(DIGITS):
        for s, style in enumerate(STYLES):
            variants = [full_prompt(digit, style), style_only_prompt(style), object_only_prompt(digit), ""]
            table[d, s] = tokenize(tokenizer, variants)
    return table


def _cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def train_base_model(cfg: MiniCanvasConfig, data: dict, log: Callable[[str], None] = print) -> dict:
    """Train text encoder + UNet jointly with the DDPM loss; return EMA state dicts and training stats.

    Prompt dropout (feasibility note): 10% "" (CFG's unconditional branch), 10% object dropped
    ("a digit in S style"), 10% style dropped ("a digit three"), 70% the full prompt.
    """
    torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    text_encoder, unet = build_models(text_encoder_config(cfg), unet_config(cfg))
    ddpm, _ = build_schedulers()
    tokenizer = build_tokenizer()
    table = _prompt_table(tokenizer)
    generator = make_generator(cfg.seed + 1)  # training stream, independent from the judge's

    train = data["train"]
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _cosine_with_warmup(step, cfg.warmup_steps, cfg.train_steps)
    )
    ema_params = [p.detach().clone() for p in params]
    variant_probs = torch.tensor(
        [1 - cfg.p_drop_all - cfg.p_drop_object - cfg.p_drop_style, cfg.p_drop_object, cfg.p_drop_style, cfg.p_drop_all]
    )

    unet.train()
    text_encoder.train()
    start, losses = time.perf_counter(), []
    for step in range(cfg.train_steps):
        index = torch.randint(len(train.images), (cfg.batch_size,), generator=generator)
        variant = torch.multinomial(variant_probs, cfg.batch_size, replacement=True, generator=generator)
        input_ids = table[train.digits[index], train.styles[index], variant]
        clean = train.images[index]
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, ddpm.config.num_train_timesteps, (cfg.batch_size,), generator=generator)
        noisy = ddpm.add_noise(clean, noise, timesteps)

        prediction = unet(noisy, timesteps, encoder_hidden_states=text_encoder(input_ids)[0]).sample
        loss = F.mse_loss(prediction, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - cfg.ema_decay)
        losses.append(loss.item())
        if (step + 1) % 200 == 0:
            log(f"[minicanvas] base model step {step + 1}/{cfg.train_steps} loss {np.mean(losses[-200:]):.4f}")

    with torch.no_grad():
        for p, ema in zip(params, ema_params):
            p.copy_(ema)
    return {
        "unet": unet.state_dict(),
        "text_encoder": text_encoder.state_dict(),
        "train_time_s": time.perf_counter() - start,
        "final_loss": float(np.mean(losses[-100:])),
    }


def train_judge(cfg: MiniCanvasConfig, data: dict, log: Callable[[str], None] = print) -> dict:
    """Train the judge on real train images (with small Gaussian noise augmentation); report held-out accuracy."""
    torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed + 100)
    judge = Judge()
    generator = make_generator(cfg.seed + 101)
    optimizer = torch.optim.Adam(judge.parameters(), lr=1e-3)
    train, test = data["train"], data["test"]
    start = time.perf_counter()
    judge.train()
    for epoch in range(cfg.judge_epochs):
        order = torch.randperm(len(train.images), generator=generator)
        for begin in range(0, len(order), 128):
            index = order[begin : begin + 128]
            images = train.images[index] + cfg.judge_noise_std * torch.randn(
                train.images[index].shape, generator=generator
            )
            digit_logits, style_logits, _ = judge(images)
            loss = F.cross_entropy(digit_logits, train.digits[index]) + F.cross_entropy(style_logits, train.styles[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    judge.eval()
    digits, styles, _ = judge.predict(test.images)
    stats = {
        "object_accuracy": float((digits == test.digits).float().mean()),
        "style_accuracy": float((styles == test.styles).float().mean()),
        "train_time_s": time.perf_counter() - start,
        "n_test_images": len(test.images),
    }
    log(f"[minicanvas] judge held-out accuracy: object {stats['object_accuracy']:.3f}, style {stats['style_accuracy']:.3f}")
    return {"state": judge.state_dict(), **stats}


# ----------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------
def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (the FID formula on judge features)."""
    from scipy import linalg

    a, b = features_a.double().numpy(), features_b.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    offset = np.eye(cov_a.shape[0]) * 1e-6  # keeps sqrtm stable when some features are always zero (ReLU)
    covmean = np.real(linalg.sqrtm((cov_a + offset) @ (cov_b + offset)))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))


# ----------------------------------------------------------------------------------------------------------
# The testbed object
# ----------------------------------------------------------------------------------------------------------
@dataclass
class MiniCanvas:
    """A loaded testbed: base components, judge, data and metric code."""

    config: MiniCanvasConfig
    components: DiffusionComponents
    judge: Judge
    data: dict
    model_dir: Path
    judge_dir: Path
    model_info: dict = field(default_factory=dict)
    judge_info: dict = field(default_factory=dict)
    _real_features: Optional[torch.Tensor] = None

    concepts = DIGITS + STYLES

    # -- prompts -------------------------------------------------------------------------------------------
    def erase_request(self, concept: str, anchor: Optional[str] = None) -> EraseRequest:
        return build_erase_request(concept, anchor)

    def evaluation_prompts(self, samples_per_prompt: Optional[int] = None):
        """Every (digit, style) prompt, `samples_per_prompt` times, with labels (the UnlearnCanvas answer set)."""
        n = samples_per_prompt or self.config.samples_per_prompt
        prompts, digits, styles = [], [], []
        for d, digit in enumerate(DIGITS):
            for s, style in enumerate(STYLES):
                prompts += [full_prompt(digit, style)] * n
                digits += [d] * n
                styles += [s] * n
        return prompts, torch.tensor(digits), torch.tensor(styles)

    def default_sample_fn(self, components: Optional[DiffusionComponents] = None):
        components = components or self.components
        return standard_sampler(components)

    # -- metrics -------------------------------------------------------------------------------------------
    def real_features(self) -> torch.Tensor:
        if self._real_features is None:
            self._real_features = self.judge.predict(self.data["test"].images)[2]
        return self._real_features

    def evaluate(self, sample_fn, forget: str, seed: int = 0, samples_per_prompt: Optional[int] = None) -> dict:
        """UnlearnCanvas-style metrics for samples drawn by `sample_fn(prompts, generator)`.

        UA: share of forget-concept prompts whose samples the judge does *not* read as the concept.
        IRA: judge accuracy on the same axis for prompts of the other concepts.
        CRA: judge accuracy on the other axis for prompts of the other concepts.
        FD: Frechet distance between judge penultimate features of all samples and of the real test images.
        """
        axis = concept_axis(forget)
        prompts, digit_labels, style_labels = self.evaluation_prompts(samples_per_prompt)
        generator = make_generator(seed)
        start = time.perf_counter()
        images = sample_fn(prompts, generator).float().cpu().clamp(-1, 1)
        sampling_time = time.perf_counter() - start
        digit_pred, style_pred, features = self.judge.predict(images)
        digit_ok = (digit_pred == digit_labels).float()
        style_ok = (style_pred == style_labels).float()

        if axis == "object":
            forget_mask = digit_labels == DIGITS.index(forget)
            same_axis_ok, other_axis_ok = digit_ok, style_ok
        else:
            forget_mask = style_labels == STYLES.index(forget)
            same_axis_ok, other_axis_ok = style_ok, digit_ok
        retain_mask = ~forget_mask
        per_digit = {digit: float(digit_ok[digit_labels == d].mean()) for d, digit in enumerate(DIGITS)}
        per_style = {style: float(style_ok[style_labels == s].mean()) for s, style in enumerate(STYLES)}
        return {
            "UA": float(1.0 - same_axis_ok[forget_mask].mean()),
            "IRA": float(same_axis_ok[retain_mask].mean()),
            "CRA": float(other_axis_ok[retain_mask].mean()),
            "FD": frechet_distance(features, self.real_features()),
            "forget_accuracy": float(same_axis_ok[forget_mask].mean()),
            "forget_other_axis_accuracy": float(other_axis_ok[forget_mask].mean()),
            "object_accuracy": float(digit_ok.mean()),
            "style_accuracy": float(style_ok.mean()),
            "per_digit_accuracy": per_digit,
            "per_style_accuracy": per_style,
            "sampling_time_s": sampling_time,
            "n_samples": len(prompts),
            "_images": images,  # kept for sample grids; stripped before writing JSON
        }


# ----------------------------------------------------------------------------------------------------------
# Loading (train once, then load from the safetensors cache)
# ----------------------------------------------------------------------------------------------------------
def _save_base_model(cfg: MiniCanvasConfig, data: dict, log) -> Callable[[Path], None]:
    from safetensors.torch import save_file

    def build(directory: Path) -> None:
        log(f"[minicanvas] training the base model ({cfg.scale} scale); this happens once per machine")
        trained = train_base_model(cfg, data, log)
        save_file({k: v.contiguous() for k, v in trained["unet"].items()}, str(directory / "unet.safetensors"))
        save_file(
            {k: v.contiguous() for k, v in trained["text_encoder"].items()}, str(directory / "text_encoder.safetensors")
        )
        meta = {
            "testbed_config": dataclasses.asdict(cfg),
            "unet_config": unet_config(cfg),
            "text_encoder_config": text_encoder_config(cfg),
            "vocab": list(VOCAB),
            "noise_scheduler_config": NOISE_SCHEDULER_CONFIG,
            "train_time_s": trained["train_time_s"],
            "final_loss": trained["final_loss"],
        }
        (directory / "config.json").write_text(json.dumps(meta, indent=2, default=list))

    return build


def _save_judge(cfg: MiniCanvasConfig, data: dict, log) -> Callable[[Path], None]:
    from safetensors.torch import save_file

    def build(directory: Path) -> None:
        trained = train_judge(cfg, data, log)
        save_file({k: v.contiguous() for k, v in trained.pop("state").items()}, str(directory / "judge.safetensors"))
        (directory / "config.json").write_text(json.dumps({"judge_config": cfg.judge_key(), **trained}, indent=2))

    return build


def load_minicanvas(
    scale: str = "ci", device: str | torch.device = "cpu", log: Callable[[str], None] = print, **overrides
) -> MiniCanvas:
    """Load (training on first use) the MiniCanvas testbed at a scale ('ci' or 'full')."""
    from safetensors.torch import load_file

    cfg = dataclasses.replace(config_for(scale), **overrides) if overrides else config_for(scale)
    torch.set_num_threads(cfg.num_threads)
    device = torch.device(device)
    data = load_data(cfg.split_seed)
    root = cache_root() / "minicanvas"
    model_dir = cached(root / config_hash(cfg.model_key()), _save_base_model(cfg, data, log), CACHE_MARKER)
    judge_dir = cached(root / ("judge-" + config_hash(cfg.judge_key())), _save_judge(cfg, data, log), CACHE_MARKER)

    model_info = json.loads((model_dir / "config.json").read_text())
    text_encoder, unet = build_models(model_info["text_encoder_config"], model_info["unet_config"])
    unet.load_state_dict(load_file(str(model_dir / "unet.safetensors")))
    text_encoder.load_state_dict(load_file(str(model_dir / "text_encoder.safetensors")))
    unet.to(device).eval().requires_grad_(False)
    text_encoder.to(device).eval().requires_grad_(False)
    _, ddim = build_schedulers()

    judge = Judge()
    judge.load_state_dict(load_file(str(judge_dir / "judge.safetensors")))
    judge.eval().requires_grad_(False)
    judge_info = json.loads((judge_dir / "config.json").read_text())
    judge_info["sha256"] = sha256_of(judge_dir / "judge.safetensors")

    components = DiffusionComponents(
        unet=unet,
        text_encoder=text_encoder,
        tokenizer=build_tokenizer(),
        scheduler=ddim,
        sample_shape=(1, 8, 8),
        sampling=SamplingSettings(cfg.sample_steps, cfg.guidance_scale, cfg.eta),
        device=device,
    )
    return MiniCanvas(cfg, components, judge, data, model_dir, judge_dir, model_info, judge_info)
