"""KL minimisation on a multimodal LLM, a baseline of MLLMU-Bench (catalog id `liu2024protecting`) and CLEAR
(`dontsov2024clear`).

Follows locuslab/open-unlearning@d3d7cf9, src/trainer/utils.py (`compute_kl_divergence`), the TOFU definition that
CLEAR uses; MLLMU-Bench's variant (franciscoliu/MLLMU-Bench@0e3098e, baselines/KL_Min.py) is a config away.

GA on the forget set, while the retain answers' next-token distributions are held to those of the model before
unlearning:

    min_theta  -L_NLL(D_f) + kl_weight * E_{D_r} KL( p_theta0(. | s) || p_theta(. | s) )

open-unlearning takes the KL over the full vocabulary at every position of the retain sequences (the logits
flattened to (batch x positions, vocabulary), 'batchmean': the mean over positions), prompt and image tokens
included: `kl_positions="all"`. `kl_positions="answer"` keeps only the answer positions, like every other loss of
this package. MLLMU-Bench adds the retain NLL to the KL (`retain_nll_weight=1.0`) and alternates forget and retain
optimizer steps.

Steps (the loop is GA's, see `ga.py`):
  1. freeze a copy of the fine-tuned model as the reference p_theta0;
  2. each step: a forget batch and a random retain batch;
  3. loss = -NLL(forget answers) + kl_weight * KL(reference || model) at the `kl_positions` of the retain batch
     (+ retain_nll_weight * NLL(retain answers));
  4. backward, AdamW step, linear decay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..core.config import check_config
from .ga import GAConfig, GradientAscent
from .logprobs import model_inputs
from .losses import kl_to_reference, nll_from_logits


@dataclass
class KLConfig(GAConfig):
    kl_weight: float = 1.0  # [TOFU / CLEAR: GA + KL on retain, weight 1]
    retain_nll_weight: float = 0.0  # 0 [TOFU, CLEAR]; MLLMU-Bench adds the retain NLL (1.0) [official code]
    kl_positions: str = "all"  # "all" positions [open-unlearning compute_kl_divergence] or "answer" positions only

    def __post_init__(self):
        super().__post_init__()
        check_config(self, {"kl_positions": ("all", "answer")}, kl_weight="[0,1e3]", retain_nll_weight="[0,1e3]")


class KLMinimisation(GradientAscent):
    config_class = KLConfig
    needs_reference = True

    @property
    def uses_retain(self) -> bool:
        return True

    def retain_loss(self, model, retain_batch: dict) -> torch.Tensor:
        """KL(reference || model) at the `kl_positions` of the retain batch (plus the optional retain NLL)."""
        logits = model(**model_inputs(retain_batch)).logits.float()
        with torch.no_grad():
            reference_logits = self.reference(**model_inputs(retain_batch)).logits.float()
        if self.config.kl_positions == "all":
            kl = kl_to_reference(logits, reference_logits)
        else:  # the answer positions: position t predicts answer token t+1
            kl = kl_to_reference(logits[:, :-1], reference_logits[:, :-1], retain_batch["labels"][:, 1:] != -100)
        loss = self.config.kl_weight * kl
        if self.config.retain_nll_weight:
            loss = loss + self.config.retain_nll_weight * nll_from_logits(logits[:, :-1], retain_batch)
        return loss

    def loss(self, model, forget_batch: dict, retain_batch: Optional[dict]) -> torch.Tensor:
        return self.forget_loss(model, forget_batch) + self.retain_loss(model, retain_batch)


def unlearn(model, task, config: Optional[KLConfig] = None, callback: Optional[Callable] = None) -> dict:
    """KL minimisation; edits `model` in place and returns the run's info."""
    return KLMinimisation(config).run(model, task, callback)
