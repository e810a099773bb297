"""The robustness matrix: every attack card of a testbed against every unlearn card of it, and the unedited model.

`python -m methods matrix --testbed T` loads each unlearn card's edited model from the edited-weights cache (running
the card only when it is not cached), runs every attack card against it, and writes one results file per pair:

    results/<testbed>/matrix/<attack>/<target>.json     (results schema v1, kind "attack"; target "base" = unedited)

An attack card's entry point is `attack(edited, request, config, seed, testbed) -> AttackResult`-like object that its
testbed knows how to score (`Testbed.score_attack`); the metrics are the testbed's declared metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .core.config import ConfigError
from .core.provenance import peak_rss_mb
from .core.results import write_results
from .registry import load_registry
from .run import RESULTS_ROOT, Plan, build_record, check_out, check_seed, edited_model, plan_run, relative
from .testbeds import RequestRun, UsageError, testbed_class

BASE = "base"  # the target name of the unedited model


@dataclass
class MatrixPlan:
    testbed_spec: object
    attacks: list  # Plan per attack card
    targets: list  # Plan per unlearn card
    seed: int
    scale: str
    device: str
    out: Path


def plan_matrix(testbed: str, *, seed: int = 0, scale: str = "ci", device: str = "auto", out=None,
                attacks: Optional[list] = None, targets: Optional[list] = None) -> MatrixPlan:
    """Check the arguments and every card's config before anything loads. `attacks` / `targets` restrict the
    matrix to some attack cards (a column each) / some unlearn cards (a row each; "base" is always included)."""
    registry = load_registry()
    try:
        spec = registry.testbed(testbed)
    except ValueError as error:
        raise UsageError(str(error)) from None
    seed = check_seed(seed)
    testbed_class(spec).check_arguments(scale, None, None, None)
    chosen = {}
    for kind, names in (("attack", attacks), ("unlearn", targets)):
        available = [card.name for card in registry.cards_on(testbed, kind)]
        unknown = [name for name in names or () if name not in available and not (kind == "unlearn" and name == BASE)]
        if unknown:
            raise UsageError(f"{', '.join(unknown)}: not {'an attack' if kind == 'attack' else 'an unlearn'} card on "
                             f"{testbed}; choose from {', '.join(available)}")
        chosen[kind] = [name for name in available if names is None or name in names]
    try:
        attacks = [plan_run(name, testbed, seed=seed, scale=scale, device=device, registry=registry)
                   for name in chosen["attack"]]
        targets = [plan_run(name, testbed, seed=seed, scale=scale, device=device, registry=registry)
                   for name in chosen["unlearn"]]
    except ConfigError as error:
        raise UsageError(str(error)) from None
    out_path = check_out(Path(out)) if out is not None else RESULTS_ROOT / testbed / "matrix"
    return MatrixPlan(spec, attacks, targets, seed, scale, device, out_path)


def run_matrix(plan: MatrixPlan, log: Callable[[str], None] = print, testbed_overrides: Optional[dict] = None) -> list:
    """Run every (attack, target) pair; returns the paths written. `testbed_overrides` replace testbed config
    fields (the contract tests' smoke testbed)."""
    if not plan.attacks:
        log(f"no attack card runs on {plan.testbed_spec.name} yet: nothing to do")
        return []
    testbed = testbed_class(plan.testbed_spec).load(plan.scale, plan.device, None, log, **(testbed_overrides or {}))
    written = []
    for target in [None, *plan.targets]:
        name = BASE if target is None else target.card.name
        for request in testbed.requests(plan.seed):
            edited = testbed.base_model() if target is None else edited_model(testbed, target, request, log)
            for attack in plan.attacks:
                path = plan.out / attack.card.name / f"{name}.json"
                record = run_attack(testbed, attack, edited, request, name)
                written.append(write_results(record, path))
                log(f"[{attack.card.name} -> {name}] wrote {relative(path)}")
    return written


def run_attack(testbed, attack: Plan, edited, request, target: str) -> dict:
    """One cell: the attack against one target, scored by the testbed on its sampling seeds (mean and spread)."""
    from .core.seeding import seed_everything

    seed_everything(attack.seed)
    start = time.perf_counter()
    rss_before = peak_rss_mb()
    result = attack.card.load_entry()(edited, request.payload, attack.config, attack.seed, testbed)
    method_s = time.perf_counter() - start
    memory = peak_rss_mb() - rss_before
    scored = testbed.score_attack(result, edited, request, attack.seed)
    runs = [RequestRun(request, result, evaluation, references, method_s, memory) for evaluation, references in scored]
    record = build_record(attack, testbed, runs, time.perf_counter() - start, target=target)
    record["timings"]["method_s"] = {"mean": method_s, "std": None, "n": 1}  # the attack ran once
    record["details"] = {
        "target": target,
        "per_seed": {"ASR": [run.evaluation.metrics["ASR"] for run in runs],
                     "pre_attack_ASR": [run.references["pre_attack"].metrics["ASR"] for run in runs]},
        "prompts": result.prompts,
        "attack": result.info,
    }
    return record


def matrix_results(testbed: str, root: Optional[Path] = None) -> dict:
    """(attack, target) -> results path of every matrix cell written so far (for the site and the tests)."""
    folder = (root or RESULTS_ROOT) / testbed / "matrix"
    return {(path.parent.name, path.stem): path for path in sorted(folder.glob("*/*.json"))}
