"""Concept erasure by task-vector negation (Pham, Marshall, Hegde & Cohen, 2024, "Robust Concept Erasure Using Task
Vectors"; task arithmetic of Ilharco et al., ICLR 2023). Catalog ids: `pham2024robust`, `ilharco2022editing`.

Follows mlfoundations/task_vectors@826a64c, src/task_vectors.py (the vector, its negation and `apply_to`) and
src/finetune.py (the fine-tuning recipe: AdamW, cosine schedule with linear warm-up, gradient norm clipped to 1); the diffusion setting is the
paper's (no official code of Pham et al. was found).

1. Fine-tune a copy of the UNet on the concept alone: the ordinary denoising loss on images of the concept with its
   prompts, theta_ft = argmin E || eps - eps_theta(x_t, c_f, t) ||^2 starting from theta_pre.
2. The task vector is the weight difference tau = theta_ft - theta_pre (every floating-point tensor).
3. Erase by negation: theta_new = theta_pre - alpha * tau (`(-tau).apply_to(theta_pre, scaling_coef=alpha)`).

Unlike prompt-based erasers the edit does not depend on the prompt: it moves the weights away from whatever
fine-tuning on the concept strengthened, which Pham et al. argue makes it robust to prompts that were never seen.
The paper chooses alpha with Diverse Inversion (the smallest alpha under which no learnt word embedding still
generates the concept); this card takes alpha as a parameter.

Images: the request's real images of the concept, or samples of the base model when it carries none (always on
Stable Diffusion).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..core.config import check_config
from ..core.seeding import make_generator
from .diffusion import DiffusionComponents, EditedDiffusion, EraseRequest, encode_prompts, frozen_copy
from .salun import split_evenly
from .training import TRAIN_METHODS, batches, denoising_loss, parameter_names, prompt_images, trainable


@dataclass
class TaskVectorConfig:
    """Defaults are mlfoundations/task_vectors@826a64c (src/args.py, src/finetune.py and the README's negation
    example); a testbed's adaptations are declared in methods/registry.yaml."""

    scaling_coef: float = 0.5  # README negation example `apply_to(pretrained_checkpoint, scaling_coef=0.5)`
    learning_rate: float = 1e-5  # finetune.py `args.lr = 1e-5`
    weight_decay: float = 0.1  # args.py `--wd` default
    warmup_steps: int = 500  # args.py `--warmup_length` default
    epochs: int = 5  # finetune.py: 5 epochs for MNIST (the README's negation example)
    batch_size: int = 128  # finetune.py `args.batch_size = 128`
    max_grad_norm: float = 1.0  # finetune.py `clip_grad_norm_(params, 1.0)`
    train_method: str = "full"  # the whole model is fine-tuned (the image encoder in task_vectors)
    num_images: int = 800  # images of the concept (Pham et al. fine-tune on generated images of the concept)

    def __post_init__(self):
        check_config(self, {"train_method": TRAIN_METHODS}, scaling_coef="[0,1e3]", learning_rate="(0,1]",
                     weight_decay="[0,10]", warmup_steps=">=0", epochs=">=1", batch_size=">=1", max_grad_norm="(0,1e6]",
                     num_images=">=1")


def cosine_lr(step: int, base_lr: float, warmup: int, total: int) -> float:
    """task_vectors' `cosine_lr`: linear warm-up to base_lr over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress)) * base_lr


def task_vector(pretrained: dict, finetuned: dict) -> dict:
    """tau = theta_ft - theta_pre for every floating-point tensor (integer buffers are skipped)."""
    return {k: finetuned[k] - v for k, v in pretrained.items() if v.is_floating_point()}


def apply_negated(pretrained: dict, vector: dict, scaling_coef: float) -> dict:
    """theta_pre + scaling_coef * (-tau)."""
    return {k: v - scaling_coef * vector[k] if k in vector else v for k, v in pretrained.items()}


def erase(components: DiffusionComponents, request: EraseRequest, config: TaskVectorConfig,
          seed: int = 0) -> EditedDiffusion:
    """Fine-tune a copy on the concept, then subtract alpha times the weight difference from the original weights."""
    start = time.perf_counter()
    generator = make_generator(seed)
    torch.manual_seed(seed)

    # 1. Images of the concept with their prompts.
    images, index = prompt_images(components, request, request.forget_prompts,
                                  split_evenly(config.num_images, len(request.forget_prompts)), generator)
    text = encode_prompts(components, request.forget_prompts)

    # 2. Fine-tune a copy on the concept (AdamW, cosine schedule with warm-up, as task_vectors' finetune.py).
    finetuned = frozen_copy(components.unet)
    params = trainable(finetuned, parameter_names(finetuned, config.train_method))
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(images) // config.batch_size)
    total = config.epochs * steps_per_epoch
    losses, step = [], 0
    for _ in range(config.epochs):
        for batch in batches(len(images), config.batch_size, generator):
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, config.learning_rate, config.warmup_steps, total)
            loss = denoising_loss(components, finetuned, images[batch], text[index[batch]], generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            losses.append(loss.item())
            step += 1

    # 3. tau = theta_ft - theta_pre; theta_new = theta_pre - alpha tau.
    pretrained = {k: v.detach() for k, v in components.unet.state_dict().items()}
    vector = task_vector(pretrained, {k: v.detach() for k, v in finetuned.state_dict().items()})
    edited_unet = frozen_copy(components.unet)
    edited_unet.load_state_dict(apply_negated(pretrained, vector, config.scaling_coef))
    tail = losses[-20:]
    return EditedDiffusion(components.with_unet(edited_unet), info={
        "trainable_parameters": sum(p.numel() for p in params),
        "final_loss": sum(tail) / len(tail),
        "task_vector_norm": float(torch.sqrt(sum(v.pow(2).sum() for v in vector.values()))),
        "images": len(images),
        "wall_time_s": time.perf_counter() - start,
    })
