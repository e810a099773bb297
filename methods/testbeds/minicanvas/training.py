"""Training MiniCanvas' models once per machine: the text encoder and UNet jointly with the DDPM loss (with prompt
dropout for classifier-free guidance), and the judge on the real train split."""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ...core.seeding import make_generator, seed_everything
from ...t2i.diffusion import tokenize
from .config import MiniCanvasConfig
from .model import Judge, build_models, build_schedulers, text_encoder_config, unet_config
from .prompts import ALIASES, DIGITS, FILLERS, STYLES, build_tokenizer, full_prompt, object_only_prompt, style_only_prompt


def training_captions(digits: torch.Tensor, styles: torch.Tensor, cfg: MiniCanvasConfig,
                      generator: torch.Generator) -> list:
    """One caption per image: the prompt variant (full; object dropped; style dropped; "" for CFG), each concept word
    replaced by one of its three aliases with probability `p_alias`, and a filler word in front with `p_filler`."""
    n = len(digits)
    variant_probs = torch.tensor(
        [1 - cfg.p_drop_all - cfg.p_drop_object - cfg.p_drop_style, cfg.p_drop_object, cfg.p_drop_style, cfg.p_drop_all]
    )
    variants = torch.multinomial(variant_probs, n, replacement=True, generator=generator).tolist()
    use_alias = (torch.rand(n, 2, generator=generator) < cfg.p_alias).tolist()
    alias_index = torch.randint(0, 3, (n, 2), generator=generator).tolist()
    use_filler = (torch.rand(n, generator=generator) < cfg.p_filler).tolist()
    filler_index = torch.randint(0, len(FILLERS), (n,), generator=generator).tolist()

    def word(concept: str, row: int, column: int) -> str:
        return ALIASES[concept][alias_index[row][column]] if use_alias[row][column] else concept

    captions = []
    for row, (d, s, variant) in enumerate(zip(digits.tolist(), styles.tolist(), variants)):
        digit, style = word(DIGITS[d], row, 0), word(STYLES[s], row, 1)
        text = [full_prompt(digit, style), style_only_prompt(style), object_only_prompt(digit), ""][variant]
        if text and use_filler[row]:
            text = f"{FILLERS[filler_index[row]]} {text}"
        captions.append(text)
    return captions


def _cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def train_base_model(cfg: MiniCanvasConfig, data: dict, log: Callable[[str], None] = print) -> dict:
    """Train text encoder + UNet jointly with the DDPM loss; return EMA state dicts and training stats.

    Prompt dropout: 10% "" (CFG's unconditional branch), 10% object dropped
    ("a digit in S style"), 10% style dropped ("a digit three"), 70% the full prompt; aliases and fillers as in
    `training_captions`.
    """
    torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed)
    text_encoder, unet = build_models(text_encoder_config(cfg), unet_config(cfg))
    ddpm, _ = build_schedulers()
    tokenizer = build_tokenizer()
    generator = make_generator(cfg.seed + 1)  # training stream, independent from the judge's

    train = data["train"]
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _cosine_with_warmup(step, cfg.warmup_steps, cfg.train_steps)
    )
    ema_params = [p.detach().clone() for p in params]

    unet.train()
    text_encoder.train()
    start, losses = time.perf_counter(), []
    for step in range(cfg.train_steps):
        index = torch.randint(len(train.images), (cfg.batch_size,), generator=generator)
        captions = training_captions(train.digits[index], train.styles[index], cfg, generator)
        input_ids = tokenize(tokenizer, captions)
        clean = train.images[index]
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, ddpm.config.num_train_timesteps, (cfg.batch_size,), generator=generator)
        noisy = ddpm.add_noise(clean, noise, timesteps)

        prediction = unet(noisy, timesteps, encoder_hidden_states=text_encoder(input_ids)[0]).sample
        loss = F.mse_loss(prediction, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - cfg.ema_decay)
        losses.append(loss.item())
        if (step + 1) % 200 == 0:
            log(f"[minicanvas] base model step {step + 1}/{cfg.train_steps} loss {np.mean(losses[-200:]):.4f}")

    with torch.no_grad():
        for p, ema in zip(params, ema_params):
            p.copy_(ema)
    return {
        "unet": unet.state_dict(),
        "text_encoder": text_encoder.state_dict(),
        "train_time_s": time.perf_counter() - start,
        "final_loss": float(np.mean(losses[-100:])),
    }


def train_judge(cfg: MiniCanvasConfig, data: dict, log: Callable[[str], None] = print) -> dict:
    """Train the judge on real train images (with small Gaussian noise augmentation); report held-out accuracy."""
    torch.set_num_threads(cfg.num_threads)
    seed_everything(cfg.seed + 100)
    judge = Judge()
    generator = make_generator(cfg.seed + 101)
    optimizer = torch.optim.Adam(judge.parameters(), lr=1e-3)
    train, test = data["train"], data["test"]
    start = time.perf_counter()
    judge.train()
    for epoch in range(cfg.judge_epochs):
        order = torch.randperm(len(train.images), generator=generator)
        for begin in range(0, len(order), 128):
            index = order[begin : begin + 128]
            images = train.images[index] + cfg.judge_noise_std * torch.randn(
                train.images[index].shape, generator=generator
            )
            digit_logits, style_logits, _ = judge(images)
            loss = F.cross_entropy(digit_logits, train.digits[index]) + F.cross_entropy(style_logits, train.styles[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    judge.eval()
    digits, styles, _ = judge.predict(test.images)
    stats = {
        "object_accuracy": float((digits == test.digits).float().mean()),
        "style_accuracy": float((styles == test.styles).float().mean()),
        "train_time_s": time.perf_counter() - start,
        "n_test_images": len(test.images),
    }
    log(f"[minicanvas] judge held-out accuracy: object {stats['object_accuracy']:.3f}, style {stats['style_accuracy']:.3f}")
    return {"state": judge.state_dict(), **stats}
