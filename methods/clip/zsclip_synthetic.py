"""Zero-shot class unlearning in CLIP with synthetic samples (Kravets and Namboodiri, WACV 2025).

Follows akres001/Zero-Shot-Class-Unlearning-in-CLIP-with-Synthetic-Samples@0fd58ed: clip_forget_imagegen.py
(synthetic samples), clip_forget_losses.py (the loss), train_forget.py, train_utils.py and clip_forget_utils.py (the
schedule, the layer selection, the stopping rule); README / train.sh for the documented run.

1. Synthetic forget images, no real data: start from Gaussian noise and do gradient ascent on the zero-shot logit
   of the forget class, s(x) = exp(t) cos(f_I(x), w_c) - l2 * ||x||: x <- x + lr * grad / ||grad||, with random
   jitter, clamping to the valid pixel range and a blur every few steps; an image is kept once the softmax of
   100 * cos gives the class more than `high_prob` (lowered by `sub_prob` after a run that found none).
2. The loss (Lipschitz regularisation of both towers), for perturbations x' = x + N(0, std^2), n samples each:
       L = 1/(2n) sum_s sum_batch (||f_T(t) - f_I(x')|| + ||f_I(x) - f_I(x')||) / (2 ||x - x'||)
   with f_I(x') computed without gradient and t the class prompt; minimising it flattens the class's embeddings.
3. Only the top-k parameters of each tower by mean |grad| are updated (k per tower, recomputed every batch); Adam.
4. Epochs over the synthetic set: stop once its zero-shot accuracy is <= `min_train_acc_stop`; after an epoch that did
   not lower it, roll the model back and move to the next (std, k) of the schedule.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.config import check_config
from ..core.seeding import make_generator
from .edited import CLIPTask, image_features, text_features


@dataclass
class ZSClipSyntheticConfig:
    # synthetic images (clip_forget_imagegen.py generate_images defaults; gen_data.py)
    n_generated: int = 64  # n_generated
    num_iterations: int = 3000  # num_iterations
    gen_learning_rate: float = 25.0  # learning_rate (a step of this L2 norm in 3x224x224 normalised pixels)
    l2_reg: float = 1e-3  # l2_reg
    blur_every: int = 10  # blur_every
    blur_sigma: float = 0.5  # blur_image(img.data, sigma=0.5)
    max_jitter: int = 16  # max_jitter (pixels of 224)
    high_prob: float = 0.8  # gen_data.py --high_prob default
    sub_prob: float = 0.025  # gen_data.py --sub_prob default
    # unlearning (train_forget.py, train.sh as the README runs it: n_samples 25, min_train_acc_stop 0.1)
    learning_rate: float = 5e-5  # clip_forget_utils.py get_model_optim: Adam lr 5e-5
    betas: tuple = (0.9, 0.98)  # Adam betas
    eps: float = 1e-6  # Adam eps
    weight_decay: float = 0.2  # Adam weight_decay
    batch_size: int = 64  # train_forget.py BATCH_SIZE
    n_samples: int = 25  # README / train.sh (argparse default 10)
    min_train_acc_stop: float = 0.1  # README / train.sh (argparse default 0.2)
    max_epochs: int = 30  # train.sh MAX_EPOCHS
    std_schedule: tuple = (0.1, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)  # train_utils.py set_param_schedules
    topk_vision: int = 25  # train_utils.py set_hyperparameters (ViT: 25)
    topk_text: int = 25  # (ViT: 25)
    topk_schedule: tuple = (0, 2, 5, 8, 10, 15, 20)  # ViT: added to the initial k at each schedule step

    def __post_init__(self):
        check_config(self, n_generated=">=1", num_iterations=">=1", gen_learning_rate=">0", l2_reg=">=0",
                     blur_every=">=1", blur_sigma=">=0", max_jitter=">=0", high_prob="(0,1)", sub_prob=">=0",
                     learning_rate=">0", eps=">0", weight_decay=">=0", batch_size=">=1", n_samples=">=1",
                     min_train_acc_stop="[0,1]", max_epochs=">=1", topk_vision=">=0", topk_text=">=0")
        if len(self.std_schedule) != len(self.topk_schedule) or not self.std_schedule:
            from ..core.config import ConfigError

            raise ConfigError("ZSClipSyntheticConfig.std_schedule and .topk_schedule must have the same, non-zero length")


def jitter(x: torch.Tensor, ox: int, oy: int) -> torch.Tensor:
    """clip_forget_imagegen.py jitter: roll by (ox, oy) pixels."""
    return torch.roll(x, shifts=(oy, ox), dims=(2, 3))


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """clip_forget_imagegen.py blur_image: a separable Gaussian blur (scipy gaussian_filter1d on both axes)."""
    if sigma <= 0:
        return x
    from scipy.ndimage import gaussian_filter1d

    array = gaussian_filter1d(gaussian_filter1d(x.detach().cpu().numpy(), sigma, axis=2), sigma, axis=3)
    return torch.from_numpy(array).to(x)


def generate_images(model, task: CLIPTask, head: torch.Tensor, config: ZSClipSyntheticConfig, shape: tuple,
                    low: float, high: float, seed: int) -> tuple:
    """Step 1 for the first forget class; images are optimised as one batch, each kept once it passes."""
    generator = make_generator(seed)
    target = task.forget_classes[0]
    kept, high_prob, attempts = [], config.high_prob, 0
    model.eval()
    while len(kept) < config.n_generated and attempts < 8:
        attempts += 1
        n = config.n_generated - len(kept)
        image = torch.randn((n,) + shape, generator=generator).to(task.device).requires_grad_(True)
        done = torch.zeros(n, dtype=torch.bool)
        for t in range(config.num_iterations):
            ox, oy = (int(v) for v in torch.randint(0, config.max_jitter + 1, (2,), generator=generator))
            with torch.no_grad():
                image.copy_(jitter(image, ox, oy))
            features = image_features(model, image)
            score = model.logit_scale.exp() * features @ head[target] - config.l2_reg * image.flatten(1).norm(dim=1)
            grad, = torch.autograd.grad(score.sum(), image)
            with torch.no_grad():
                norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * len(shape)))
                step = config.gen_learning_rate * grad / norms
                step[done] = 0
                image.add_(step)
                image.copy_(jitter(image, -ox, -oy))
                image.clamp_(low, high)
                if t % config.blur_every == 0:
                    blurred = blur(image, config.blur_sigma)
                    image.copy_(torch.where(done.view(-1, *([1] * len(shape))).to(image.device), image, blurred))
                probs = F.softmax(100.0 * image_features(model, image) @ head.t(), dim=1)
                passed = (probs.argmax(dim=1) == target) & (probs[:, target] > high_prob)
                done |= passed.cpu()
            if bool(done.all()):
                break
        kept.extend(image.detach()[done.to(image.device)])
        if not bool(done.any()):
            high_prob = max(high_prob - config.sub_prob, 0.45)
    images = torch.stack(kept) if kept else torch.zeros((0,) + shape)
    return images, {"generated": len(kept), "final_high_prob": high_prob, "generation_runs": attempts}


def lipschitz_loss_joint(model, tokens: dict, images: torch.Tensor, std: float, n_samples: int, low: float,
                         high: float, generator) -> torch.Tensor:
    """clip_forget_losses.py lipschitz_loss_joint (unnormalised features, noise clamped to the images' range)."""
    out_text = text_features(model, tokens, normalize=False)
    out_image = image_features(model, images, normalize=False)
    loss = images.new_zeros(())
    for _ in range(n_samples):
        noisy = (images + torch.randn(images.shape, generator=generator).to(images) * std).clamp(low, high)
        with torch.no_grad():
            out_noisy = image_features(model, noisy, normalize=False)
        in_norm = (images - noisy).flatten(1).norm(dim=1) * 2
        out_norm = (out_text - out_noisy).norm(dim=1) + (out_image - out_noisy).norm(dim=1)
        loss = loss + (out_norm / in_norm).sum().abs()
    return loss / (n_samples * 2)


def tower_of(name: str):
    """clip_forget_utils.py get_important_params_mask: model.visual (the whole image tower) and model.transformer
    (the text transformer's blocks)."""
    if name.startswith("vision_model.") or name.startswith("visual_projection"):
        return "vision"
    if name.startswith("text_model.encoder."):
        return "text"
    return None


def important_mask(model, topk_vision: int, topk_text: int) -> set:
    """Names of the top-k parameters of each tower by mean |grad| (p.grad.abs().sum() / p.numel())."""
    scores = {"vision": [], "text": []}
    for name, p in model.named_parameters():
        tower = tower_of(name)
        if tower is not None and p.grad is not None:
            scores[tower].append((float(p.grad.abs().sum()) / p.numel(), name))
    keep = set()
    for tower, k in (("vision", topk_vision), ("text", topk_text)):
        keep |= {name for _, name in sorted(scores[tower], reverse=True)[:k]}
    return keep


def unlearn(model, task: CLIPTask, config: ZSClipSyntheticConfig, seed: int = 0) -> dict:
    if not task.forget_classes:
        raise ValueError("zero-shot class unlearning needs a forget class (a digit, a style or a caption)")
    shape = tuple(task.pixels(task.forget.images[:1]).shape[1:])
    sample = task.pixels(torch.cat([task.forget.images[:64], task.retain.images[:64]]))
    low, high = float(sample.min()), float(sample.max())
    with torch.no_grad():
        head = task.head(model)
    # 1. synthetic forget images
    synthetic, generation = generate_images(model, task, head, config, shape, low, high, seed)
    if len(synthetic) == 0:
        return {**generation, "epochs": 0, "synthetic_acc": None}
    target = task.forget_classes[0]
    tokens = task.encoder.texts([task.templates[target][0]])
    labels = torch.full((len(synthetic),), target)
    prompt_tokens = {k: v.expand(len(synthetic), -1) for k, v in tokens.items()}

    def synthetic_accuracy() -> float:
        model.eval()
        with torch.no_grad():
            predictions = (image_features(model, synthetic) @ task.head(model).t()).argmax(dim=1).cpu()
        return float((predictions == labels).float().mean())

    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, betas=config.betas, eps=config.eps,
                                 weight_decay=config.weight_decay)
    generator = make_generator(seed + 1)
    n_batches = (len(synthetic) + config.batch_size - 1) // config.batch_size
    accumulate = min(n_batches, 5)
    schedule_index, best_acc, best_state = 0, 1.0, None
    accuracy = synthetic_accuracy()
    log = [{"epoch": 0, "acc": accuracy, "std": config.std_schedule[0]}]
    epoch = 0
    for epoch in range(1, config.max_epochs + 1):
        last_model, last_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
        std = config.std_schedule[schedule_index]
        k_vision = config.topk_vision + config.topk_schedule[schedule_index]
        k_text = config.topk_text + config.topk_schedule[schedule_index]
        stop = False
        for b in range(n_batches):
            index = slice(b * config.batch_size, (b + 1) * config.batch_size)
            model.train()
            batch_tokens = {k: v[index] for k, v in prompt_tokens.items()}
            loss = lipschitz_loss_joint(model, batch_tokens, synthetic[index], std, config.n_samples, low, high,
                                        generator) / accumulate
            loss.backward()
            keep = important_mask(model, k_vision, k_text)  # 3. only the top-k parameters of each tower move
            for name, p in model.named_parameters():
                if name not in keep:
                    p.grad = None
            if (b + 1) % accumulate == 0 or b + 1 == n_batches:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if synthetic_accuracy() <= config.min_train_acc_stop:
                stop = True
                break
        # 4. keep the epoch if it lowered the accuracy, else roll back and move along the schedule
        accuracy = synthetic_accuracy()
        log.append({"epoch": epoch, "acc": accuracy, "std": std, "k_vision": k_vision, "k_text": k_text})
        if accuracy < best_acc:
            best_acc, best_state = accuracy, copy.deepcopy(model.state_dict())
        else:
            model.load_state_dict(last_model)
            optimizer.load_state_dict(last_optimizer)
            schedule_index += 1
            if schedule_index == len(config.std_schedule):
                break
        if stop or accuracy <= config.min_train_acc_stop:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return {**generation, "epochs": epoch, "synthetic_acc": synthetic_accuracy(), "log": log}
