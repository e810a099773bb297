"""Attacks on erased text-to-image models: each card recovers an erased concept from an `EditedDiffusion` (the
edited-model interface of methods/t2i/diffusion.py) and returns an `AttackOutput`, which the testbed scores
(`Testbed.score_attack`: pre- and post-attack ASR as UnlearnDiffAtk reports them).

An attack card is `attack(edited, request, config, seed, testbed) -> AttackOutput`:
- `edited`: the target (an erased model, or the unedited base model);
- `request`: the `EraseRequest` of the erased concept (its forget prompts are the prompts to attack; its real images
  are what Concept Inversion inverts);
- `testbed`: for `base_model()`, the unerased model that some attacks use (UnlearnDiffAtk's and P4D's reference
  images and noise predictions, the text encoder of the text-only attacks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class AttackOutput:
    """What an attack produced.

    - prompts: adversarial prompts (discrete attacks), saved with the results so anyone can reuse them;
    - embeddings: prompt embeddings (B, L, D) as the target's text encoder would output them (attacks that work in
      embedding space, e.g. a learned token), sampled with `EditedDiffusion.sample_embeddings`;
    - queries: forward passes of a model (UNet or text encoder), counted per prompt in a batch: the attack's cost
      besides its time;
    - info: the attack's own figures (final loss, the learned token's norm, ...), JSON-ready.
    Exactly one of prompts / embeddings is set.
    """

    prompts: Optional[list] = None
    embeddings: Optional[torch.Tensor] = None
    queries: int = 0
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if (self.prompts is None) == (self.embeddings is None):
            raise ValueError("an AttackOutput holds exactly one of prompts or embeddings")
        if self.prompts is not None and not self.prompts:
            raise ValueError("an AttackOutput's prompts must not be empty")
