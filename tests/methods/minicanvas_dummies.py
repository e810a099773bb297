"""Tiny random MiniCanvas-shaped components built from configs (like diffusers' get_dummy_components)."""

from pathlib import Path

import torch

from methods.t2i.diffusion import DiffusionComponents, SamplingSettings
from methods.testbeds import minicanvas

REPO_ROOT = Path(__file__).resolve().parents[2]


def get_dummy_components(seed: int = 0, hidden_size: int = 32) -> DiffusionComponents:
    """Randomly initialised tiny text encoder + UNet (cross-attention at 4x4), MiniCanvas tokenizer, DDIM."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(minicanvas.VOCAB),
            hidden_size=hidden_size,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=minicanvas.MAX_PROMPT_TOKENS,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=hidden_size,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    text_encoder.eval().requires_grad_(False)
    unet.eval().requires_grad_(False)
    _, ddim = minicanvas.build_schedulers()
    return DiffusionComponents(
        unet=unet,
        text_encoder=text_encoder,
        tokenizer=minicanvas.build_tokenizer(),
        scheduler=ddim,
        sample_shape=(1, 8, 8),
        sampling=SamplingSettings(num_inference_steps=4, guidance_scale=2.0, eta=1.0),
    )
