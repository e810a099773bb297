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


def plan_matrix(testbed: str, *, seed: int = 0, scale: str = "ci", device: str = "auto", out=None) -> MatrixPlan:
    """Check the arguments and every card's config before anything loads."""
    registry = load_registry()
    try:
        spec = registry.testbed(testbed)
    except ValueError as error:
        raise UsageError(str(error)) from None
    seed = check_seed(seed)
    testbed_class(spec).check_arguments(scale, None, None, None)
    try:
        attacks = [plan_run(card.name, testbed, seed=seed, scale=scale, device=device, registry=registry)
                   for card in registry.cards_on(testbed, "attack")]
        targets = [plan_run(card.name, testbed, seed=seed, scale=scale, device=device, registry=registry)
                   for card in registry.cards_on(testbed, "unlearn")]
    except ConfigError as error:
        raise UsageError(str(error)) from None
    out_path = check_out(Path(out)) if out is not None else RESULTS_ROOT / testbed / "matrix"
    return MatrixPlan(spec, attacks, targets, seed, scale, device, out_path)


def run_matrix(plan: MatrixPlan, log: Callable[[str], None] = print) -> list:
    """Run every (attack, target) pair; returns the paths written."""
    if not plan.attacks:
        log(f"no attack card runs on {plan.testbed_spec.name} yet: nothing to do")
        return []
    testbed = testbed_class(plan.testbed_spec).load(plan.scale, plan.device, None, log)
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
    start = time.perf_counter()
    rss_before = peak_rss_mb()
    result = attack.card.load_entry()(edited, request.payload, attack.config, attack.seed, testbed)
    method_s = time.perf_counter() - start
    evaluation = testbed.score_attack(result, edited, request, attack.seed)
    run = RequestRun(request, result, evaluation, {}, method_s, peak_rss_mb() - rss_before)
    record = build_record(attack, testbed, [run], method_s)
    record["details"] = {"target": target, **evaluation.details}
    return record


def matrix_results(testbed: str, root: Optional[Path] = None) -> dict:
    """(attack, target) -> results path of every matrix cell written so far (for the site and the tests)."""
    folder = (root or RESULTS_ROOT) / testbed / "matrix"
    return {(path.parent.name, path.stem): path for path in sorted(folder.glob("*/*.json"))}
