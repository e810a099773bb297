"""The Stable Diffusion path (`--model`), exercised on a tiny randomly initialised SD-shaped pipeline saved locally.

Real SD 1.x weights cannot be downloaded here; this checks loading with `StableDiffusionPipeline.from_pretrained`,
latent-space methods, VAE decoding and the outputs, for every text-to-image unlearn card of the registry, with its
official defaults shortened by its `smoke` budget (declared in methods/registry.yaml).
"""

import json
from pathlib import Path

import pytest
import torch

from methods.registry import load_registry
from methods.run import run_card
from methods.testbeds import minicanvas

REGISTRY = load_registry()
T2I_CARDS = [card.name for card in REGISTRY.cards.values() if card.kind == "unlearn" and card.modality == "t2i"]


def smoke(name: str) -> dict:
    """The card's smoke budget (the same as the contract tests'), applied to its official defaults."""
    return dict(REGISTRY.card(name).on("minicanvas").smoke)


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
        num_attention_heads=2, max_position_embeddings=minicanvas.MAX_PROMPT_TOKENS, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    ))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=minicanvas.build_tokenizer(), unet=unet,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    path = tmp_path_factory.mktemp("tiny-sd")
    pipe.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize("name", T2I_CARDS)
def test_card_runs_on_a_stable_diffusion_pipeline(tiny_sd, tmp_path, name):
    """`--model` swaps MiniCanvas' tiny model for a Stable Diffusion pipeline: the card runs with its official
    defaults (shortened by its smoke budget), and the run writes samples before / after (no judge applies) and
    schema-v1 results."""
    torch.set_num_threads(1)
    record = run_card(name, "minicanvas", model=tiny_sd, forget="a digit three", seed=0, device="cpu",
                      overrides=smoke(name), out=tmp_path, log=lambda _: None)
    assert record["model"] == Path(tiny_sd).name and record["metrics"]["UA"] is None
    assert record["bar"]["met"] is None and record["catalog_ids"]
    assert set(record["adaptations"]) == set(smoke(name))  # official defaults but for the shortening
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["card"] == name and on_disk["details"]["prompts"][0] == "a digit three"
    assert (tmp_path / "samples.png").stat().st_size > 0
