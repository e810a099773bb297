"""The Stable Diffusion path (`--model`), exercised on a tiny randomly initialised SD-shaped pipeline saved locally.

Real SD 1.x weights cannot be downloaded here; this checks loading with `StableDiffusionPipeline.from_pretrained`,
latent-space methods, VAE decoding and the outputs, with each method's official defaults shortened for speed.
"""

import json

import pytest
import torch

from methods.runner import run_stable_diffusion, write_outputs
from methods.testbeds import minicanvas

SHORT = {
    "esd": dict(iterations=2, ddim_steps=3),
    "uce": {},
    "ca": dict(train_steps=2, num_anchor_images=2, batch_size=2),
    "sld": dict(num_inference_steps=3, sld_warmup_steps=1),
}


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=2, norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=16,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(minicanvas.VOCAB), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=8, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    ))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=minicanvas.build_tokenizer(), unet=unet,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    path = tmp_path_factory.mktemp("tiny-sd")
    pipe.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("name", ["esd", "uce", "ca", "sld"])
def test_method_runs_on_a_stable_diffusion_pipeline(tiny_sd, tmp_path, name):
    torch.set_num_threads(1)
    result = run_stable_diffusion(
        name, tiny_sd, "a digit three", seed=0, device="cpu", samples_per_prompt=1, config_overrides=SHORT[name]
    )
    assert result.before.shape == result.after.shape == (3, 3, 16, 16)  # 3 prompts, RGB decoded by the VAE
    assert result.metrics["metrics"] is None and result.metrics["catalog_id"]
    out = write_outputs(result, tmp_path)
    assert json.loads((out / "metrics.json").read_text())["method"] == name
    assert (out / "samples.png").stat().st_size > 0
