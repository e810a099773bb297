"""Scissorhands: Scrub Data Influence via Connection Sensitivity in Networks (Wu & Harandi, ECCV 2024). Catalog id:
`wu2024scissorhands`.

Follows JingWu321/Scissorhands@73ae065, SD/shs_cls.py (class forgetting on Stable Diffusion, the command in
SD/train_shs.sh).

1. Connection sensitivity (SNIP) on the forget data. Over `prune_num` random forget batches, accumulate the absolute
   gradients of the guided denoising loss

       G = sum_batches | grad_theta MSE(eps, (1 + w) eps_theta(x_t, c_f) - w eps_theta(x_t, "")) |      (w = 7.5)

   and score every UNet weight by s = |G * theta|. The weights whose score is above the `sparsity` quantile of all
   scores (the top 0.1% for sparsity 0.999) are the ones most connected to the forget data.

2. Trim: those weights are re-initialised (weights from a truncated normal, std 0.02; biases to zero) - in the
   official SD code only inside the `reinit_layers` (the self-attention `attn1` of two decoder transformer blocks,
   CompVis `output_blocks.4` and `output_blocks.7`); the rest of the UNet keeps its weights.

3. Repair: fine-tune the trimmed model on the retain data while pushing the forget data away (gradient ascent on
   its denoising loss):

       L = E || eps - eps_theta(x_r,t, c_r) ||^2  -  lam * E || eps - eps_theta(x_f,t, c_f) ||^2

   with fresh random forget and retain batches every step (`next(iter(loader))`), for `epochs` passes of
   len(forget loader) steps. (The paper's gradient-projection variant is the `--project` flag, off in the SD
   command and unused by shs_cls.py.) The repository's NSFW script (SD/shs_nsfw.py) repairs with a bounded forget
   term instead, `forget_loss="pseudo"`: L = L_r + lam * E || eps_theta(x_t, c_f) - sg[eps_theta(x_t, c')] ||^2, c'
   the safe counterpart ("a photo of a person wearing clothes"; the request's anchor prompt here).

Forget and retain images are the request's real images (the official code trains on Imagenette), or samples of the
base model for prompts without images (always on Stable Diffusion).
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
from .training import (TRAIN_METHODS, denoising_loss, guided_loss, noisy, parameter_names, prompt_images, random_batch,
                       trainable)

# CompVis output_blocks.4 / .7 of SD 1.x are the second transformer of diffusers up_blocks.1 / up_blocks.2.
SD_REINIT_LAYERS = ("up_blocks.1.attentions.1.transformer_blocks.0.attn1.",
                    "up_blocks.2.attentions.1.transformer_blocks.0.attn1.")


@dataclass
class ScissorhandsConfig:
    """Defaults are the official ones for Stable Diffusion 1.4 class forgetting (JingWu321/Scissorhands@73ae065,
    SD/train_shs.sh and SD/shs_cls.py); a testbed's adaptations are declared in methods/registry.yaml."""

    sparsity: float = 0.999  # train_shs.sh `--sparsity 0.999`: scores above this quantile are trimmed
    prune_num: int = 10  # train_shs.sh `--prune_num 10`: forget batches in the SNIP gradient
    snip_guidance: float = 7.5  # shs_cls.py `snip`: w of the guided loss
    reinit_layers: tuple = SD_REINIT_LAYERS  # shs_cls.py `snip`: attn1 of output_blocks.4 / .7 (diffusers names)
    reinit_std: float = 0.02  # shs_cls.py `snip`: trunc_normal_(std=.02) for weights, zeros for biases
    lam: float = 0.1  # train_shs.sh `--lam 0.1`: weight of the forget (ascent) term
    learning_rate: float = 2e-5  # train_shs.sh `--lr 2e-5`, Adam
    epochs: int = 3  # train_shs.sh `--epochs 3`, each len(forget loader) steps
    batch_size: int = 8  # shs_cls.py argparse default
    train_method: str = "full"  # train_shs.sh `--train_method full`
    forget_loss: str = "ascent"  # shs_cls.py: - lam x denoising loss; "pseudo": shs_nsfw.py's + lam x MSE to c'
    num_forget_images: int = 800  # one Imagenette class in the official code (~950 images); sampled when none are given
    num_retain_images: int = 800  # the other classes in the official code

    def __post_init__(self):
        check_config(self, {"train_method": TRAIN_METHODS, "forget_loss": ("ascent", "pseudo")}, sparsity="[0,1)", prune_num=">=1",
                     snip_guidance="[0,1e3]", reinit_std="[0,10]", lam="[0,1e3]", learning_rate="(0,1]",
                     epochs=">=0", batch_size=">=1", num_forget_images=">=1", num_retain_images=">=1")


def snip_scores(gradients: list, weights: list) -> list:
    """Connection sensitivity |G * theta| per weight (G: accumulated absolute gradients)."""
    return [(g * w).abs() for g, w in zip(gradients, weights)]


def trim_mask(scores: list, sparsity: float) -> list:
    """1 for the weights to trim: score strictly above the k-th smallest score, k = int(sparsity * #weights) (the
    official `kthvalue` threshold)."""
    flat = torch.cat([s.flatten() for s in scores])
    threshold = flat.kthvalue(max(1, int(sparsity * len(flat)))).values
    return [(s > threshold) for s in scores]


def erase(components: DiffusionComponents, request: EraseRequest, config: ScissorhandsConfig,
          seed: int = 0) -> EditedDiffusion:
    """SNIP trimming of the weights most connected to the forget data, then repair by fine-tuning a copy."""
    start = time.perf_counter()
    generator = make_generator(seed)
    torch.manual_seed(seed)

    forget_x, forget_i = prompt_images(components, request, request.forget_prompts,
                                       split_evenly(config.num_forget_images, len(request.forget_prompts)), generator)
    retain_prompts = list(request.preserve_prompts)
    retain_x, retain_i = prompt_images(components, request, retain_prompts,
                                       split_evenly(config.num_retain_images, len(retain_prompts)), generator)
    forget_emb = encode_prompts(components, request.forget_prompts)
    pseudo_emb = encode_prompts(components, request.anchor_prompts)
    retain_emb = encode_prompts(components, retain_prompts)

    unet = frozen_copy(components.unet)
    names = [name for name, _ in unet.named_parameters()]
    weights = trainable(unet, names)  # SNIP scores every UNet weight

    # 1. SNIP: accumulated |gradient| of the guided loss over `prune_num` random forget batches.
    gradients = [torch.zeros_like(w) for w in weights]
    for _ in range(config.prune_num):
        batch = random_batch(len(forget_x), config.batch_size, generator)
        loss = guided_loss(components, unet, forget_x[batch], forget_emb[forget_i[batch]], generator,
                           config.snip_guidance)
        for total, grad in zip(gradients, torch.autograd.grad(loss, weights, allow_unused=True)):
            if grad is not None:
                total += grad.abs()
    trim = trim_mask(snip_scores(gradients, weights), config.sparsity)

    # 2. Trim: re-initialise the most connected weights inside the chosen layers.
    reinitialised = 0
    with torch.no_grad():
        for name, weight, mask in zip(names, weights, trim):
            if not any(name.startswith(layer) for layer in config.reinit_layers):
                continue
            if name.endswith("weight"):
                fresh = torch.nn.init.trunc_normal_(torch.empty_like(weight), std=config.reinit_std, generator=generator)
            else:
                fresh = torch.zeros_like(weight)
            weight.copy_(torch.where(mask, fresh, weight))
            reinitialised += int(mask.sum())
    unet.requires_grad_(False)

    # 3. Repair: retain denoising loss minus lam x forget denoising loss.
    params = trainable(unet, parameter_names(unet, config.train_method))
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)
    steps_per_pass = -(-len(forget_x) // config.batch_size)
    losses = []
    for _ in range(config.epochs * steps_per_pass):
        forget = random_batch(len(forget_x), config.batch_size, generator)
        retain = random_batch(len(retain_x), config.batch_size, generator)
        loss_r = denoising_loss(components, unet, retain_x[retain], retain_emb[retain_i[retain]], generator)
        if config.forget_loss == "ascent":
            loss_u = denoising_loss(components, unet, forget_x[forget], forget_emb[forget_i[forget]], generator)
            loss = loss_r - config.lam * loss_u
        else:
            x_t, _, t = noisy(components, forget_x[forget], generator)
            out = unet(x_t, t, encoder_hidden_states=forget_emb[forget_i[forget]]).sample
            with torch.no_grad():
                target = unet(x_t, t, encoder_hidden_states=pseudo_emb[forget_i[forget]]).sample
            loss = loss_r + config.lam * F.mse_loss(out, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    edited = finetuned_model(components, unet, params, losses, start)
    edited.info.update(trimmed_weights=int(sum(m.sum() for m in trim)), reinitialised_weights=reinitialised,
                       forget_images=len(forget_x), retain_images=len(retain_x))
    return edited
