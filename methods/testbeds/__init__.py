"""Testbeds: small, download-free stand-ins for the benchmarks the cards are evaluated on, one package each.

A testbed package `methods/testbeds/<name>/` holds a declaration `testbed.yaml` (its metrics with their direction
and meaning, its references, scales, how forget requests are drawn and its figure: see methods/registry.py) and a
class implementing `Testbed` below, named by the declaration's `entry`. The runner (methods/run.py), the command
line and the notebooks only talk to a testbed through this protocol, so a new testbed is one package and no other
file changes.

- `minicanvas`: a miniature UnlearnCanvas (text-to-image concept erasure on digits x styles).
- `miniprofiles`: a miniature MLLMU-Bench (a tiny LLaVA that memorised fictitious profiles).
- `miniclip`: a tiny CLIP on the MiniCanvas captions (class, pair and backdoor forgetting).
- `minivoices`: speaker unlearning in a keyword classifier trained on synthesised speech (UnSLU-Bench's task).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional


@dataclass
class ForgetRequest:
    """One thing to forget: a concept, or one random split of the forget data.

    `label` names it in logs and results; `payload` is whatever the testbed needs to run and score it (an
    EraseRequest, a list of person ids); `describe` is its JSON-ready description for the results file."""

    label: str
    payload: Any
    describe: dict
    index: int = 0


@dataclass
class Evaluation:
    """What a testbed measured on one model for one request: its declared metrics (plain numbers), JSON-ready
    details for the results file, and private data for the figure (sample images, curves) that is not written."""

    metrics: dict
    details: dict = field(default_factory=dict)
    private: dict = field(default_factory=dict)


@dataclass
class RequestRun:
    """One request of a run: the edited model's evaluation and the references' on the same request."""

    request: ForgetRequest
    edited: Any
    evaluation: Evaluation
    references: dict  # reference key -> Evaluation
    method_s: float
    memory_increase_mb: float


class UsageError(ValueError):
    """Bad arguments for a testbed (an unknown concept, a --model that cannot be loaded): one line, exit code 2."""


class Testbed(ABC):
    """The protocol every testbed implements. `spec` is its declaration (methods/registry.py: TestbedSpec)."""

    __test__ = False  # not a pytest test class
    spec: Any = None

    # -- before anything heavy: arguments ------------------------------------------------------------------
    @classmethod
    def check_arguments(cls, scale: str, forget: Optional[str], anchor: Optional[str], model: Optional[str]) -> None:
        """Raise UsageError (one line naming the argument and the fix) for arguments the testbed cannot use.
        Called before anything is loaded or trained."""
        if cls.spec is not None and scale not in cls.spec.scales:
            raise UsageError(f"unknown scale {scale!r}; choose one of: {', '.join(cls.spec.scales)}")

    # -- loading ---------------------------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def load(cls, scale: str, device, model: Optional[str] = None, log: Callable[[str], None] = print,
             **overrides) -> "Testbed":
        """The testbed at a scale, trained on first use and cached; `model` swaps in a real checkpoint."""

    @property
    @abstractmethod
    def config_record(self) -> dict:
        """The testbed's config, JSON-ready, for the results file."""

    @classmethod
    def own_model(cls, model: Optional[str]) -> bool:
        """Whether a run with this `--model` keeps the testbed's own tiny model (then the testbed's adaptations of a
        card's config apply); by default only a run without --model does."""
        return model is None

    @property
    def uses_own_model(self) -> bool:
        """True when the testbed runs its own tiny model (its adaptations of a card's config then apply)."""
        return True

    # -- the protocol ------------------------------------------------------------------------------------------
    @abstractmethod
    def requests(self, seed: int, forget: Optional[str] = None, anchor: Optional[str] = None) -> list:
        """The ForgetRequests of a run: one concept, or several random forget splits drawn from the seed."""

    @abstractmethod
    def unlearn(self, card, config, request: ForgetRequest, seed: int):
        """Run an unlearn card (its CardSpec) on the testbed's model for one request, with the calling convention of
        the testbed's modality; returns the edited model (the modality's edited-model interface). The input model
        is left untouched. `info["method_s"]`, if the testbed sets it, is the card's own time."""

    @abstractmethod
    def evaluate(self, edited, request: ForgetRequest, seed: int, references: dict) -> Evaluation:
        """Score an edited model on one request (`references`: this request's, for metrics relative to them)."""

    @abstractmethod
    def references(self, request: ForgetRequest, seed: int) -> dict:
        """reference key (as declared) -> Evaluation of that reference on the same request."""

    @classmethod
    def details_markdown(cls, record: dict) -> str:
        """Markdown of the testbed's own detail of a results record, for the notebooks (none by default)."""
        return ""

    def figure(self, record: dict, runs: list, path: Path) -> Optional[Path]:
        """Write the run's figure (the declaration's `figure`) to `path`; None when the testbed has none."""
        return None

    def media(self, record: dict, runs: list, out: Path) -> list:
        """Testbeds that declare `media` (audio or image) write a few example files into `out` (beside
        metrics.json) and return one entry per file: {"file": name, "kind": "audio" | "image", "caption": text};
        the card page embeds them. None by default."""
        return []

    def base_model(self):
        """The testbed's own model, unedited, in its modality's edited-model interface (the matrix's "base")."""
        raise NotImplementedError

    def score_attack(self, result, edited, request: ForgetRequest, seed: int) -> Evaluation:
        """Score what an attack card produced against an edited model (attack success, cost); testbeds that run
        attacks implement it."""
        raise NotImplementedError(f"{type(self).__name__} does not score attacks yet")

    @abstractmethod
    def model_tensors(self) -> dict:
        """name -> tensor of every parameter of the testbed's own model (to check that a card leaves it untouched)."""

    # -- the edited-weights cache ------------------------------------------------------------------------------
    def edited_tensors(self, edited) -> dict:
        """Flat name -> tensor of what a weight-editing card changed (saved as safetensors)."""
        raise NotImplementedError

    def restore_edited(self, tensors: dict, info: dict, request: ForgetRequest):
        """The edited model rebuilt from `edited_tensors`' output."""
        raise NotImplementedError


def testbed_class(spec) -> type:
    """The Testbed class of a declaration, with its spec attached."""
    cls = spec.load_class()
    if not (isinstance(cls, type) and issubclass(cls, Testbed)):
        raise TypeError(f"{spec.source}: entry {spec.entry!r} is not a methods.testbeds.Testbed subclass")
    cls.spec = spec
    return cls


testbed_class.__test__ = False  # not a pytest test, whatever module imports it


def lazy_exports(package: str, submodules: tuple):
    """A module `__getattr__` that finds a name in the package's submodules on first use, so that a testbed package
    exposes its names (`minicanvas.build_erase_request`) without importing torch when only its declaration is read."""

    def __getattr__(name: str):
        for submodule in submodules:
            module = importlib.import_module(f"{package}.{submodule}")
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
