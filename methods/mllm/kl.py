"""KL minimisation on a multimodal LLM, a baseline of MLLMU-Bench (catalog id `liu2024protecting`) and CLEAR
(`dontsov2024clear`).

GA on the forget set, while the retain answers' next-token distributions are held to those of the model before
unlearning (the TOFU definition, which CLEAR follows):

    min_theta  -L_NLL(D_f) + kl_weight * E_{D_r} KL( p_theta0(. | s) || p_theta(. | s) )

MLLMU-Bench's script adds the retain NLL to the KL term (retain loss = NLL + KL over the full-vocabulary logits of
every position, 'batchmean') and alternates forget and retain optimizer steps; set `retain_nll_weight=1.0` to add
the NLL. Here the KL is taken at the answer positions only, like every other loss of this package.

Steps (the loop is GA's, see `ga.py`):
  1. freeze a copy of the fine-tuned model as the reference p_theta0;
  2. each step: a forget batch and a random retain batch;
  3. loss = -NLL(forget answers) + kl_weight * KL(reference || model) on the retain answer positions
     (+ retain_nll_weight * NLL(retain answers));
  4. backward, clip, AdamW step, linear decay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..core.config import check_config
from .ga import GAConfig, GradientAscent
from .losses import kl_to_reference, nll_from_logits, shifted_logits


@dataclass
class KLConfig(GAConfig):
    kl_weight: float = 1.0  # [TOFU / CLEAR: GA + KL on retain, weight 1]
    retain_nll_weight: float = 0.0  # 0 [TOFU, CLEAR]; MLLMU-Bench adds the retain NLL (1.0) [official code]

    def __post_init__(self):
        super().__post_init__()
        check_config(self, kl_weight="[0,1e3]", retain_nll_weight="[0,1e3]")


class KLMinimisation(GradientAscent):
    config_class = KLConfig
    needs_reference = True

    @property
    def uses_retain(self) -> bool:
        return True

    def retain_loss(self, model, retain_batch: dict) -> torch.Tensor:
        """KL(reference || model) at the retain answer positions (plus the optional retain NLL)."""
        logits = shifted_logits(model, retain_batch)
        with torch.no_grad():
            reference_logits = shifted_logits(self.reference, retain_batch)
        loss = self.config.kl_weight * kl_to_reference(logits, reference_logits, retain_batch)
        if self.config.retain_nll_weight:
            loss = loss + self.config.retain_nll_weight * nll_from_logits(logits, retain_batch)
        return loss

    def loss(self, model, forget_batch: dict, retain_batch: Optional[dict]) -> torch.Tensor:
        return self.forget_loss(model, forget_batch) + self.retain_loss(model, retain_batch)


def unlearn(model, task, config: Optional[KLConfig] = None, callback: Optional[Callable] = None) -> dict:
    """KL minimisation; edits `model` in place and returns the run's info."""
    return KLMinimisation(config).run(model, task, callback)
