"""The quality bars of the registry against the results the notebooks wrote (slow: CI runs `make notebooks` first).

No threshold is written here: each card's bar comes from methods/registry.yaml, so the site, the results files and
these tests judge the same thing. This file sits outside tests/cards/, whose tests use a private empty cache: these use
the machine's cache, where the notebooks just trained the testbeds. With MMU_REQUIRE_FRESH=1 (set by .ci/run) a
results file must have been produced at the checked-out commit. Same seed -> same metrics is checked by re-running two cheap cards.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from methods.core.results import read_results
from methods.registry import load_registry
from methods.run import default_out, run_card, sibling_metrics

pytestmark = pytest.mark.slow
REGISTRY = load_registry()
PAIRS = [(card.name, testbed) for card in REGISTRY.cards.values() if card.kind == "unlearn" for testbed in card.testbeds]


def head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                          cwd=default_out("x", "y").parents[2]).stdout.strip()


@pytest.mark.parametrize("card,testbed", PAIRS, ids=[f"{c}-{t}" for c, t in PAIRS])
def test_the_committed_results_meet_the_card_bar(card, testbed):
    record = read_results(default_out(card, testbed) / "metrics.json")
    if os.environ.get("MMU_REQUIRE_FRESH") == "1":
        assert record["git"]["commit"] == head(), f"{card}: results from {record['git']['commit']}, not HEAD"
    bar = REGISTRY.card(card).on(testbed).bar
    verdict = bar.check(record["metrics"], record["references"], lambda other: sibling_metrics(other, testbed))
    labels = {metric.key: metric.label for metric in REGISTRY.testbed(testbed).metrics}
    shown = {key: value["mean"] for key, value in record["metrics"].items() if value}
    if bar.known_miss:  # a declared miss: it must still be one (else the registry should stop calling it a miss)
        assert verdict is False, f"{card} on {testbed} now meets {bar.text(labels)}: remove its known_miss"
    else:
        assert verdict is True, f"{card} on {testbed}: bar {bar.text(labels)} not met: {shown}"


@pytest.mark.parametrize("card,testbed", [("uce", "minicanvas"), ("ga", "miniprofiles")])
def test_same_seed_reproduces_the_committed_metrics(card, testbed):
    committed = read_results(default_out(card, testbed) / "metrics.json")
    again = run_card(card, testbed, seed=committed["seed"], scale=committed["scale"], device="cpu", write=False,
                     log=lambda _: None)
    assert again["metrics"] == committed["metrics"]
    assert again["references"] == committed["references"]
