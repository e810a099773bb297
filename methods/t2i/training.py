"""What the fine-tuning T2I cards share beyond `diffusion.py`: images of a prompt (the request's real images, or
samples of the base model), the standard denoising loss, the classifier-free-guided loss of the saliency cards, and
the parameter groups of the official scripts (`train_method`).

These are the same few lines in SalUn, EraseDiff, Scissorhands, Selective Amnesia, FMN, SafeGen and the task-vector
card (all of them build on the CompVis / diffusers training scripts); each card's own objective stays in its file.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .diffusion import DiffusionComponents, EraseRequest, encode_prompts, is_cross_attention, sample_cfg

# The `train_method` choices of the CompVis-era scripts (ESD's train-esd.py, reused by SalUn, EraseDiff, Scissorhands
# and Selective Amnesia), in diffusers parameter names.
TRAIN_METHODS = ("full", "xattn", "noxattn", "selfattn")


def parameter_names(unet, train_method: str) -> list:
    """Names of the UNet parameters a `train_method` trains.

    - full: every parameter;
    - xattn: cross-attention only (`attn2`);
    - noxattn: everything but cross-attention, the time embedding and the output layer (CompVis `out.`,
      `time_embed`; diffusers `conv_norm_out`, `conv_out`, `time_embedding`);
    - selfattn: self-attention only (`attn1`).
    """
    names = [name for name, _ in unet.named_parameters()]
    if train_method == "full":
        return names
    if train_method == "xattn":
        return [n for n in names if is_cross_attention(n)]
    if train_method == "noxattn":
        excluded = ("time_embedding", "conv_norm_out", "conv_out")
        return [n for n in names if not is_cross_attention(n) and not n.startswith(excluded)]
    if train_method == "selfattn":
        return [n for n in names if "attn1" in n]
    raise ValueError(f"unknown train_method {train_method!r}; use one of: {', '.join(TRAIN_METHODS)}")


def trainable(unet, names) -> list:
    """Switch gradients on for `names` (a copy of the UNet, never the input) and return those parameters in order."""
    names = set(names)
    params = [p for name, p in unet.named_parameters() if name in names]
    for p in params:
        p.requires_grad_(True)
    return params


@torch.no_grad()
def prompt_images(components: DiffusionComponents, request: EraseRequest, prompts: Sequence[str], per_prompt: int,
                  generator: torch.Generator, *, real: bool = True) -> tuple:
    """(images (N, *sample_shape), prompt index (N,)): `per_prompt` images of each prompt, in the model space.

    With `real`, a prompt the request carries real images of (`request.images`) takes `per_prompt` of them, drawn
    without replacement while there are enough (the official scripts train on a dataset of the concept); any other
    prompt gets `per_prompt` samples of the base model (what the official scripts do when they generate their
    training set, and the only source on Stable Diffusion, where the request carries no images). Samples of all the
    prompts that need them are drawn in one batched sampler call.
    """
    chosen, index, to_sample = {}, {}, []
    for i, prompt in enumerate(prompts):
        pool = request.images.get(prompt) if real else None
        if pool is not None and len(pool) > 0:
            order = torch.randperm(len(pool), generator=generator)
            pick = order[:per_prompt] if len(pool) >= per_prompt else order[torch.arange(per_prompt) % len(pool)]
            chosen[i] = pool[pick].to(device=components.device, dtype=components.unet.dtype)
        else:
            to_sample.append(i)
    if to_sample:
        sampled = sample_cfg(components, [prompts[i] for i in to_sample for _ in range(per_prompt)], generator)
        for j, i in enumerate(to_sample):
            chosen[i] = sampled[j * per_prompt : (j + 1) * per_prompt]
    images = torch.cat([chosen[i] for i in range(len(prompts))])
    index = torch.arange(len(prompts)).repeat_interleave(per_prompt)
    return images, index


def noisy(components: DiffusionComponents, clean: torch.Tensor, generator: torch.Generator,
          t: Optional[torch.Tensor] = None, noise: Optional[torch.Tensor] = None) -> tuple:
    """(x_t, noise, t): the forward process at uniformly drawn training timesteps (or the given ones)."""
    n = len(clean)
    if noise is None:
        noise = torch.randn(clean.shape, generator=generator).to(device=clean.device, dtype=clean.dtype)
    if t is None:
        t = torch.randint(0, components.scheduler.config.num_train_timesteps, (n,), generator=generator)
    t = t.to(clean.device)
    return components.scheduler.add_noise(clean, noise, t), noise, t


def denoising_loss(components: DiffusionComponents, unet, clean: torch.Tensor, text: torch.Tensor,
                   generator: torch.Generator) -> torch.Tensor:
    """The standard DDPM loss E ||eps - eps_theta(x_t, c, t)||^2 (LDM `shared_step` / diffusers train_text_to_image),
    epsilon-prediction."""
    x_t, noise, t = noisy(components, clean, generator)
    return F.mse_loss(unet(x_t, t, encoder_hidden_states=text).sample, noise)


def guided_loss(components: DiffusionComponents, unet, clean: torch.Tensor, text: torch.Tensor,
                generator: torch.Generator, guidance: float) -> torch.Tensor:
    """MSE(eps, (1 + w) eps_theta(x_t, c) - w eps_theta(x_t, "")): the guided denoising loss whose gradient on the
    forget data scores the weights in SalUn's `generate_mask.py` and Scissorhands' `snip` (w = `c_guidance` 7.5)."""
    x_t, noise, t = noisy(components, clean, generator)
    empty = encode_prompts(components, [""]).expand_as(text)
    eps_c = unet(x_t, t, encoder_hidden_states=text).sample
    eps_0 = unet(x_t, t, encoder_hidden_states=empty).sample
    return F.mse_loss((1 + guidance) * eps_c - guidance * eps_0, noise)


def batches(n: int, batch_size: int, generator: torch.Generator):
    """Index batches of one shuffled pass over n items (a DataLoader with shuffle=True, drop_last=False)."""
    order = torch.randperm(n, generator=generator)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def cycle_batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless index batches: successive shuffled passes over n items (`next(loader_iter)`, re-created when it runs
    out, as the official scripts draw their retain batches)."""
    while True:
        yield from batches(n, batch_size, generator)


def random_batch(n: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """The first batch of a freshly shuffled loader (`next(iter(loader))`, as EraseDiff and Scissorhands draw)."""
    return torch.randperm(n, generator=generator)[:batch_size]
