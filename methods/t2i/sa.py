"""Selective Amnesia (Heng & Soh, NeurIPS 2023). Catalog id: `heng2023selective`.

Follows clear-nus/selective-amnesia@b736571, sd/ (main_fim.py with ldm/models/diffusion/ddpm_fim.py for the Fisher
information, main_forget.py with ldm/models/diffusion/ddpm_forget.py and configs/stable-diffusion/forget_*.yaml for
the forgetting run).

SA treats forgetting as continual learning. The concept's prompt c_f is remapped to a surrogate distribution q
(images of another concept: "a middle aged man" for "brad pitt"), while generative replay of the other concepts and
elastic weight consolidation (EWC) around the original weights theta* keep the rest:

    L(theta) = E_{(x, c_f), x ~ q} L_DM(theta; x, c_f)                      (surrogate)
             + gamma * E_{(x, c) ~ replay} L_DM(theta; x, c)                 (generative replay)
             + lambda * sum_i F_i (theta_i - theta*_i)^2                     (EWC; the code has no 1/2)

L_DM is the ordinary denoising loss (no text dropout during forgetting). The replay set is the base model's own
samples of a set of prompts (SD: 4,999 GPT-written prompts), and the surrogate images are the base model's samples
of the surrogate prompt. F is the diagonal empirical Fisher information at theta*, computed on the replay samples:
for each sample (batch size 1) the gradient of the denoising loss summed over all 1,000 training timesteps (one
noise draw each), squared, averaged over samples:

    F_i = mean_samples ( d/d theta_i  sum_t L_DM(theta*; x, c, t) )^2

Optimiser: AdamW with a one-step linear warm-up (LambdaLinearScheduler, f_start 1e-6); the forgetting data are the
(surrogate, replay) pairs of a ConcatDataset, epoch length min(#surrogate, #replay) / batch.

MiniCanvas: the surrogate of a forget prompt is its anchor prompt (another concept of the same axis: the images of
"a digit eight in S style" are learnt under "a digit three in S style"), and the replay prompts are the request's
preserve prompts (the other concepts); both image sets are samples of the base model, as in the official code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..core.config import check_config
from ..core.seeding import make_generator
from .diffusion import DiffusionComponents, EditedDiffusion, EraseRequest, encode_prompts, finetuned_model, frozen_copy
from .salun import split_evenly
from .training import TRAIN_METHODS, batches, denoising_loss, parameter_names, prompt_images, trainable


@dataclass
class SAConfig:
    """Defaults are the official ones for Stable Diffusion 1.4 (clear-nus/selective-amnesia@b736571,
    sd/configs/stable-diffusion/forget_brad_pitt.yaml, sd/main_forget.py, sd/README.md); a testbed's adaptations
    are declared in methods/registry.yaml."""

    lmbda: float = 50.0  # forget_*.yaml `lmbda`: EWC weight lambda
    gamma: float = 1.0  # forget_*.yaml `gamma` ("keep this at 1"): generative-replay weight
    learning_rate: float = 1.6e-4  # base_learning_rate 1e-5 x 4 GPUs x batch 4 (main_forget.py `--scale_lr` is on by default)
    batch_size: int = 16  # train_batch_size 4 per GPU x 4 GPUs (README: --gpus "0,1,2,3")
    epochs: int = 200  # forget_brad_pitt.yaml `max_epochs` (nudity: 500)
    warmup_steps: int = 1  # LambdaLinearScheduler warm_up_steps [1], f_start 1e-6
    weight_decay: float = 0.01  # torch.optim.AdamW default (configure_optimizers passes none)
    train_method: str = "full"  # forget_brad_pitt.yaml `train_method` (nudity: noxattn)
    num_surrogate_images: int = 1000  # README step 3: --n_samples 1000 of "a middle aged man"
    num_replay_images: int = 4999  # README step 1: one image per line of fim_prompts.txt
    fim_samples: int = 4999  # main_fim.py: the Fisher over every replay sample (batch size 1)
    fim_timesteps: int = 1000  # ddpm_fim.py: the loss summed over every one of the 1,000 timesteps

    def __post_init__(self):
        check_config(self, {"train_method": TRAIN_METHODS}, lmbda="[0,1e9]", gamma="[0,1e3]",
                     learning_rate="(0,1]", batch_size=">=1", epochs=">=1", warmup_steps=">=0",
                     weight_decay="[0,1]", num_surrogate_images=">=1", num_replay_images=">=1", fim_samples=">=1",
                     fim_timesteps=">=1")


def fisher_diagonal(components: DiffusionComponents, unet, params: list, images: torch.Tensor, text: torch.Tensor,
                    timesteps: int, generator: torch.Generator) -> list:
    """Diagonal empirical Fisher: per sample, the gradient of its denoising loss summed over `timesteps` evenly
    spaced training timesteps (all of them by default; fewer are rescaled to estimate the full sum), squared, and
    averaged over the samples. One backward pass per sample, its timesteps in one batch."""
    total = components.scheduler.config.num_train_timesteps
    t = torch.linspace(0, total - 1, timesteps).round().long().to(images.device)
    scale = total / timesteps
    fisher = [torch.zeros_like(p) for p in params]
    for x, c in zip(images, text):
        noise = torch.randn((timesteps, *x.shape), generator=generator).to(device=x.device, dtype=x.dtype)
        x_t = components.scheduler.add_noise(x.expand(timesteps, *x.shape), noise, t)
        prediction = unet(x_t, t, encoder_hidden_states=c.expand(timesteps, *c.shape)).sample
        # sum over timesteps of the per-timestep mean squared error (LDM p_losses with batch size 1)
        loss = scale * (prediction - noise).pow(2).flatten(1).mean(1).sum()
        for f, g in zip(fisher, torch.autograd.grad(loss, params, allow_unused=True)):
            if g is not None:
                f += g.pow(2)
    return [f / len(images) for f in fisher]


def ewc_penalty(params: list, anchors: list, fisher: list) -> torch.Tensor:
    """sum_i F_i (theta_i - theta*_i)^2 (no 1/2, as in ddpm_forget.py)."""
    return sum((f * (p - a).pow(2)).sum() for p, a, f in zip(params, anchors, fisher))


def erase(components: DiffusionComponents, request: EraseRequest, config: SAConfig, seed: int = 0) -> EditedDiffusion:
    """Fisher on the replay samples, then surrogate + replay + EWC fine-tuning of a copy of the UNet."""
    start = time.perf_counter()
    generator = make_generator(seed)
    torch.manual_seed(seed)

    # 1. The base model's samples: surrogate images (of each forget prompt's anchor) and replay images.
    surrogate_x, surrogate_i = prompt_images(
        components, request, request.anchor_prompts,
        split_evenly(config.num_surrogate_images, len(request.anchor_prompts)), generator, real=False)
    replay_prompts = list(request.preserve_prompts)
    replay_x, replay_i = prompt_images(components, request, replay_prompts,
                                       split_evenly(config.num_replay_images, len(replay_prompts)), generator,
                                       real=False)
    forget_emb = encode_prompts(components, request.forget_prompts)  # surrogate images are learnt under c_f
    replay_emb = encode_prompts(components, replay_prompts)

    unet = frozen_copy(components.unet)
    params = trainable(unet, parameter_names(unet, config.train_method))
    anchors = [p.detach().clone() for p in params]

    # 2. Diagonal Fisher at theta* on (a subset of) the replay samples.
    fim = torch.randperm(len(replay_x), generator=generator)[: config.fim_samples]
    fisher = fisher_diagonal(components, unet, params, replay_x[fim], replay_emb[replay_i[fim]],
                             config.fim_timesteps, generator)

    # 3. Forgetting: AdamW with a one-step linear warm-up over (surrogate, replay) pairs.
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = lambda step: 1e-6 + (1 - 1e-6) * step / config.warmup_steps if step < config.warmup_steps else 1.0  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup)
    # ConcatDataset(surrogate, replay): item i pairs surrogate i with replay i, min(lengths) items; the replay set
    # is put in a random order once (the official prompt file's order is arbitrary, ours is grouped by prompt)
    pairs = min(len(surrogate_x), len(replay_x))
    replay_order = torch.randperm(len(replay_x), generator=generator)
    losses = []
    for _ in range(config.epochs):
        for batch in batches(pairs, config.batch_size, generator):
            surrogate, replay = batch, replay_order[batch]
            loss_surrogate = denoising_loss(components, unet, surrogate_x[surrogate],
                                            forget_emb[surrogate_i[surrogate]], generator)
            loss_replay = denoising_loss(components, unet, replay_x[replay], replay_emb[replay_i[replay]], generator)
            loss = loss_surrogate + config.gamma * loss_replay + config.lmbda * ewc_penalty(params, anchors, fisher)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())

    edited = finetuned_model(components, unet, params, losses, start)
    edited.info.update(fisher_mean=float(torch.cat([f.flatten() for f in fisher]).mean()),
                       surrogate_images=len(surrogate_x), replay_images=len(replay_x))
    return edited
