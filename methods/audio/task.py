"""What an audio unlearning card receives: the forget and retain utterances as model inputs, batching, and a way to
build a randomly initialised model of the same architecture.

`AudioUnlearningTask` holds features already computed by the model's feature extractor (log-mel for Whisper,
normalised waveforms for wav2vec2), so a card only sees tensors: `task.batches("retain", 32, generator)` yields one
epoch of (inputs, labels) batches in a seeded random order (the last, smaller batch included, as a DataLoader with
shuffle=True); `task.cycle("forget", ...)` repeats them endlessly (`itertools.cycle` over a loader, as the
official NegGrad+ loop zips the retain loader with a cycled forget loader); `task.logits(model, inputs)` runs the
classifier. `RunClock` times a card without the testbed's callbacks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch


@dataclass
class AudioUnlearningTask:
    forget_inputs: torch.Tensor
    forget_labels: torch.Tensor
    retain_inputs: torch.Tensor
    retain_labels: torch.Tensor
    input_name: str  # "input_features" or "input_values"
    num_labels: int
    new_model: Callable[[int], torch.nn.Module]  # seed -> a randomly initialised model of the same architecture
    seed: int
    device: torch.device = torch.device("cpu")

    def split(self, name: str) -> tuple:
        if name == "forget":
            return self.forget_inputs, self.forget_labels
        if name == "retain":
            return self.retain_inputs, self.retain_labels
        raise ValueError(f"unknown split {name!r}; use 'forget' or 'retain'")

    def size(self, name: str) -> int:
        return len(self.split(name)[1])

    def logits(self, model, inputs: torch.Tensor) -> torch.Tensor:
        return model(**{self.input_name: inputs.to(self.device)}).logits

    def batches(self, name: str, batch_size: int, generator: torch.Generator, shuffle: bool = True,
                rows: Optional[torch.Tensor] = None) -> Iterator[tuple]:
        """One epoch of (inputs, labels) batches of a split (or of its `rows`), shuffled with `generator`."""
        inputs, labels = self.split(name)
        index = torch.arange(len(labels)) if rows is None else rows
        if shuffle:
            index = index[torch.randperm(len(index), generator=generator)]
        for start in range(0, len(index), batch_size):
            chosen = index[start:start + batch_size]
            yield inputs[chosen].to(self.device), labels[chosen].to(self.device)

    def cycle(self, name: str, batch_size: int, generator: torch.Generator) -> Iterator[tuple]:
        """Endless epochs of `batches` (each reshuffled)."""
        while True:
            yield from self.batches(name, batch_size, generator)


class RunClock:
    """A card's own time: the wall time since it started minus the time spent in the testbed's callback."""

    def __init__(self, callback: Optional[Callable] = None):
        self.start = time.perf_counter()
        self.callback_time = 0.0
        self._callback = callback

    def report(self, step: int, model) -> None:
        """Call the testbed's callback (its trade-off curve), not counting its time."""
        if self._callback is None:
            return
        tick = time.perf_counter()
        was_training = model.training
        self._callback(step, model)
        model.train(was_training)
        self.callback_time += time.perf_counter() - tick

    def seconds(self) -> float:
        return time.perf_counter() - self.start - self.callback_time
