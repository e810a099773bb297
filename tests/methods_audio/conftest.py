"""Fixtures for the audio card tests: a micro classifier with the transformers calling convention (keyword inputs,
an output with `.logits`) and a hand-sized unlearning task, so each card's defining computation can be checked in
milliseconds against formulas written out in the tests."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from methods.audio.task import AudioUnlearningTask  # noqa: E402


class MicroClassifier(torch.nn.Module):
    """LayerNorm -> Linear -> tanh -> Linear on flattened (2 x 3) "log-mel" inputs; `type(m)(m.config)` rebuilds it."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.norm = torch.nn.LayerNorm(6)
        self.hidden = torch.nn.Linear(6, 8)
        self.out = torch.nn.Linear(8, config.num_labels)

    def forward(self, input_features):
        return SimpleNamespace(logits=self.out(torch.tanh(self.hidden(self.norm(input_features.flatten(1))))))


def micro_model(seed: int = 0, num_labels: int = 3) -> MicroClassifier:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return MicroClassifier(SimpleNamespace(num_labels=num_labels))


@pytest.fixture
def model():
    return micro_model(0)


@pytest.fixture
def task():
    generator = torch.Generator().manual_seed(11)
    forget = torch.randn(6, 2, 3, generator=generator)
    retain = torch.randn(20, 2, 3, generator=generator)
    return AudioUnlearningTask(
        forget_inputs=forget, forget_labels=torch.tensor([0, 1, 2, 0, 1, 2]),
        retain_inputs=retain, retain_labels=torch.arange(20) % 3,
        input_name="input_features", num_labels=3, new_model=lambda seed: micro_model(100 + seed), seed=5)
