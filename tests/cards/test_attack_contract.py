"""The contract every registered attack card keeps, parametrized over the registry (a new attack is tested by
registering it): on its testbed's smoke scale, against the unedited model, the same seed gives the same cell (ASR,
prompts); the cell is a valid results file (schema v1, kind "attack") with the pre-attack ASR as its reference; the
attack leaves the model it attacks untouched. Plus the matrix's argument checks and the attack bars' parsing."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from methods.core.results import read_results
from methods.matrix import plan_matrix, run_matrix
from methods.registry import RegistryError, load_registry
from methods.testbeds import UsageError
from registry_helpers import card_entry, write_registry

REGISTRY = load_registry()
PAIRS = [(card.name, testbed) for card in REGISTRY.cards.values() if card.kind == "attack" for testbed in card.testbeds]


def smoke_plan(card: str, testbed: str, out):
    plan = plan_matrix(testbed, seed=3, device="cpu", out=out, attacks=[card], targets=[])
    spec = REGISTRY.card(card)
    config = spec.build_config(testbed, **spec.on(testbed).smoke)
    return dataclasses.replace(plan, attacks=[dataclasses.replace(plan.attacks[0], config=config)])


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    done = {}

    def run(card: str, testbed: str):
        if (card, testbed) not in done:
            smoke = REGISTRY.testbed(testbed).smoke
            first, second = tmp_path_factory.mktemp(f"{card}-a"), tmp_path_factory.mktemp(f"{card}-b")
            for out in (first, second):
                run_matrix(smoke_plan(card, testbed, out), lambda _: None, smoke)
            done[(card, testbed)] = (first, second)
        return done[(card, testbed)]

    return run


@pytest.mark.parametrize("card,testbed", PAIRS, ids=[f"{c}-{t}" for c, t in PAIRS])
def test_same_seed_same_cell_and_a_valid_results_file(card, testbed, cells):
    first, second = cells(card, testbed)
    a = read_results(first / card / "base.json")
    b = read_results(second / card / "base.json")
    assert a["kind"] == "attack" and a["card"] == card and a["details"]["target"] == "base"
    assert a["metrics"] == b["metrics"] and a["references"] == b["references"]
    assert a["details"]["prompts"] == b["details"]["prompts"]
    cell = REGISTRY.testbed(testbed).attacks.cell
    assert 0.0 <= a["metrics"][cell]["mean"] <= 1.0
    assert a["references"]["pre_attack"][cell]["n"] == REGISTRY.testbed(testbed).smoke.get("attack_seeds", 3)
    assert a["metrics"]["queries"]["mean"] > 0
    assert json.loads(json.dumps(a)) == a


@pytest.mark.parametrize("card,testbed", PAIRS, ids=[f"{c}-{t}" for c, t in PAIRS])
def test_the_attack_leaves_the_attacked_model_untouched(card, testbed):
    from methods.testbeds import testbed_class

    spec = REGISTRY.testbed(testbed)
    bed = testbed_class(spec).load("ci", "cpu", None, lambda _: None, **spec.smoke)
    before = {name: tensor.clone() for name, tensor in bed.model_tensors().items()}
    attack = REGISTRY.card(card)
    config = attack.build_config(testbed, **attack.on(testbed).smoke)
    request = bed.requests(0)[0]
    output = attack.load_entry()(bed.base_model(), request.payload, config, 0, bed)
    assert (output.prompts is None) != (output.embeddings is None)
    after = bed.model_tensors()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_matrix_arguments_are_checked_before_anything_loads():
    with pytest.raises(UsageError, match="nothing: not an attack card on minicanvas; choose from"):
        plan_matrix("minicanvas", attacks=["nothing"])
    with pytest.raises(UsageError, match="esd: not an attack card"):
        plan_matrix("minicanvas", attacks=["esd"])
    with pytest.raises(UsageError, match="ga: not an unlearn card on minicanvas"):
        plan_matrix("minicanvas", targets=["ga"])
    plan = plan_matrix("minicanvas", targets=["base", "esd"])
    assert [target.card.name for target in plan.targets] == ["esd"]


def attack_entry(**bar) -> dict:
    entry = card_entry("minicanvas", ["pham2023circumventing"], entry="methods.attacks.t2i.concept_inversion:attack",
                       config="methods.attacks.t2i.concept_inversion:ConceptInversionConfig", kind="attack")
    entry.pop("edits")
    entry["testbeds"]["minicanvas"]["bar"] = {"all": [bar]}
    return entry


@pytest.mark.parametrize("condition, message", [
    ({"metric": "ASR", "op": ">=", "value": 0.8}, "bar.all.0.target: an attack card's condition names the matrix"),
    ({"target": "nobody", "metric": "ASR", "op": ">=", "value": 0.8},
     "bar.all.0.target: 'nobody' is neither `base` nor an unlearn card on minicanvas"),
    ({"target": "base", "metric": "UA", "op": ">=", "value": 0.8}, "'UA' is not an attack metric of minicanvas"),
    ({"target": "base", "metric": "ASR", "op": ">=", "reference": "base"},
     "'base' is not a reference of minicanvas"),
])
def test_a_malformed_attack_bar_names_the_field(tmp_path, condition, message):
    path = write_registry(tmp_path / "registry.yaml", {"bad": attack_entry(**condition)})
    with pytest.raises(RegistryError) as error:
        load_registry(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value), str(error.value)


def test_an_attack_bar_holds_per_target(tmp_path):
    from methods.core.results import stat

    path = write_registry(tmp_path / "registry.yaml", {"x": attack_entry(
        target="base", metric="ASR", op=">=", reference="pre_attack", offset=0.3)})
    bar = load_registry(path).card("x").on("minicanvas").bar
    labels = {metric.key: metric.label for metric in REGISTRY.testbed("minicanvas").attacks.metrics}
    assert bar.text(labels) == "Post-attack ASR ≥ pre_attack + 0.3 against base"
    assert bar.on_target("esd").check({"ASR": stat([0.9])}, {}) is None  # no condition on esd
    base = bar.on_target("base")
    assert base.check({"ASR": stat([0.9])}, {"pre_attack": {"ASR": stat([0.5])}}) is True
    assert base.check({"ASR": stat([0.7])}, {"pre_attack": {"ASR": stat([0.5])}}) is False
