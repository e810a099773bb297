"""The contract every registered card keeps, parametrized over the registry (a new card is tested by registering it).

For every (card, testbed): the config round-trips through JSON; an unknown override is rejected before anything
loads; the card leaves the testbed's model untouched; the same seed gives the same metrics on the testbed's smoke
scale (its `smoke` declaration, with the card's `smoke` budget); the results file is valid against schema v1.
"""

from __future__ import annotations

import json

import pytest
import torch

from methods.core.config import ConfigError, coerce, config_to_dict
from methods.core.results import read_results
from methods.registry import load_registry
from methods.run import plan_run, run_card
from methods.testbeds import UsageError
from methods.testbeds import testbed_class as class_of

REGISTRY = load_registry()
PAIRS = [(card.name, testbed) for card in REGISTRY.cards.values() if card.kind == "unlearn" for testbed in card.testbeds]
IDS = [f"{card}-{testbed}" for card, testbed in PAIRS]
QUIET = dict(log=lambda _: None)


def smoke_overrides(card: str, testbed: str) -> dict:
    return dict(REGISTRY.card(card).on(testbed).smoke)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """One results file and a second, unwritten run per (card, testbed), on the smoke testbeds."""
    runs = {}

    def run(card: str, testbed: str):
        if (card, testbed) not in runs:
            out = tmp_path_factory.mktemp(f"{card}-{testbed}")
            options = dict(seed=3, device="cpu", overrides=smoke_overrides(card, testbed),
                           testbed_overrides=REGISTRY.testbed(testbed).smoke, **QUIET)
            first = run_card(card, testbed, out=out, **options)
            second = run_card(card, testbed, write=False, **options)
            runs[(card, testbed)] = (out, first, second)
        return runs[(card, testbed)]

    return run


@pytest.mark.parametrize("card,testbed", PAIRS, ids=IDS)
def test_config_round_trips_through_json(card, testbed):
    spec = REGISTRY.card(card)
    config = spec.build_config(testbed)
    again = spec.load_config_class()(**coerce(type(config), json.loads(json.dumps(config_to_dict(config)))))
    assert again == config
    defaults = spec.load_config_class()()
    for name, adaptation in spec.on(testbed).adaptations.items():  # every adaptation moves a field of the config
        assert getattr(config, name) == coerce(type(config), {name: adaptation.value})[name]
        assert adaptation.why.strip(), f"{card}.{name}: an adaptation says why"
    assert config != defaults or not spec.on(testbed).adaptations


@pytest.mark.parametrize("card,testbed", PAIRS, ids=IDS)
def test_unknown_override_is_rejected_before_anything_loads(card, testbed):
    with pytest.raises(UsageError, match=f"bad option for {card}: unknown option 'no_such_field'"):
        plan_run(card, testbed, overrides={"no_such_field": 1})
    with pytest.raises(ConfigError):
        REGISTRY.card(card).build_config(testbed, no_such_field=1)


@pytest.mark.parametrize("card,testbed", PAIRS, ids=IDS)
def test_the_card_leaves_the_input_model_untouched(card, testbed):
    spec = REGISTRY.card(card)
    loaded = class_of(REGISTRY.testbed(testbed)).load("ci", "cpu", **QUIET, **REGISTRY.testbed(testbed).smoke)
    before = {name: tensor.clone() for name, tensor in loaded.model_tensors().items()}
    request = loaded.requests(0)[0]
    edited = loaded.unlearn(spec, spec.build_config(testbed, **smoke_overrides(card, testbed)), request, seed=0)
    after = loaded.model_tensors()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before), f"{card} edited its input model in place"
    assert edited is not None and isinstance(edited.info, dict)


@pytest.mark.parametrize("card,testbed", PAIRS, ids=IDS)
def test_same_seed_same_metrics_and_a_valid_results_file(card, testbed, smoke_runs):
    out, first, second = smoke_runs(card, testbed)
    assert first["metrics"] == second["metrics"] and first["references"] == second["references"]
    assert any(stat is not None and stat["mean"] is not None for stat in first["metrics"].values())
    on_disk = read_results(out / "metrics.json")  # schema v1, no absolute path
    assert on_disk["card"] == card and on_disk["testbed"] == testbed and on_disk["catalog_ids"]
    assert set(on_disk["metrics"]) == {metric.key for metric in REGISTRY.testbed(testbed).metrics}
    figure = REGISTRY.testbed(testbed).figure
    assert figure is None or (out / figure).stat().st_size > 1000


def test_a_config_error_names_the_class_and_field():
    with pytest.raises(UsageError, match=r"bad option for esd: ESDConfig.iterations must be >= 1, got 0"):
        plan_run("esd", "minicanvas", overrides={"iterations": 0})
