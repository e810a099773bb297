"""PO, refusal ("I don't know") preference optimisation, the baseline of UMU-Bench (catalog id `wang2025umubench`)
and TOFU's IDK (`maini2024tofu`) as multimodal LLMs run it.

Follows QDRhhhh/UMU-bench@93b9900, unlearn/PO.py.

Instead of pushing the forget answers down, PO teaches the model to refuse: every forget question (with its image,
or text-only) is paired with a refusal drawn from a list of "I don't know" answers, and the model is fine-tuned on
those pairs while ordinary training on the retain questions keeps the rest:

    min_theta  L_NLL(D_f with refusal answers) + gamma * L_NLL(D_r),     gamma = 1

UMU-Bench's script runs the image + question and the text-only batches in two backward passes per step (the
text-only pair weighted by alpha = 1) and trains on every token of the sequence (labels = input ids); here both
modalities share one batch and only the answer tokens are trained, as in every card of this package. CLEAR's `idk`
loss has the same form (retain NLL + forget-to-refusal NLL), but its data module hands the trainer the forget item
instead of the refusal item (mm/dataset.py), so it is not followed.

A tokenizer may know the refusal words without the model having embedding rows for them (the MiniProfiles tiny
model is built over its trained vocabulary only); the card then resizes the token embeddings first, as UMU-Bench's
script does (`model.resize_token_embeddings(len(processor.tokenizer))`).

Steps (the loop is GA's, see `ga.py`):
  1. give the model embedding rows for every token of its tokenizer (no-op when it has them);
  2. draw one refusal per forget question (seeded) and make it the question's target;
  3. each step: a batch of refusal pairs and a random retain batch; loss = NLL(refusals) + gamma * NLL(retain);
  4. backward, (optional) clipping, AdamW step, linear decay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..core.config import ConfigError
from .graddiff import GradDiffConfig, GradientDifference
from .losses import answer_nll


@dataclass
class POConfig(GradDiffConfig):
    """Defaults are UMU-Bench's (QDRhhhh/UMU-bench@93b9900, unlearn/PO.py argparse and training loop); a testbed's
    adaptations are declared in methods/registry.yaml."""

    learning_rate: float = 1e-5  # --lr 1e-5
    weight_decay: float = 0.01  # torch.optim.AdamW(model.parameters(), lr=...): torch's default decay
    lr_schedule: str = "linear"  # get_scheduler("linear", num_warmup_steps=0)
    max_grad_norm: Optional[float] = None  # PO.py does not clip gradients
    epochs: int = 5  # --num_epochs 5
    forget_batch_size: int = 6  # --batch_size 6
    retain_batch_size: int = 6  # --batch_size 6 (the retain loaders)
    forget_modalities: tuple = ("visual", "text")  # PO.py trains the image + question and the text-only loaders
    forget_weight: float = 1.0  # weight of the refusal NLL (PO.py: 1)
    retain_weight: float = 1.0  # --gamma 1.0


def ensure_vocabulary(model, tokenizer) -> int:
    """Give `model` an embedding row (and an output row) for every token `tokenizer` knows; returns the rows added."""
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) <= rows:
        return 0
    model.resize_token_embeddings(len(tokenizer))
    return len(tokenizer) - rows


def refusal_targets(task, rows: list, generator: torch.Generator) -> list:
    """The rows with a refusal, drawn uniformly (seeded) from `task.refusals`, as each question's target."""
    if not task.refusals:
        raise ConfigError("this card trains towards refusals, but the task offers none (task.refusals is empty)")
    picks = torch.randint(len(task.refusals), (len(rows),), generator=generator).tolist()
    return task.with_answers(rows, [task.refusals[i] for i in picks])


class RefusalPO(GradientDifference):
    config_class = POConfig

    def prepare(self, model, task) -> None:
        """Step 1: embedding rows for the refusal words (before the optimizer is built)."""
        self.added_tokens = ensure_vocabulary(model, task.tokenizer)
        super().prepare(model, task)

    def forget_rows(self, task) -> list:
        """Step 2: the forget questions of the unlearned modalities, each with its refusal as the target."""
        generator = torch.Generator().manual_seed(int(task.seed) + 1)
        return refusal_targets(task, super().forget_rows(task), generator)

    def forget_loss(self, model, forget_batch: dict) -> torch.Tensor:
        """+L_NLL of the refusals: the forget questions are answered with "I don't know"."""
        return answer_nll(model, forget_batch)

    def run(self, model, task, callback: Optional[Callable] = None) -> dict:
        info = super().run(model, task, callback)
        return {**info, "added_tokens": self.added_tokens}


def unlearn(model, task, config: Optional[POConfig] = None, callback: Optional[Callable] = None) -> dict:
    """PO (refusal training); edits `model` in place (adding embedding rows if needed) and returns the run's info."""
    return RefusalPO(config).run(model, task, callback)
