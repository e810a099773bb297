"""CleanCLIP: fine-tuning away a backdoor with multimodal and unimodal contrastive losses (Bansal et al., ICCV 2023).

Follows nishadsinghi/CleanCLIP@d6e2f1d, src/train.py (get_loss, train), src/main.py (the optimizer), src/scheduler.py,
src/parser.py and the README's "CleanCLIP Finetuning" command (--inmodal --complete_finetune, batch 64, 10 epochs,
50 warm-up steps, lr 1e-5). The poisoned pairs are not needed: the card fine-tunes the poisoned model on clean pairs.

For a batch of clean pairs (x_i, t_i) with augmented views (x~_i, t~_i) (AutoAugment for images, EDA for text):
    L = w_clip * L_CLIP(x, t) + w_inmodal * (CE(s * f_I(x) . f_I(x~)^T, I) + CE(s * f_T(t) . f_T(t~)^T, I)) / 2
where L_CLIP is CLIP's symmetric cross-modal loss and s = exp(logit_scale). Both towers are fine-tuned with AdamW
(no weight decay on gains, biases and the logit scale), a linear warm-up then cosine learning rate, and the logit
scale clamped to [0, ln 100]. Re-aligning each modality on its own weakens the trigger -> target association that
only the cross-modal loss had learned.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from ..core.config import check_config
from ..core.seeding import make_generator
from .edited import CLIPTask, parameter_groups, batches, contrastive_loss, image_features, same_caption, text_features


@dataclass
class CleanCLIPConfig:
    learning_rate: float = 1e-5  # nishadsinghi/CleanCLIP@d6e2f1d, README CleanCLIP finetuning (--lr 1e-5)
    batch_size: int = 64  # README (--batch_size 64)
    epochs: int = 10  # README (--epochs 10)
    warmup_steps: int = 50  # README (--num_warmup_steps 50)
    weight_decay: float = 0.1  # src/parser.py --weight_decay default
    beta1: float = 0.9  # src/parser.py
    beta2: float = 0.999  # src/parser.py
    eps: float = 1e-8  # src/parser.py
    clip_weight: float = 1.0  # src/parser.py --clip_weight
    inmodal_weight: float = 1.0  # src/parser.py --inmodal_weight
    eda_alpha: float = 0.1  # utils/eda.py eda(): alpha_rs = p_rd = 0.1
    max_shift: int = 1  # image augmentation on 8x8 pixels: a random translation of up to this many pixels
    noise_std: float = 0.1  # ... and Gaussian noise of this std

    def __post_init__(self):
        check_config(self, learning_rate=">0", batch_size=">=2", epochs=">=1", warmup_steps=">=0",
                     weight_decay=">=0", beta1="[0,1)", beta2="[0,1)", eps=">0", clip_weight=">=0",
                     inmodal_weight=">=0", eda_alpha="[0,1]", max_shift=">=0", noise_std=">=0")


def eda(caption: str, alpha: float, rng: random.Random) -> str:
    """utils/eda.py's random swap and random deletion (synonym replacement and insertion need WordNet, whose words
    are not in the testbed's vocabulary): one of the two operations, applied to max(1, alpha * len) words."""
    words = caption.split()
    if len(words) < 2:
        return caption
    n = max(1, int(alpha * len(words)))
    if rng.random() < 0.5:
        for _ in range(n):
            i, j = rng.sample(range(len(words)), 2)
            words[i], words[j] = words[j], words[i]
    else:
        kept = [w for w in words if rng.random() > alpha]
        words = kept or [rng.choice(words)]
    return " ".join(words)


def augment_images(images: torch.Tensor, max_shift: int, noise_std: float, generator) -> torch.Tensor:
    """The image view (CleanCLIP uses torchvision's AutoAugment on 224-pixel photos): a random translation and
    Gaussian noise, clamped to the pixel range."""
    out = images.clone()
    if max_shift > 0:
        shifts = torch.randint(-max_shift, max_shift + 1, (len(images), 2), generator=generator)
        for i, (dy, dx) in enumerate(shifts.tolist()):
            out[i] = torch.roll(out[i], shifts=(dy, dx), dims=(-2, -1))
    if noise_std > 0:
        out = out + noise_std * torch.randn(out.shape, generator=generator)
    return out.clamp(float(images.min()), float(images.max()))


def cleanclip_loss(image: torch.Tensor, text: torch.Tensor, image_aug: torch.Tensor, text_aug: torch.Tensor,
                   scale: torch.Tensor, positives: torch.Tensor, clip_weight: float, inmodal_weight: float) -> tuple:
    """src/train.py get_loss with --inmodal: (loss, crossmodal, inmodal) on normalised embeddings."""
    crossmodal = contrastive_loss(scale * image @ text.t(), positives)
    target = torch.arange(len(image), device=image.device)
    image_inmodal = torch.nn.functional.cross_entropy(scale * image @ image_aug.t(), target)
    text_inmodal = _row_cross_entropy(scale * text @ text_aug.t(), positives)
    inmodal = (image_inmodal + text_inmodal) / 2
    return clip_weight * crossmodal + inmodal_weight * inmodal, crossmodal, inmodal


def _row_cross_entropy(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Row-wise cross-entropy with a target uniform over each row's positives (the diagonal alone when captions
    are unique, i.e. CleanCLIP's CE(logits, arange))."""
    targets = positives.float() / positives.float().sum(dim=1, keepdim=True)
    return -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def unlearn(model, task: CLIPTask, config: CleanCLIPConfig, seed: int = 0) -> dict:
    clean = task.retain
    if len(clean) < 2:
        raise ValueError("CleanCLIP needs clean pairs to fine-tune on")
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.learning_rate,
                                  betas=(config.beta1, config.beta2), eps=config.eps)
    generator = make_generator(seed)
    rng = random.Random(seed)
    steps_per_epoch = math.ceil(len(clean) / config.batch_size)
    total = config.epochs * steps_per_epoch
    step, history = 0, []
    model.train()
    for _ in range(config.epochs):
        for index in batches(len(clean), config.batch_size, generator):
            if len(index) < 2:
                continue
            lr = (config.learning_rate * (step + 1) / config.warmup_steps if step < config.warmup_steps else
                  0.5 * (1 + math.cos(math.pi * (step - config.warmup_steps) / max(1, total - config.warmup_steps)))
                  * config.learning_rate)  # src/scheduler.py cosine_scheduler
            for group in optimizer.param_groups:
                group["lr"] = lr
            captions = clean.captions[index]
            texts = [task.caption_texts[int(c)] for c in captions]
            augmented = [eda(text, config.eda_alpha, rng) for text in texts]
            images = clean.images[index]
            views = augment_images(images, config.max_shift, config.noise_std, generator)
            image = image_features(model, task.pixels(torch.cat([images, views])))
            text = text_features(model, task.encoder.texts(texts + augmented))
            n = len(index)
            loss, crossmodal, inmodal = cleanclip_loss(image[:n], text[:n], image[n:], text[n:],
                                                       model.logit_scale.exp(), same_caption(captions).to(image.device),
                                                       config.clip_weight, config.inmodal_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, 4.6052)  # src/train.py
            history.append([float(loss.detach()), float(crossmodal.detach()), float(inmodal.detach())])
            step += 1
    return {"steps": step, "final_losses": dict(zip(("loss", "crossmodal", "inmodal"), history[-1]))}
