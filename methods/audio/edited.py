"""The edited-model interface of an audio card: the classifier as the card left it and the feature extractor that
feeds it, plus the card's own record. Attacks reach the model (logits, hidden states) through it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class EditedAudioClassifier:
    model: Any  # a transformers audio classifier (e.g. WhisperForAudioClassification), frozen: eval, no gradients
    feature_extractor: Any  # its feature extractor (WhisperFeatureExtractor, Wav2Vec2FeatureExtractor, ...)
    info: dict = field(default_factory=dict)

    @property
    def input_name(self) -> str:
        """The model argument the feature extractor fills: "input_features" or "input_values"."""
        return self.feature_extractor.model_input_names[0]

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return self.model(**{self.input_name: features.to(device)}).logits

    @torch.no_grad()
    def classify(self, waveforms, sampling_rate: int = 16000) -> list:
        """Keyword labels of raw waveforms (1-D float arrays), through the feature extractor."""
        inputs = self.feature_extractor(list(waveforms), sampling_rate=sampling_rate, padding=True,
                                        return_tensors="pt")
        predicted = self.logits(inputs[self.input_name]).argmax(-1).tolist()
        return [self.model.config.id2label[i] for i in predicted]
