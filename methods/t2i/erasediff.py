"""EraseDiff: Erasing Undesirable Influence in Diffusion Models (Wu, Le, Hayat, Harandi). Catalog id:
`wu2024erasing`.

Follows JingWu321/EraseDiff@14f4e98, sd/train_scripts/erasediff_cls.py (class forgetting on Stable Diffusion, the
README command of sd/train_scripts/train_cls.sh) and, for the adaptive multiplier, ddpm/runners/diffusion.py
(`train_ours`).

EraseDiff keeps the denoising loss on the retain data low subject to a constraint that the forget data leave the
ground-truth denoising trajectory. The forget objective maps the forget prompt c_f on a noisy forget image to what
an unrelated prompt c_u predicts there (the official SD code's "a photo of a pokemon"):

    f(theta) = E || eps_theta(x_t, c_f) - sg[eps_theta(x_t, c_u)] ||^2          (x_t: a noised forget image)
    L_r(theta) = E || eps - eps_theta(x_r,t, c_r) ||^2                         (retain images with their prompts)

Written with the value function f* = min f (BOME), the constrained problem min L_r s.t. f(theta) - f* <= 0 becomes a
first-order loop; each epoch:

1. From theta_i, run `K_steps` passes of plain gradient steps on f over the forget set and record the mean forget
   loss f* (the approximate value of the lower-level problem); then restore theta_i.
2. One pass of updates  theta <- theta - lr * grad[ L_r + lambda (f(theta) - f*) ].
   lambda is `lambda_bome` (the SD code), or, when `lambda_bome < 0`, the BOME rule of the DDPM code:
   lambda = max(eta - cos(grad L_r, grad q), 0) with q = f - f*.

Every step draws a fresh random forget batch and retain batch (`next(iter(loader))` in the official code). The
optimizer state is shared between the inner and outer steps, as in the official code. Forget and retain images are
the request's real images (the official code trains on Imagenette), or samples of the base model for prompts
without images (always on Stable Diffusion).

MiniCanvas: the vocabulary has no unrelated word ("pokemon" is unknown to its 22-word tokenizer), so c_u is the
request's anchor prompt (another concept of the same axis), the choice of the official code's commented-out line
(the next class).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from ..core.config import check_config
from ..core.seeding import make_generator
from .diffusion import DiffusionComponents, EditedDiffusion, EraseRequest, encode_prompts, finetuned_model, frozen_copy
from .salun import split_evenly
from .training import TRAIN_METHODS, denoising_loss, noisy, parameter_names, prompt_images, random_batch, trainable


@dataclass
class EraseDiffConfig:
    """Defaults are the official ones for Stable Diffusion 1.4 class forgetting (JingWu321/EraseDiff@14f4e98,
    sd/train_scripts/train_cls.sh and erasediff_cls.py); a testbed's adaptations are declared in methods/registry.yaml."""

    train_method: str = "full"  # train_cls.sh `--train_method 'full'`
    epochs: int = 2  # train_cls.sh `--epochs 2` (argparse default 5)
    K_steps: int = 1  # train_cls.sh `--K_steps 1` (argparse default 2): passes of the lower-level problem
    lambda_bome: float = 1.0  # train_cls.sh `--lambda_bome 1.` (argparse default 0.1); < 0: the adaptive BOME rule
    eta_bome: float = 0.1  # ddpm/main.py `--eta_bome` (used only when lambda_bome < 0)
    learning_rate: float = 1e-5  # train_cls.sh `--lr 1e-5`, Adam
    batch_size: int = 16  # train_cls.sh `--batch_size 16`
    unrelated_prompt: Optional[str] = "a photo of a pokemon"  # erasediff_cls.py `noise_prompts`; None: the anchor prompts
    num_forget_images: int = 800  # one Imagenette class in the official code (~950 images); sampled when none are given
    num_retain_images: int = 800  # the other classes in the official code

    def __post_init__(self):
        check_config(self, {"train_method": TRAIN_METHODS}, epochs=">=1", K_steps=">=1", lambda_bome="[-1,1e3]",
                     eta_bome="[0,1e3]", learning_rate="(0,1]", batch_size=">=1", num_forget_images=">=1",
                     num_retain_images=">=1")


def bome_multiplier(grad_retain: torch.Tensor, grad_q: torch.Tensor, eta: float) -> float:
    """The DDPM code's adaptive lambda: max(eta - cos(grad L_r, grad q), 0), and 0 when grad q vanishes."""
    q_norm = grad_q.norm()
    if q_norm == 0:
        return 0.0
    cosine = (grad_retain * grad_q).sum() / (grad_retain.norm() * q_norm + 1e-8)
    return float(max(eta - cosine, 0.0))


def erase(components: DiffusionComponents, request: EraseRequest, config: EraseDiffConfig,
          seed: int = 0) -> EditedDiffusion:
    """EraseDiff's value-function loop on a copy of the UNet."""
    start = time.perf_counter()
    generator = make_generator(seed)
    torch.manual_seed(seed)

    # 1. Forget images with their prompts, retain images with theirs, and the unrelated prompt's embedding.
    forget_x, forget_i = prompt_images(components, request, request.forget_prompts,
                                       split_evenly(config.num_forget_images, len(request.forget_prompts)), generator)
    retain_prompts = list(request.preserve_prompts)
    retain_x, retain_i = prompt_images(components, request, retain_prompts,
                                       split_evenly(config.num_retain_images, len(retain_prompts)), generator)
    forget_emb = encode_prompts(components, request.forget_prompts)
    retain_emb = encode_prompts(components, retain_prompts)
    if config.unrelated_prompt is None:
        unrelated_emb = encode_prompts(components, request.anchor_prompts)  # parallel to the forget prompts
    else:
        unrelated_emb = encode_prompts(components, [config.unrelated_prompt]).expand(len(request.forget_prompts), -1, -1)

    unet = frozen_copy(components.unet)
    params = trainable(unet, parameter_names(unet, config.train_method))
    optimizer = torch.optim.Adam(params, lr=config.learning_rate)
    steps_per_pass = -(-len(forget_x) // config.batch_size)

    def forget_loss() -> torch.Tensor:
        """f: the forget prompt's prediction on a noisy forget image -> the unrelated prompt's (stop-gradient)."""
        batch = random_batch(len(forget_x), config.batch_size, generator)
        x_t, _, t = noisy(components, forget_x[batch], generator)
        out = unet(x_t, t, encoder_hidden_states=forget_emb[forget_i[batch]]).sample
        with torch.no_grad():
            target = unet(x_t, t, encoder_hidden_states=unrelated_emb[forget_i[batch]]).sample
        return F.mse_loss(out, target)

    losses, value, multipliers = [], 0.0, []
    for _ in range(config.epochs):
        # 2. Lower level: K passes of gradient steps on f from theta_i give f* (their mean loss); restore theta_i.
        theta_i = [p.detach().clone() for p in params]
        for _ in range(config.K_steps):
            inner = []
            for _ in range(steps_per_pass):
                loss = forget_loss()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                inner.append(loss.item())
            value = sum(inner) / len(inner)
        with torch.no_grad():
            for p, saved in zip(params, theta_i):
                p.copy_(saved)

        # 3. Upper level: one pass of steps on L_r + lambda (f - f*).
        for _ in range(steps_per_pass):
            retain = random_batch(len(retain_x), config.batch_size, generator)
            loss_r = denoising_loss(components, unet, retain_x[retain], retain_emb[retain_i[retain]], generator)
            loss_q = forget_loss() - value
            if config.lambda_bome < 0:
                grad_q = torch.autograd.grad(loss_q, params, retain_graph=True, allow_unused=True)
                grad_r = torch.autograd.grad(loss_r, params, retain_graph=True, allow_unused=True)
                flat = lambda grads: torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()  # noqa: E731
                                                for g, p in zip(grads, params)])
                multiplier = bome_multiplier(flat(grad_r), flat(grad_q), config.eta_bome)
            else:
                multiplier = config.lambda_bome
            loss = loss_r + multiplier * loss_q
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            multipliers.append(multiplier)

    edited = finetuned_model(components, unet, params, losses, start)
    edited.info.update(value_function=value, mean_lambda=sum(multipliers) / len(multipliers),
                       forget_images=len(forget_x), retain_images=len(retain_x))
    return edited
