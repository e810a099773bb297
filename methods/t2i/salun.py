"""SalUn: Saliency Unlearning (Fan et al., ICLR 2024). Catalog id: `fan2023salun`.

Follows OPTML-Group/Unlearn-Saliency@a6e89fd, SD/train-scripts/generate_mask.py and SD/train-scripts/random_label.py
(class forgetting on Stable Diffusion).

1. Weight saliency. The gradient of the forgetting loss, summed over one pass of the forget images x_f with their
   prompts c_f, scores every UNet weight:

       g = sum_batches grad_theta  -MSE(eps, (1 + w) eps_theta(x_t, c_f) - w eps_theta(x_t, ""))     (w = 7.5)

   and the mask keeps the `mask_ratio` (50%) of the weights with the largest |g|, ranked over the whole UNet:
   m = 1(|g| >= gamma).

2. Random-label unlearning restricted to the mask. Only masked weights learn (the gradient is multiplied by m
   before every Adam step) to answer the forget prompt as they answer a pseudo prompt c' on the same noisy forget
   image, while the ordinary denoising loss on retain images x_r with their prompts c_r keeps the rest:

       L = E || eps_theta(x_t, c_f) - sg[eps_theta(x_t, c')] ||^2  +  alpha * E || eps - eps_theta(x_r,t, c_r) ||^2

   In the official code c' is the next Imagenette class ("an image of a {(c + 1) mod 10}"); the paper describes a
   random other class.

The forget and retain images are the request's real images (the official class forgetting trains on Imagenette);
a prompt without images (always on Stable Diffusion) gets samples of the base model, as the official NSFW script
does (800 generated images of the concept and of its safe counterpart).

MiniCanvas: c' is the request's anchor prompt (another concept of the same axis, "eight" for a digit, "plain" for
a style; the official "next class"), and the retain set is the other concepts' prompts and images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.config import check_config
from ..core.seeding import make_generator
from .diffusion import DiffusionComponents, EditedDiffusion, EraseRequest, encode_prompts, finetuned_model, frozen_copy
from .training import TRAIN_METHODS, batches, cycle_batches, denoising_loss, guided_loss, noisy, parameter_names, prompt_images, trainable


@dataclass
class SalUnConfig:
    """Defaults are the official ones for Stable Diffusion 1.4 class forgetting (OPTML-Group/Unlearn-Saliency@a6e89fd,
    SD/README.md and SD/train-scripts/{generate_mask,random_label}.py); a testbed's adaptations are declared in
    methods/registry.yaml."""

    mask_ratio: float = 0.5  # generate_mask.py: threshold_list [0.5] -> mask/with_0.5.pt (top 50% of |grad|)
    mask_guidance: float = 7.5  # generate_mask.py `c_guidance`: w of the guided forgetting loss
    mask_batch_size: int = 8  # generate_mask.py `batch_size`; one pass over the forget images
    train_method: str = "full"  # README command `--train_method full`
    alpha: float = 0.5  # README command `--alpha 0.5` (argparse default 0.1): weight of the retain loss
    learning_rate: float = 1e-5  # README command `--lr 1e-5`, Adam
    epochs: int = 5  # README command `--epochs 5` over the forget loader
    batch_size: int = 8  # random_label.py `batch_size` (forget and retain loaders alike)
    num_forget_images: int = 800  # the NSFW setup's 800 generated concept images (class forgetting: one Imagenette class)
    num_retain_images: int = 800  # the NSFW setup's 800 images of the safe counterpart (class forgetting: the 9 others)
    use_mask: bool = True  # False: random-label unlearning without saliency (the paper's ablation, `--mask_path` unset)

    def __post_init__(self):
        check_config(self, {"train_method": TRAIN_METHODS}, mask_ratio="(0,1]", mask_guidance="[0,1e3]",
                     mask_batch_size=">=1", alpha="[0,1e3]", learning_rate="(0,1]", epochs=">=1", batch_size=">=1",
                     num_forget_images=">=1", num_retain_images=">=1")


def saliency_mask(gradients: dict, ratio: float) -> dict:
    """The official hard mask: rank |g| over all parameters together and keep the top `ratio` of them (ties broken
    by position, as `argsort` does in generate_mask.py)."""
    flat = torch.cat([g.abs().flatten() for g in gradients.values()])
    keep = int(len(flat) * ratio)
    ranks = torch.empty(len(flat), dtype=torch.long)
    ranks[torch.argsort(-flat, stable=True)] = torch.arange(len(flat))
    masks, start = {}, 0
    for name, g in gradients.items():
        masks[name] = (ranks[start : start + g.numel()] < keep).reshape(g.shape).to(g.dtype)
        start += g.numel()
    return masks


def split_evenly(total: int, parts: int) -> int:
    """Images per prompt so that `parts` prompts together have about `total` (at least one each)."""
    return max(1, round(total / parts))


def erase(components: DiffusionComponents, request: EraseRequest, config: SalUnConfig, seed: int = 0) -> EditedDiffusion:
    """Saliency mask from the forget gradient, then masked random-label fine-tuning of a copy of the UNet."""
    start = time.perf_counter()
    generator = make_generator(seed)
    torch.manual_seed(seed)

    # 1. Forget images x_f (with the index of their forget prompt) and retain images x_r with their prompts.
    forget_x, forget_i = prompt_images(components, request, request.forget_prompts,
                                       split_evenly(config.num_forget_images, len(request.forget_prompts)), generator)
    retain_prompts = list(request.preserve_prompts)
    retain_x, retain_i = prompt_images(components, request, retain_prompts,
                                       split_evenly(config.num_retain_images, len(retain_prompts)), generator)
    forget_emb = encode_prompts(components, request.forget_prompts)
    pseudo_emb = encode_prompts(components, request.anchor_prompts)
    retain_emb = encode_prompts(components, retain_prompts)

    unet = frozen_copy(components.unet)
    params = trainable(unet, parameter_names(unet, config.train_method))
    names = [name for name, p in unet.named_parameters() if p.requires_grad]

    # 2. Saliency: |sum of the gradients of the guided forgetting loss| over one pass of the forget images.
    masks = None
    if config.use_mask:
        gradients = {name: torch.zeros_like(p) for name, p in zip(names, params)}
        for batch in batches(len(forget_x), config.mask_batch_size, generator):
            loss = -guided_loss(components, unet, forget_x[batch], forget_emb[forget_i[batch]], generator,
                                config.mask_guidance)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            for name, grad in zip(names, grads):
                if grad is not None:
                    gradients[name] += grad
        masks = saliency_mask(gradients, config.mask_ratio)

    # 3. Masked random-label fine-tuning: forget prompt -> the pseudo prompt's prediction, plus alpha x retain loss.
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)
    losses = []
    for _ in range(config.epochs):
        retain_batches = cycle_batches(len(retain_x), config.batch_size, generator)  # re-created each epoch
        for batch in batches(len(forget_x), config.batch_size, generator):
            retain = next(retain_batches)
            remain_loss = denoising_loss(components, unet, retain_x[retain], retain_emb[retain_i[retain]], generator)

            x_t, _, t = noisy(components, forget_x[batch], generator)
            forget_out = unet(x_t, t, encoder_hidden_states=forget_emb[forget_i[batch]]).sample
            with torch.no_grad():
                pseudo_out = unet(x_t, t, encoder_hidden_states=pseudo_emb[forget_i[batch]]).sample
            loss = F.mse_loss(forget_out, pseudo_out) + config.alpha * remain_loss

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if masks is not None:
                for name, p in zip(names, params):
                    if p.grad is not None:
                        p.grad.mul_(masks[name])
            optimizer.step()
            losses.append(loss.item())

    edited = finetuned_model(components, unet, params, losses, start)
    if masks is not None:
        edited.info["masked_fraction"] = float(sum(m.sum() for m in masks.values()) / sum(m.numel() for m in masks.values()))
    edited.info["forget_images"], edited.info["retain_images"] = len(forget_x), len(retain_x)
    return edited
