"""MiniCanvas' models: a tiny `CLIPTextModel` + `UNet2DConditionModel` built from configs, the DDPM / DDIM schedulers,
the CNN judge, and the real-model path (Stable Diffusion 1.x components from a local folder or hub id)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ...t2i.diffusion import DiffusionComponents, SamplingSettings
from .config import MiniCanvasConfig
from .prompts import DIGITS, MAX_PROMPT_TOKENS, STYLES, VOCAB


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


SD_RETAIN_PROMPTS = ["a photo of a dog", "a painting of a lighthouse by the sea"]


class ModelLoadError(ValueError):
    """The --model path or hub id could not be loaded (reported by the CLI as one line, exit code 2)."""


def load_stable_diffusion(model: str, device: torch.device) -> DiffusionComponents:
    """Components of a Stable Diffusion 1.x pipeline (local path or hub id) with a DDIM sampler."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    dtype = torch.float32  # training methods (ESD, CA) need fp32 weights
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            model, dtype=dtype, safety_checker=None, requires_safety_checker=False
        )
    except (OSError, ValueError) as error:  # missing path, no network for a hub id, not a diffusers folder
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"cannot load Stable Diffusion from {model!r}: {first_line}") from error
    pipe.to(device)
    pipe.text_encoder.requires_grad_(False)
    pipe.vae.requires_grad_(False)
    pipe.unet.requires_grad_(False)
    height = pipe.unet.config.sample_size  # 64 latents = 512 px for SD 1.x
    return DiffusionComponents(
        unet=pipe.unet,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        scheduler=DDIMScheduler.from_config(pipe.scheduler.config),
        sample_shape=(pipe.unet.config.in_channels, height, height),
        sampling=SamplingSettings(num_inference_steps=50, guidance_scale=7.5, eta=0.0),
        vae=pipe.vae,
        device=device,
        max_batch=4,
    )


@torch.no_grad()
def decode_latents(components: DiffusionComponents, latents: torch.Tensor) -> torch.Tensor:
    """VAE-decode SD latents to images in [-1, 1] (CPU)."""
    images = []
    for chunk in latents.split(4):
        images.append(components.vae.decode(chunk / components.vae.config.scaling_factor).sample.float().cpu())
    return torch.cat(images).clamp(-1, 1)
