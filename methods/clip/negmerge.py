"""NegMerge: sign-consensual merging of task vectors for unlearning (Kim, Han and Choe, ICML 2025).

Follows the paper (arXiv 2410.05583 v2); the official repository naver-ai/negmerge@a176fa4 holds only a README (the
code was not released), so the fine-tuning of each candidate follows task arithmetic's code
(mlfoundations/task_vectors@826a64c, src/finetune.py), as the paper builds on it.

1. Fine-tune K copies of the image encoder on the forget pairs with different hyper-parameters (task arithmetic's
   recipe: frozen zero-shot head, cross-entropy, AdamW, warm-up + cosine); tau_k = theta_k - theta_pre.
2. Merge by sign consensus (the paper's Eq. 1): keep an element only where every tau_k has the same sign, and take
   the mean of the tau_k there; elsewhere the merged vector is 0.
3. Negate: theta = theta_pre - lambda * tau_merged, lambda chosen as in task arithmetic (the lowest forget accuracy
   whose control accuracy stays >= 95% of the pre-trained model's, on a grid in [0, 1]).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional

import torch

from ..core.config import check_config
from .edited import CLIPTask
from .taskvector import finetune_image_encoder, negate_and_apply


@dataclass
class NegMergeConfig:
    # candidate fine-tunes: the paper varies the fine-tuning hyper-parameters; here learning rate x epochs
    learning_rates: tuple = (1e-5, 5e-6)  # the paper's candidate grid was not read: task_vectors' 1e-5 and half
    epochs: tuple = (5, 10)  # ... and task_vectors' epochs table (MNIST 5) and twice that
    label_smoothing: float = 0.0  # src/args.py --ls default
    weight_decay: float = 0.1  # src/args.py --wd default
    batch_size: int = 128  # src/finetune.py (__main__)
    warmup_steps: int = 500  # src/args.py --warmup_length default
    grad_clip: float = 1.0  # src/finetune.py
    scaling_coef: Optional[float] = None  # None: chosen on the grid (paper: as task arithmetic)
    coef_grid_steps: int = 20
    coef_max: float = 1.0
    control_threshold: float = 0.95
    control_samples: int = 1000

    def __post_init__(self):
        check_config(self, label_smoothing="[0,1)", weight_decay=">=0", batch_size=">=1", warmup_steps=">=0",
                     grad_clip=">0", scaling_coef=">=0", coef_grid_steps=">=1", coef_max=">0",
                     control_threshold="[0,1]", control_samples=">=1")
        if not self.learning_rates or not self.epochs or any(v <= 0 for v in self.learning_rates + self.epochs):
            from ..core.config import ConfigError

            raise ConfigError("NegMergeConfig.learning_rates and .epochs must be non-empty tuples of positive values")


def sign_consensus_merge(vectors: list) -> dict:
    """The paper's Eq. 1: element-wise, the mean of the task vectors where all their signs agree, else 0."""
    merged = {}
    for name in vectors[0]:
        stacked = torch.stack([vector[name] for vector in vectors])
        signs = torch.sign(stacked)
        agree = (signs == signs[0]).all(dim=0) & (signs[0] != 0)
        merged[name] = torch.where(agree, stacked.mean(dim=0), torch.zeros_like(stacked[0]))
    return merged


def unlearn(model, task: CLIPTask, config: NegMergeConfig, seed: int = 0) -> dict:
    if len(task.forget) == 0:
        raise ValueError("NegMerge needs forget pairs to fine-tune on")
    # 1. the candidate task vectors
    vectors = []
    for k, (lr, epochs) in enumerate(itertools.product(config.learning_rates, config.epochs)):
        vectors.append(finetune_image_encoder(model, task, lr, config.weight_decay, config.batch_size, epochs,
                                              config.warmup_steps, config.label_smoothing, config.grad_clip,
                                              seed + k))
    # 2. sign-consensus merge
    merged = sign_consensus_merge(vectors)
    kept = sum(int((v != 0).sum()) for v in merged.values()) / max(1, sum(v.numel() for v in merged.values()))
    # 3. negate and apply
    info = negate_and_apply(model, task, merged, config, seed)
    return {**info, "candidates": len(vectors), "consensus_fraction": kept}
