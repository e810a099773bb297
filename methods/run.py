"""Run a card on a testbed end to end, the same way for every card and testbed (CLI, notebooks, benchmarks, tests).

`run_card(card, testbed, ...)`:
  1. check every argument and build the card's config (official defaults, the testbed's adaptations, the user's
     overrides) before anything heavy runs;
  2. load the testbed (trained once per machine and cached);
  3. for each forget request (one concept, or several random splits): run the card, measured on its own; store the
     edited weights in the cache; score the references (base model, oracle) and the edited model on the request;
  4. pool the requests (mean ± std), check the card's quality bar, and write `metrics.json` (results schema v1) and
     the testbed's figure.

`edited_model(card, testbed, request, ...)` gives an edited model from the cache (running the card only when it is
not cached): what attacks run against.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from .core.cache import cache_root, cached, config_hash
from .core.config import ConfigError, build_config, config_to_dict
from .core.provenance import MEMORY_MEASURE, REPO_ROOT, git_state, package_versions, peak_rss_mb, utc_now
from .core.results import json_ready, stat, write_results
from .registry import CardSpec, Registry, RegistryError, load_registry
from .testbeds import ForgetRequest, RequestRun, UsageError, testbed_class

RESULTS_ROOT = REPO_ROOT / "results"
EDITED_CACHE_MARKER = "edited.json"


@dataclass
class Plan:
    """Everything a run needs, checked before anything heavy: the card, the testbed, the config and the arguments."""

    card: CardSpec
    testbed_spec: object
    testbed_class: type
    config: object
    adaptations: dict  # field -> {"value", "why"}: what the testbed (or the user) changed from the official default
    seed: int
    scale: str
    device: str
    model: Optional[str]
    forget: Optional[str]
    anchor: Optional[str]
    out: Optional[Path]
    registry: Registry = field(repr=False, default=None)


def default_out(card: str, testbed: str) -> Path:
    return RESULTS_ROOT / testbed / card


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise UsageError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return seed


def check_out(out: Path) -> Path:
    """An output folder that can be written: not a file, not under a file, writable where it exists."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for metrics.json and the figure")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"--out {out} lies under the file {probe}; give a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {probe} is not writable; give a folder you can write to")
    return out


def plan_run(card: str, testbed: Optional[str] = None, *, seed: int = 0, scale: str = "ci", device: str = "auto",
             model: Optional[str] = None, forget: Optional[str] = None, anchor: Optional[str] = None,
             overrides: Optional[dict] = None, out=None, registry: Optional[Registry] = None) -> Plan:
    """Check every argument (UsageError naming the argument and the fix) and build the config; loads nothing."""
    registry = registry or load_registry()
    try:
        spec = registry.card(card)
        if testbed is None:
            testbed = next(iter(spec.testbeds))
        testbed_spec = registry.testbed(testbed)
        on = spec.on(testbed)
    except RegistryError as error:
        raise UsageError(str(error)) from None
    seed = check_seed(seed)
    if forget is None and model is None:
        forget = on.forget  # the card's own default request on this testbed, if it declares one
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"unknown device {device!r}; choose one of: auto, cpu, cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda was requested but no CUDA device is available")
    cls = testbed_class(testbed_spec)
    cls.check_arguments(scale, forget, anchor, model)
    # the testbed's adaptations apply to its own tiny model; a real checkpoint runs with the official defaults
    adaptations = {} if not cls.own_model(model) else {k: {"value": a.value, "why": a.why}
                                                       for k, a in on.adaptations.items()}
    overrides = dict(overrides or {})
    try:
        config = build_config(spec.load_config_class(), {k: v["value"] for k, v in adaptations.items()}, overrides)
    except ConfigError as error:
        raise UsageError(f"bad option for {card}: {error}") from None
    for key, value in overrides.items():
        adaptations[key] = {"value": value, "why": "set by the user (--set)"}
    out_path = check_out(Path(out)) if out is not None else None
    return Plan(spec, testbed_spec, cls, config, adaptations, seed, scale, device, model, forget, anchor, out_path,
                registry)


def run_card(card: str, testbed: Optional[str] = None, *, log: Callable[[str], None] = print, write: bool = True,
             testbed_overrides: Optional[dict] = None, **arguments) -> dict:
    """Run a card on a testbed and return its results record (also written to `out`, by default
    results/<testbed>/<card>/, unless `write=False`). Arguments as `plan_run`."""
    plan = plan_run(card, testbed, **arguments)
    if plan.card.kind != "unlearn":
        raise UsageError(f"{card} is an attack card: run it with `python -m methods matrix`")
    out = plan.out or default_out(plan.card.name, plan.testbed_spec.name)
    if write:
        check_out(out)
    return execute(plan, out if write else None, log, testbed_overrides or {})


def execute(plan: Plan, out: Optional[Path], log: Callable[[str], None], testbed_overrides: dict) -> dict:
    from .core.seeding import seed_everything

    total_start = time.perf_counter()
    # 2. the testbed, trained once per machine
    testbed = plan.testbed_class.load(plan.scale, plan.device, plan.model, log, **testbed_overrides)
    requests = testbed.requests(plan.seed, plan.forget, plan.anchor)

    # 3. each request: the card (measured on its own), its cache entry, the references, the evaluation
    runs = []
    for request in requests:
        if len(requests) > 1:
            log(f"[{plan.card.name}] request {request.index + 1}/{len(requests)}: forgetting {request.label}")
        seed_everything(plan.seed)
        rss_before = peak_rss_mb()
        start = time.perf_counter()
        edited = testbed.unlearn(plan.card, plan.config, request, plan.seed)
        method_s = edited.info.get("method_s", time.perf_counter() - start)
        memory_increase = peak_rss_mb() - rss_before
        if plan.card.edits == "weights":
            store_edited(testbed, plan, request, edited)
        references = testbed.references(request, plan.seed)
        evaluation = testbed.evaluate(edited, request, plan.seed, references)
        runs.append(RequestRun(request, edited, evaluation, references, method_s, memory_increase))
        log(f"[{plan.card.name}] {request.label}: " + ", ".join(
            f"{key} {value:.3f}" for key, value in evaluation.metrics.items() if value is not None)
            + f"; card {method_s:.2f} s")

    # 4. pool, bar, write
    record = build_record(plan, testbed, runs, time.perf_counter() - total_start)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if plan.testbed_spec.figure:
            testbed.figure(record, runs, out / plan.testbed_spec.figure)
        if plan.testbed_spec.media:
            record["media"] = testbed.media(record, runs, out)
        write_results(record, out / "metrics.json")
        log(f"[{plan.card.name}] wrote {relative(out / 'metrics.json')}"
            + (f" and {plan.testbed_spec.figure}" if plan.testbed_spec.figure else ""))
    return record


def build_record(plan: Plan, testbed, runs: list, total_s: float, target: Optional[str] = None) -> dict:
    """The results record of a run (an attack's: of one robustness-matrix cell, against `target`)."""
    spec, kind = plan.testbed_spec, plan.card.kind
    keys = [metric.key for metric in spec.metrics_for(kind)]
    metrics = {key: stat(run.evaluation.metrics.get(key) for run in runs) for key in keys}
    references = {ref.key: {key: stat(run.references[ref.key].metrics.get(key) for run in runs
                                      if ref.key in run.references) for key in keys}
                  for ref in spec.references_for(kind) if any(ref.key in run.references for run in runs)}
    references = {ref: {key: value for key, value in values.items() if value is not None}
                  for ref, values in references.items()} if kind == "attack" else references
    bar = plan.card.testbeds[spec.name].bar
    if bar is not None and target is not None:
        bar = bar.on_target(target)
    labels = {metric.key: metric.label for metric in spec.metrics_for(kind)}
    verdict = bar.check(metrics, references, lambda other: sibling_metrics(other, spec.name)) if bar else None
    config_class = type(plan.config)
    return json_ready({
        "schema_version": 1,
        "card": plan.card.name,
        "kind": plan.card.kind,
        "modality": plan.card.modality,
        "testbed": spec.name,
        "catalog_ids": list(plan.card.catalog),
        "date": utc_now(),
        "git": git_state(),
        "seed": plan.seed,
        "scale": plan.scale,
        "device": str(testbed.device),
        "model": None if plan.model is None else model_name(plan.model),
        "request": {"requests": [run.request.describe for run in runs]},
        "config": config_to_dict(plan.config),
        "config_defaults": config_to_dict(config_class()),
        "adaptations": plan.adaptations,
        "testbed_config": testbed.config_record,
        "versions": package_versions(),
        "metrics": metrics,
        "references": references,
        "bar": {"text": bar.text(labels) if bar else "no quality bar declared", "met": verdict,
                "conditions": [condition.text(labels) for condition in bar.conditions] if bar else []},
        "timings": {"method_s": stat(run.method_s for run in runs), "total_s": stat([total_s])},
        "memory": {"peak_rss_mb": peak_rss_mb(), "measure": MEMORY_MEASURE,
                   "method_peak_rss_increase_mb": max(run.memory_increase_mb for run in runs)},
        "details": testbed.details_record(runs) if kind == "unlearn" else {},  # an attack's: set by the matrix
        "figure": spec.figure,
    })


def model_name(model: str) -> str:
    """--model as recorded: local absolute paths by their last component (each part of a comma-separated pair)."""
    return ",".join(Path(part).name if Path(part).is_absolute() else part for part in model.split(","))


def sibling_metrics(card: str, testbed: str) -> Optional[dict]:
    """Another card's committed results on the same testbed (for bars that compare cards), or None."""
    path = default_out(card, testbed) / "metrics.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("metrics")
    except (OSError, ValueError):
        return None


def relative(path: Path) -> str:
    """A path relative to the repository when it lies inside it (no absolute path in logs or notebooks)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------------------------------------
# The edited-weights cache: attacks run against every erasure card without retraining it
# ----------------------------------------------------------------------------------------------------------
def edited_key(plan: Plan, request: ForgetRequest, testbed) -> dict:
    return {"card": plan.card.name, "config": config_to_dict(plan.config), "testbed": plan.testbed_spec.name,
            "testbed_config": testbed.config_record, "seed": plan.seed, "request": request.describe,
            "model": plan.model}


def edited_dir(plan: Plan, request: ForgetRequest, testbed) -> Path:
    key = edited_key(plan, request, testbed)
    return cache_root() / "edited" / plan.testbed_spec.name / plan.card.name / config_hash(key)


def store_edited(testbed, plan: Plan, request: ForgetRequest, edited) -> Path:
    """Save what a weight-editing card changed as safetensors (once per card, config, testbed, seed, request)."""
    from safetensors.torch import save_file

    def build(directory: Path) -> None:
        save_file(testbed.edited_tensors(edited), str(directory / "edited.safetensors"))
        info = {k: v for k, v in edited.info.items() if isinstance(v, (int, float, str, bool, type(None)))}
        (directory / EDITED_CACHE_MARKER).write_text(json.dumps(
            {"key": edited_key(plan, request, testbed), "info": info}, indent=2, default=str))

    return cached(edited_dir(plan, request, testbed), build, EDITED_CACHE_MARKER)


def edited_model(testbed, plan: Plan, request: ForgetRequest, log: Callable[[str], None] = print):
    """The card's edited model for a request: from the cache when it is there, else by running the card (and caching
    it). Cards that change no weights (`edits: sampler`) are simply re-run: they cost nothing."""
    from safetensors.torch import load_file

    from .core.seeding import seed_everything

    if plan.card.edits == "weights":
        directory = edited_dir(plan, request, testbed)
        if (directory / EDITED_CACHE_MARKER).exists():
            info = json.loads((directory / EDITED_CACHE_MARKER).read_text())["info"]
            return testbed.restore_edited(load_file(str(directory / "edited.safetensors")), info, request)
    log(f"[{plan.card.name}] editing the model for {request.label} (not cached yet)")
    seed_everything(plan.seed)
    edited = testbed.unlearn(plan.card, plan.config, request, plan.seed)
    if plan.card.edits == "weights":
        store_edited(testbed, plan, request, edited)
    return edited
