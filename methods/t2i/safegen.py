"""SafeGen: text-agnostic erasure through the vision-only self-attention (Li et al., CCS 2024). Catalog id:
`li2024safegen`.

Follows LetterLiGo/SafeGen_CCS2024@20f627b, examples/text_to_image/train_text_to_image_adjust_sal.py with the
settings of examples/text_to_image/run_adjust_SD.sh.

SafeGen does not touch the text path. Only the UNet's self-attention layers (`attn1`) are trained, and always under
the empty prompt, on image-only triplets: an image of the concept x_c, its mosaicked version x_m = mosaic(x_c), and
a normal image x_n. With the same noise eps for x_c and x_m and eps_n for x_n at one timestep t:

    L = w_m * || eps_theta(x_c,t, "") - (x_c - x_m + eps) ||^2  +  w_p * || eps_theta(x_n,t, "") - eps_n ||^2

The first term makes the model denoise a noisy concept image as if it were the mosaic (x_c,t - sqrt(1 - a_t) *
(x_c - x_m + eps) predicts a mosaic-coloured x_0), the second keeps normal images as they are. (The official loop
also computes the prediction on the noisy mosaic, the paper's mosaic -> mosaic pair, but leaves it out of the
loss.) AdamW, gradient accumulation, gradient norm clipped to 1, constant learning rate, and an EMA of the UNet
(diffusers `EMAModel`) whose weights are the result. Because the text encoder and cross-attention are untouched and
the training prompt is empty, the edit applies whatever prompt (or adversarial prompt) asks for the concept.

Images: the request's real images of the concept and of the retained concepts (the official triplets come from a
nudity dataset mosaicked by anti-deepnude), or samples of the base model for prompts without images (always on
Stable Diffusion, where the mosaic is made in pixel space: decode, mosaic, encode). The mosaic averages blocks of
`mosaic_block` x `mosaic_block` pixels (anti-deepnude mosaics the detected regions; its block size is not public).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.config import check_config
from ..core.seeding import make_generator
from .diffusion import DiffusionComponents, EditedDiffusion, EraseRequest, encode_prompts, finetuned_model, frozen_copy
from .salun import split_evenly
from .training import noisy, parameter_names, prompt_images, random_batch, trainable


@dataclass
class SafeGenConfig:
    """Defaults are the official ones (LetterLiGo/SafeGen_CCS2024@20f627b, examples/text_to_image/run_adjust_SD.sh and
    train_text_to_image_adjust_sal.py); a testbed's adaptations are declared in methods/registry.yaml."""

    learning_rate: float = 1e-5  # run_adjust_SD.sh `learning_rate=1e-05`, AdamW
    train_steps: int = 1000  # run_adjust_SD.sh `steps=1000` (optimizer steps)
    batch_size: int = 1  # run_adjust_SD.sh `train_batch_size=1`
    gradient_accumulation: int = 5  # run_adjust_SD.sh `accumulation_steps=5`
    weight_mosaic: float = 0.1  # run_adjust_SD.sh `weight_tune=0.1` (the parser's `--weight_mosaic` defaults to 0.5)
    weight_preserve: float = 0.9  # run_adjust_SD.sh `weight_preserve=0.9` (parser default 0.5)
    weight_decay: float = 0.01  # parser `--adam_weight_decay` default
    max_grad_norm: float = 1.0  # run_adjust_SD.sh `--max_grad_norm=1`
    use_ema: bool = True  # run_adjust_SD.sh `--use_ema`: the result is the EMA of the UNet
    ema_decay: float = 0.9999  # diffusers EMAModel default (with its (1 + step) / (10 + step) ramp)
    mosaic_block: int = 16  # pixels per mosaic block (not public: anti-deepnude's block size); 512 px -> 32 x 32 blocks
    num_images: int = 100  # the official triplet folder `100photos`

    def __post_init__(self):
        check_config(self, learning_rate="(0,1]", train_steps=">=1", batch_size=">=1", gradient_accumulation=">=1",
                     weight_mosaic="[0,1e3]", weight_preserve="[0,1e3]", weight_decay="[0,1]",
                     max_grad_norm="(0,1e6]", ema_decay="[0,1]", mosaic_block=">=1", num_images=">=1")


def mosaic(images: torch.Tensor, block: int) -> torch.Tensor:
    """Pixelate: every `block` x `block` tile takes its mean colour (edge tiles are partial)."""
    height, width = images.shape[-2:]
    pooled = F.avg_pool2d(images, block, stride=block, ceil_mode=True, count_include_pad=False)
    return F.interpolate(pooled, scale_factor=block, mode="nearest")[..., :height, :width]


@torch.no_grad()
def mosaic_in_model_space(components: DiffusionComponents, images: torch.Tensor, block: int) -> torch.Tensor:
    """The mosaic of images in the model space: directly for a pixel model, through the VAE for a latent one."""
    if components.vae is None:
        return mosaic(images, block)
    vae, scale = components.vae, components.vae.config.scaling_factor
    out = []
    for chunk in images.split(4):
        pixels = vae.decode(chunk / scale).sample.clamp(-1, 1)
        out.append(vae.encode(mosaic(pixels, block)).latent_dist.mean * scale)
    return torch.cat(out)


def safegen_targets(concept: torch.Tensor, mosaics: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The epsilon target of a noisy concept image: x_c - x_m + eps (epsilon-prediction)."""
    return concept - mosaics + noise


def erase(components: DiffusionComponents, request: EraseRequest, config: SafeGenConfig, seed: int = 0) -> EditedDiffusion:
    """Tune the self-attention of a copy of the UNet on (concept, mosaic, normal) images under the empty prompt."""
    from diffusers.training_utils import EMAModel

    start = time.perf_counter()
    generator = make_generator(seed)
    torch.manual_seed(seed)

    # 1. Triplets: concept images, their mosaics, normal images (the other concepts); the prompt is always "".
    concept, _ = prompt_images(components, request, request.forget_prompts,
                               split_evenly(config.num_images, len(request.forget_prompts)), generator)
    mosaics = mosaic_in_model_space(components, concept, config.mosaic_block)
    normal, _ = prompt_images(components, request, request.preserve_prompts,
                              split_evenly(config.num_images, len(request.preserve_prompts)), generator)
    empty = encode_prompts(components, [""])

    # 2. Only self-attention learns; the EMA follows the whole UNet.
    unet = frozen_copy(components.unet)
    params = trainable(unet, parameter_names(unet, "selfattn"))
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    ema = EMAModel(unet.parameters(), decay=config.ema_decay) if config.use_ema else None

    losses = []
    for _ in range(config.train_steps):
        optimizer.zero_grad(set_to_none=True)
        for _ in range(config.gradient_accumulation):
            pick = random_batch(len(concept), config.batch_size, generator)
            keep = random_batch(len(normal), config.batch_size, generator)
            x_t, noise, t = noisy(components, concept[pick], generator)
            n_t, noise_n, _ = noisy(components, normal[keep], generator, t=t)
            text = empty.expand(len(pick), -1, -1)
            loss_mosaic = F.mse_loss(unet(x_t, t, encoder_hidden_states=text).sample,
                                     safegen_targets(concept[pick], mosaics[pick], noise))
            loss_keep = F.mse_loss(unet(n_t, t, encoder_hidden_states=text).sample, noise_n)
            loss = config.weight_mosaic * loss_mosaic + config.weight_preserve * loss_keep
            (loss / config.gradient_accumulation).backward()
            losses.append(loss.item())
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        if ema is not None:
            ema.step(unet.parameters())

    # 3. The result is the EMA weights.
    if ema is not None:
        ema.copy_to(unet.parameters())
    edited = finetuned_model(components, unet, params, losses, start)
    edited.info.update(concept_images=len(concept), normal_images=len(normal))
    return edited
