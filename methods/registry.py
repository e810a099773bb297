"""The registry as data: every card and every testbed declared once, readable without importing torch.

- `methods/registry.yaml` declares each card: kind (`unlearn` or `attack`), modality, entry point and config class as
  `"module:name"` strings imported lazily, the testbeds it runs on (with the testbed adaptations of its config, each
  with the measurement that justifies it, and the quality bar), its catalog ids, the paper's headline claim and what
  the card follows of the official code.
- `methods/testbeds/<name>/testbed.yaml` declares each testbed: its modality, entry point, scales, how forget
  requests are drawn, its metrics (key, label, better direction, meaning), references and figure.

The CLI, the notebooks builder, the tests and the site all read these files through this module; the site never
imports a card. `MMU_ATLAS_REGISTRY` points at another registry file (the tests use temporary ones).
"""

from __future__ import annotations

import importlib
import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

METHODS_DIR = Path(__file__).resolve().parent
REGISTRY_FILE = METHODS_DIR / "registry.yaml"
TESTBEDS_DIR = METHODS_DIR / "testbeds"
REGISTRY_VARIABLE = "MMU_ATLAS_REGISTRY"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")
ENTRY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
KINDS = ("unlearn", "attack")
EDITS = ("weights", "sampler")
MEDIA = ("audio", "image")  # kinds of media files a testbed's runs may write beside metrics.json
OPERATORS = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}


class RegistryError(ValueError):
    """The registry or a testbed declaration is malformed; the message names the file and the field."""


# --- testbeds --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricSpec:
    key: str
    label: str
    better: str  # "higher" or "lower"
    meaning: str
    digits: int = 3

    @property
    def arrow(self) -> str:
        return "↑" if self.better == "higher" else "↓"


@dataclass(frozen=True)
class ReferenceSpec:
    key: str  # e.g. "base", "oracle"
    label: str
    meaning: str = ""


@dataclass(frozen=True)
class AttackMetrics:
    """How a testbed scores attack cards (its `attacks:` block): their metrics, their references (the pre-attack
    value), and the metric the robustness matrix shows in its cells."""

    metrics: tuple  # MetricSpec
    references: tuple  # ReferenceSpec
    cell: str  # metric key of the matrix cells (e.g. post-attack ASR)


@dataclass(frozen=True)
class TestbedSpec:
    __test__ = False  # not a pytest test class

    name: str
    title: str
    modality: str
    entry: str  # "module:Class" implementing methods.testbeds.Testbed
    description: str
    scales: tuple
    requests: str  # "concept" (--forget / --anchor) or "splits" (random forget splits drawn from the seed)
    metrics: tuple  # MetricSpec
    leaderboard: tuple  # metric keys shown as leaderboard columns
    index: tuple  # metric keys shown on the cards index
    references: tuple  # ReferenceSpec
    figure: Optional[str]  # the figure a run writes beside metrics.json
    plot: Optional[dict]  # {"x": key, "y": key}: the leaderboard's scatter plot of every card
    smoke: dict = field(default_factory=dict)  # config fields of the contract tests' tiny testbed
    media: Optional[str] = None  # "audio" or "image": a run also writes media files beside metrics.json (listed in
    # its record's `media`), which the card page embeds (players for audio)
    attacks: Optional[AttackMetrics] = None  # testbeds that run attack cards
    source: Path = field(compare=False, default=Path("."))

    def metric(self, key: str) -> MetricSpec:
        for metric in self.metrics + (self.attacks.metrics if self.attacks else ()):
            if metric.key == key:
                return metric
        raise KeyError(key)

    def metrics_for(self, kind: str) -> tuple:
        """The metrics of a card kind's results ("unlearn": the testbed's metrics; "attack": its attack metrics)."""
        return self.metrics if kind == "unlearn" else (self.attacks.metrics if self.attacks else ())

    def references_for(self, kind: str) -> tuple:
        return self.references if kind == "unlearn" else (self.attacks.references if self.attacks else ())

    def load_class(self):
        return _import(self.entry, self.source, "entry")


# --- bars ------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    """One condition of a quality bar: `metric op value`, or `metric op factor * reference + offset` where the
    reference is one of the testbed's references (`base`, `oracle`) or another card's result (`card: ga`)."""

    metric: str
    op: str
    value: Optional[float] = None
    reference: Optional[str] = None
    card: Optional[str] = None
    offset: float = 0.0
    factor: float = 1.0
    target: Optional[str] = None  # attack cards: the robustness-matrix target it holds on ("base" or an unlearn card)

    def text(self, labels: dict) -> str:
        label = labels.get(self.metric, self.metric)
        if self.target is not None:
            return f"{Condition(**{**self.__dict__, 'target': None}).text(labels)} against {self.target}"
        if self.value is not None:
            return f"{label} {OPERATORS[self.op]} {self.value:g}"
        other = self.reference or f"{self.card}'s"
        scaled = f"{self.factor:g} × {other}" if self.factor != 1 else other
        offset = f" {'+' if self.offset > 0 else '−'} {abs(self.offset):g}" if self.offset else ""
        return f"{label} {OPERATORS[self.op]} {scaled}{offset}"

    def evaluate(self, metrics: dict, references: dict, cards: Callable[[str], Optional[dict]]) -> Optional[bool]:
        value = _mean(metrics.get(self.metric))
        if value is None:
            return None
        if self.value is not None:
            bound = self.value
        else:
            source = references.get(self.reference, {}) if self.reference else (cards(self.card) or {})
            other = _mean(source.get(self.metric))
            if other is None:
                return None
            bound = self.factor * other + self.offset
        return {">=": value >= bound, "<=": value <= bound, ">": value > bound, "<": value < bound}[self.op]


def _mean(stat) -> Optional[float]:
    if isinstance(stat, dict):
        stat = stat.get("mean")
    if stat is None or (isinstance(stat, float) and math.isnan(stat)):
        return None
    return float(stat)


@dataclass(frozen=True)
class Bar:
    conditions: tuple
    note: str = ""  # why this bar (e.g. "SLD changes no weights and is held to a weaker bar")
    known_miss: str = ""  # a miss the card's results show and explain (what was tried); shown, never hidden
    cpu_dependent: bool = False  # the verdict flips between CPUs (the testbed trains to other weights there); the
    # note says where it was met and missed, with the numbers

    def text(self, labels: dict) -> str:
        return ", ".join(condition.text(labels) for condition in self.conditions)

    def on_target(self, target: str) -> "Bar":
        """An attack card's bar restricted to the conditions on one matrix target."""
        return Bar(tuple(c for c in self.conditions if c.target == target), self.note, self.known_miss,
                   self.cpu_dependent)

    def check(self, metrics: dict, references: dict, cards: Callable[[str], Optional[dict]] = lambda _: None):
        """True / False, or None when the results lack what a condition needs (or it has no condition)."""
        if not self.conditions:
            return None
        verdicts = [condition.evaluate(metrics, references, cards) for condition in self.conditions]
        if any(verdict is False for verdict in verdicts):
            return False
        return None if any(verdict is None for verdict in verdicts) else True


# --- cards -----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Adaptation:
    value: Any
    why: str


@dataclass(frozen=True)
class CardTestbed:
    """How a card runs on one testbed."""

    adaptations: dict  # field -> Adaptation: the testbed's values where the official default does not fit
    smoke: dict  # field -> value: the contract tests' tiny budget on the testbed's smoke scale
    bar: Optional[Bar]
    forget: Optional[str] = None  # the forget request the card runs by default on the testbed (None: the testbed's)

    def overrides(self) -> dict:
        return {name: adaptation.value for name, adaptation in self.adaptations.items()}


@dataclass(frozen=True)
class Claim:
    text: str  # one sentence with the paper's own number
    source: str  # the table or figure it comes from
    status: str  # "verified", or what was (not) checked on the paper itself


@dataclass(frozen=True)
class CardSpec:
    name: str
    kind: str
    modality: str
    title: str
    entry: str
    config: str
    catalog: tuple
    testbeds: dict  # testbed name -> CardTestbed
    claim: Optional[Claim]
    follows: str  # the official repository@commit and file the card follows
    deviations: tuple  # (what, why) pairs: deliberate differences from the official code, not testbed adaptations
    edits: Optional[str] = None  # unlearn cards: "weights" (cacheable) or "sampler" (re-run: it changes no weights)
    source: Path = field(compare=False, default=Path("."))

    @property
    def module(self) -> str:
        return self.entry.split(":")[0]

    def module_file(self) -> Path:
        """The card's source file, found without executing it (its parent packages are imported)."""
        import importlib.util

        spec = importlib.util.find_spec(self.module)
        if spec is None or spec.origin is None:
            raise RegistryError(f"{self.source}: cards.{self.name}.entry: no module {self.module!r}")
        return Path(spec.origin)

    def load_entry(self) -> Callable:
        return _import(self.entry, self.source, f"cards.{self.name}.entry")

    def load_config_class(self):
        return _import(self.config, self.source, f"cards.{self.name}.config")

    def build_config(self, testbed: Optional[str] = None, **overrides):
        """The card's config: its official defaults, the testbed's adaptations (when `testbed` is given) and
        `overrides`; a ConfigError names any bad field."""
        from .core.config import build_config

        adaptations = self.on(testbed).overrides() if testbed is not None else {}
        return build_config(self.load_config_class(), adaptations, overrides)

    def on(self, testbed: str) -> CardTestbed:
        if testbed not in self.testbeds:
            raise RegistryError(f"{self.name} runs on {', '.join(self.testbeds)}, not {testbed!r}")
        return self.testbeds[testbed]


def _import(entry: str, source: Path, where: str):
    module_name, _, attribute = entry.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute)
    except (ImportError, AttributeError) as error:
        raise RegistryError(f"{source}: {where}: cannot import {entry!r} ({error})") from None


# --- loading ---------------------------------------------------------------------------------------------------------

class _Reader:
    """Typed access to a YAML mapping that reports problems as 'file: dotted.field: message'."""

    def __init__(self, source: Path):
        self.source = source

    def fail(self, where: str, message: str):
        raise RegistryError(f"{self.source}: {where}: {message}")

    def mapping(self, value, where: str) -> dict:
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping, got {type(value).__name__}")
        return value

    def get(self, data: dict, key: str, where: str, kind=str, default: Any = ..., choices=None):
        if key not in data:
            if default is ...:
                self.fail(f"{where}.{key}" if where else key, "is required")
            return default
        value = data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            self.fail(f"{where}.{key}" if where else key, f"expected {getattr(kind, '__name__', kind)}, got {value!r}")
        if choices is not None and value not in choices:
            self.fail(f"{where}.{key}" if where else key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise RegistryError(f"{path}: cannot read ({error})") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: the top level must be a mapping")
    return data


def load_testbed(path: Path) -> TestbedSpec:
    read = _Reader(path)
    data = _load_yaml(path)
    name = read.get(data, "name", "")
    if not NAME.match(name) or name != path.parent.name:
        read.fail("name", f"must match {NAME.pattern} and equal the package folder {path.parent.name!r}")
    metrics = _metric_specs(read, data, "")
    keys = [metric.key for metric in metrics]

    def metric_list(key: str) -> tuple:
        values = tuple(read.get(data, key, "", list))
        for value in values:
            if value not in keys:
                read.fail(key, f"{value!r} is not a declared metric ({', '.join(keys)})")
        return values

    references = _reference_specs(read, data, "")
    attacks = None
    if data.get("attacks") is not None:
        block = read.mapping(data["attacks"], "attacks")
        attack_metrics = _metric_specs(read, block, "attacks.")
        cell = read.get(block, "cell", "attacks")
        if cell not in [metric.key for metric in attack_metrics]:
            read.fail("attacks.cell", f"{cell!r} is not a declared attack metric")
        attacks = AttackMetrics(tuple(attack_metrics), tuple(_reference_specs(read, block, "attacks.")), cell)
    plot = data.get("plot")
    if plot is not None:
        plot = read.mapping(plot, "plot")
        for axis in ("x", "y"):
            if read.get(plot, axis, "plot") not in keys:
                read.fail(f"plot.{axis}", f"{plot[axis]!r} is not a declared metric")
    entry = read.get(data, "entry", "")
    if not ENTRY.match(entry):
        read.fail("entry", "must be 'module:Class'")
    return TestbedSpec(
        name=name, title=read.get(data, "title", ""), modality=read.get(data, "modality", ""), entry=entry,
        description=" ".join(read.get(data, "description", "").split()),
        scales=tuple(read.get(data, "scales", "", list)),
        requests=read.get(data, "requests", "", choices=("concept", "splits")),
        metrics=tuple(metrics), leaderboard=metric_list("leaderboard"), index=metric_list("index"),
        references=tuple(references), figure=read.get(data, "figure", "", str, None), plot=plot,
        smoke=read.mapping(data.get("smoke") or {}, "smoke"),
        media=read.get(data, "media", "", str, None, MEDIA), attacks=attacks, source=path)


def _metric_specs(read: _Reader, data: dict, prefix: str) -> list:
    metrics = []
    for index, item in enumerate(read.get(data, "metrics", prefix.rstrip("."), list)):
        where = f"{prefix}metrics.{index}"
        item = read.mapping(item, where)
        metrics.append(MetricSpec(read.get(item, "key", where), read.get(item, "label", where),
                                  read.get(item, "better", where, choices=("higher", "lower")),
                                  read.get(item, "meaning", where), read.get(item, "digits", where, int, 3)))
    keys = [metric.key for metric in metrics]
    if len(set(keys)) != len(keys):
        read.fail(f"{prefix}metrics", "metric keys must be unique")
    return metrics


def _reference_specs(read: _Reader, data: dict, prefix: str) -> list:
    references = []
    for index, item in enumerate(read.get(data, "references", prefix.rstrip("."), list, [])):
        where = f"{prefix}references.{index}"
        item = read.mapping(item, where)
        references.append(ReferenceSpec(read.get(item, "key", where), read.get(item, "label", where),
                                        read.get(item, "meaning", where, str, "")))
    return references


def _bar(read: _Reader, data, where: str, testbed: TestbedSpec, kind: str) -> Optional[Bar]:
    if data is None:
        return None
    data = read.mapping(data, where)
    conditions = []
    if kind == "attack" and testbed.attacks is None:
        read.fail(where, f"{testbed.name} declares no `attacks:` block, so it cannot score attack cards")
    metric_keys = {m.key for m in testbed.metrics_for(kind)}
    references = {reference.key for reference in testbed.references_for(kind)}
    for index, item in enumerate(read.get(data, "all", where, list)):
        at = f"{where}.all.{index}"
        item = read.mapping(item, at)
        metric = read.get(item, "metric", at)
        if metric not in metric_keys:
            read.fail(f"{at}.metric", f"{metric!r} is not a{'n attack' if kind == 'attack' else ''} metric of "
                                      f"{testbed.name} ({', '.join(sorted(metric_keys))})")
        condition = Condition(metric=metric, op=read.get(item, "op", at, choices=tuple(OPERATORS)),
                              value=read.get(item, "value", at, float, None),
                              reference=read.get(item, "reference", at, str, None),
                              card=read.get(item, "card", at, str, None),
                              offset=read.get(item, "offset", at, float, 0.0),
                              factor=read.get(item, "factor", at, float, 1.0),
                              target=read.get(item, "target", at, str, None))
        if (condition.target is not None) != (kind == "attack"):
            read.fail(f"{at}.target", "an attack card's condition names the matrix target it holds on (an unlearn "
                                      "card or `base`); an unlearn card's conditions name none")
        if sum(x is not None for x in (condition.value, condition.reference, condition.card)) != 1:
            read.fail(at, "give exactly one of value, reference or card")
        if condition.reference is not None and condition.reference not in references:
            read.fail(f"{at}.reference", f"{condition.reference!r} is not a reference of {testbed.name}")
        conditions.append(condition)
    return Bar(tuple(conditions), read.get(data, "note", where, str, ""),
               " ".join(read.get(data, "known_miss", where, str, "").split()),
               read.get(data, "cpu_dependent", where, bool, False))


def load_cards(path: Path, testbeds: dict) -> dict:
    read = _Reader(path)
    data = _load_yaml(path)
    cards = {}
    for name, item in read.mapping(data.get("cards"), "cards").items():
        where = f"cards.{name}"
        if not isinstance(name, str) or not NAME.match(name):
            read.fail(where, f"a card name must match {NAME.pattern}")
        item = read.mapping(item, where)
        kind = read.get(item, "kind", where, choices=KINDS)
        modality = read.get(item, "modality", where)
        for key in ("entry", "config"):
            if not ENTRY.match(read.get(item, key, where)):
                read.fail(f"{where}.{key}", "must be 'module:name'")
        on = {}
        for testbed_name, settings in read.mapping(read.get(item, "testbeds", where, dict), f"{where}.testbeds").items():
            at = f"{where}.testbeds.{testbed_name}"
            if testbed_name not in testbeds:
                read.fail(at, f"unknown testbed (declared: {', '.join(testbeds)})")
            testbed = testbeds[testbed_name]
            if testbed.modality != modality:
                read.fail(at, f"the testbed's modality is {testbed.modality!r}, the card's {modality!r}")
            settings = read.mapping(settings or {}, at)
            adaptations = {}
            for key, value in read.mapping(settings.get("adaptations") or {}, f"{at}.adaptations").items():
                value = read.mapping(value, f"{at}.adaptations.{key}")
                if "value" not in value:
                    read.fail(f"{at}.adaptations.{key}", "needs a value")
                adaptations[key] = Adaptation(value["value"], " ".join(read.get(value, "why", f"{at}.adaptations.{key}").split()))
            on[testbed_name] = CardTestbed(adaptations, read.mapping(settings.get("smoke") or {}, f"{at}.smoke"),
                                           _bar(read, settings.get("bar"), f"{at}.bar", testbed, kind),
                                           read.get(settings, "forget", at, str, None))
        claim = item.get("claim")
        if claim is not None:
            claim = read.mapping(claim, f"{where}.claim")
            claim = Claim(" ".join(read.get(claim, "text", f"{where}.claim").split()),
                          read.get(claim, "source", f"{where}.claim"),
                          " ".join(read.get(claim, "status", f"{where}.claim").split()))
        fidelity = read.mapping(read.get(item, "fidelity", where, dict), f"{where}.fidelity")
        deviations = []
        for index, deviation in enumerate(read.get(fidelity, "deviations", f"{where}.fidelity", list, [])):
            at = f"{where}.fidelity.deviations.{index}"
            deviation = read.mapping(deviation, at)
            deviations.append((" ".join(read.get(deviation, "what", at).split()),
                               " ".join(read.get(deviation, "why", at).split())))
        catalog = read.get(item, "catalog", where, list)
        if not catalog or not all(isinstance(c, str) for c in catalog):
            read.fail(f"{where}.catalog", "must be a non-empty list of catalog ids")
        cards[name] = CardSpec(
            name=name, kind=kind, modality=modality, title=read.get(item, "title", where), entry=item["entry"],
            config=item["config"], catalog=tuple(catalog), testbeds=on, claim=claim,
            follows=" ".join(read.get(fidelity, "follows", f"{where}.fidelity").split()), deviations=tuple(deviations),
            edits=read.get(item, "edits", where, str, None, EDITS) if kind == "unlearn" else None, source=path)
        if kind == "unlearn" and cards[name].edits is None:
            read.fail(f"{where}.edits", f"an unlearn card says what it edits: one of {', '.join(EDITS)}")
    for name, card in cards.items():  # an attack's bar holds on matrix targets: "base" or an unlearn card there
        for testbed_name, on in card.testbeds.items():
            targets = {"base"} | {other.name for other in cards.values()
                                  if other.kind == "unlearn" and testbed_name in other.testbeds}
            for index, condition in enumerate(on.bar.conditions if on.bar else ()):
                if condition.target is not None and condition.target not in targets:
                    read.fail(f"cards.{name}.testbeds.{testbed_name}.bar.all.{index}.target",
                              f"{condition.target!r} is neither `base` nor an unlearn card on {testbed_name}")
    return cards


@dataclass(frozen=True)
class Registry:
    cards: dict  # name -> CardSpec, in file order
    testbeds: dict  # name -> TestbedSpec
    source: Path

    def card(self, name: str) -> CardSpec:
        if name not in self.cards:
            raise RegistryError(f"unknown card {name!r}; choose one of: {', '.join(self.cards)}")
        return self.cards[name]

    def testbed(self, name: str) -> TestbedSpec:
        if name not in self.testbeds:
            raise RegistryError(f"unknown testbed {name!r}; choose one of: {', '.join(self.testbeds)}")
        return self.testbeds[name]

    def cards_on(self, testbed: str, kind: Optional[str] = None) -> list:
        return [card for card in self.cards.values()
                if testbed in card.testbeds and (kind is None or card.kind == kind)]


def registry_path() -> Path:
    configured = os.environ.get(REGISTRY_VARIABLE)
    return Path(configured).resolve() if configured else REGISTRY_FILE


@lru_cache(maxsize=8)
def _load(path: Path, testbeds_dir: Path) -> Registry:
    testbeds = {}
    for declaration in sorted(testbeds_dir.glob("*/testbed.yaml")):
        spec = load_testbed(declaration)
        testbeds[spec.name] = spec
    return Registry(load_cards(path, testbeds), testbeds, path)


def load_registry(path: Optional[Path] = None, testbeds_dir: Path = TESTBEDS_DIR) -> Registry:
    """The registry (cached per file); `path` defaults to `$MMU_ATLAS_REGISTRY` or methods/registry.yaml."""
    return _load(Path(path or registry_path()).resolve(), Path(testbeds_dir).resolve())
