"""End-to-end checks on the real MiniCanvas testbed (ci scale): quality bars and reproducibility.

Slow: the first run trains the base model and judge (minutes on CPU; cached afterwards), each method run then
takes 20-90 s. Run with `pytest -m slow tests/methods`.
"""

import pytest

from methods.runner import run_minicanvas

pytestmark = pytest.mark.slow


def _quiet(*_):
    pass


@pytest.fixture(scope="module")
def runs():
    """One ci run per method, erasing "three" with seed 0."""
    return {name: run_minicanvas(name, "three", seed=0, scale="ci", device="cpu", log=_quiet).metrics
            for name in ("uce", "esd", "ca", "sld")}


def test_judge_and_base_model_quality(runs):
    metrics = runs["uce"]
    assert metrics["judge"]["object_accuracy"] >= 0.95 and metrics["judge"]["style_accuracy"] >= 0.95
    base = metrics["base_metrics"]
    assert base["object_accuracy"] >= 0.90, base["object_accuracy"]
    assert base["style_accuracy"] >= 0.95, base["style_accuracy"]


@pytest.mark.parametrize("name", ["esd", "uce", "ca"])
def test_erasure_quality_bar(runs, name):
    after, base = runs[name]["metrics"], runs[name]["base_metrics"]
    assert after["UA"] >= 0.85, after["UA"]
    assert after["IRA"] >= base["IRA"] - 0.10, (after["IRA"], base["IRA"])
    assert after["CRA"] >= base["CRA"] - 0.10, (after["CRA"], base["CRA"])


def test_sld_halves_the_forget_concept_accuracy(runs):
    after, base = runs["sld"]["metrics"], runs["sld"]["base_metrics"]
    assert after["forget_accuracy"] <= 0.5 * base["forget_accuracy"], (after["forget_accuracy"], base["forget_accuracy"])


def test_same_seed_same_metrics(runs):
    for name in ("uce", "esd"):
        again = run_minicanvas(name, "three", seed=0, scale="ci", device="cpu", log=_quiet).metrics
        for key in ("UA", "IRA", "CRA", "FD"):
            assert again["metrics"][key] == runs[name]["metrics"][key], (name, key)


def test_style_erasure_with_uce():
    metrics = run_minicanvas("uce", "inverted", seed=0, scale="ci", device="cpu", log=_quiet).metrics
    after, base = metrics["metrics"], metrics["base_metrics"]
    assert after["UA"] >= 0.85 and after["IRA"] >= base["IRA"] - 0.10 and after["CRA"] >= base["CRA"] - 0.10
