"""The edited-model interface of a multimodal-LLM card: the model as the card left it and the processor that feeds
it, plus the card's own figures. Attacks reach the model (logits, hidden states, generation) through it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class EditedMLLM:
    model: Any  # a LlavaForConditionalGeneration, frozen (eval mode, no gradients)
    processor: Any  # its LlavaProcessor (tokenizer + image processor)
    info: dict = field(default_factory=dict)
