"""The registry as data: every card declared once and loadable without torch; malformed entries name file and field."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys

import pytest

from methods.core.results import stat
from methods.registry import REGISTRY_FILE, RegistryError, load_registry
from registry_helpers import card_entry, write_registry

REGISTRY = load_registry()
ROOT = REGISTRY_FILE.parents[1]


def load_builder():
    spec = importlib.util.spec_from_file_location("notebooks_build", ROOT / "notebooks" / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_registry_and_testbeds_load_without_torch():
    code = ("import sys; from methods.registry import load_registry; r = load_registry(); "
            "import site_tools.site.cards; assert 'torch' not in sys.modules, 'torch imported'; print(len(r.cards))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(REGISTRY.cards)


@pytest.mark.parametrize("name", list(REGISTRY.cards))
def test_every_card_imports_and_its_defaults_are_a_valid_config(name):
    card = REGISTRY.card(name)
    assert callable(card.load_entry())
    config_class = card.load_config_class()
    assert dataclasses.is_dataclass(config_class)
    config_class()  # the official defaults pass the config's own checks
    assert card.claim is not None and card.claim.text and card.claim.source and card.claim.status
    assert card.follows and card.module_file().is_file()
    for testbed, on in card.testbeds.items():
        fields = {field.name for field in dataclasses.fields(config_class)}
        assert set(on.adaptations) <= fields and set(on.smoke) <= fields, (name, testbed)
        assert on.bar is not None, f"{name} declares a quality bar on {testbed}"


def test_committed_notebooks_match_their_builder(capsys):
    status = load_builder().check(list(REGISTRY.cards.values()), REGISTRY)
    assert status == 0, capsys.readouterr().err


def test_rebuilding_keeps_outputs_unless_code_changed(tmp_path):
    """A text change (a bar note) updates an executed notebook's markdown in place; a code change rewrites it bare."""
    import nbformat

    builder = load_builder()
    card = REGISTRY.cards["ga"]
    path = tmp_path / "ga.ipynb"
    executed = builder.build(card, REGISTRY)
    code = next(cell for cell in executed.cells if cell.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
    nbformat.write(executed, str(path))
    assert builder.write(builder.build(card, REGISTRY), path) == "unchanged"

    changed = builder.build(card, REGISTRY)
    changed.cells[0].source += "\nnew text"
    assert builder.write(changed, path).startswith("updated the text")
    kept = nbformat.read(str(path), as_version=4)
    assert kept.cells[0].source.endswith("new text") and any(cell.get("outputs") for cell in kept.cells)

    changed.cells[2].source += "\nx = 1"
    assert builder.write(changed, path).startswith("wrote")
    assert not any(cell.get("outputs") for cell in nbformat.read(str(path), as_version=4).cells)


def test_bar_text_and_verdicts():
    bar = REGISTRY.card("graddiff").on("miniprofiles").bar
    labels = {metric.key: metric.label for metric in REGISTRY.testbed("miniprofiles").metrics}
    assert bar.text(labels) == "Forget < 0.2, Retain ≥ ga's + 0.25"
    others = {"ga": {"retain_acc": stat([0.6])}}
    assert bar.check({"forget_acc": stat([0.1]), "retain_acc": stat([0.9])}, {}, others.get) is True
    assert bar.check({"forget_acc": stat([0.1]), "retain_acc": stat([0.8])}, {}, others.get) is False
    assert bar.check({"forget_acc": stat([0.1]), "retain_acc": stat([0.9])}, {}, lambda _: None) is None
    assert bar.check({"forget_acc": stat([0.3]), "retain_acc": stat([0.9])}, {}, lambda _: None) is False
    sld = REGISTRY.card("sld").on("minicanvas").bar
    assert sld.check({"forget_accuracy": stat([0.4])}, {"base": {"forget_accuracy": stat([0.9])}}) is True
    assert sld.check({"forget_accuracy": stat([0.5])}, {"base": {"forget_accuracy": stat([0.9])}}) is False


@pytest.mark.parametrize("change, message", [
    (lambda c: c["testbeds"].update(nowhere={}), "cards.bad.testbeds.nowhere: unknown testbed"),
    (lambda c: c.update(modality="audio"), "cards.bad.testbeds.miniprofiles: the testbed's modality is 'mllm'"),
    (lambda c: c.update(kind="erase"), "cards.bad.kind: must be one of unlearn, attack"),
    (lambda c: c.update(entry="not an entry"), "cards.bad.entry: must be 'module:name'"),
    (lambda c: c.pop("edits"), "cards.bad.edits: an unlearn card says what it edits"),
    (lambda c: c["fidelity"].pop("follows"), "cards.bad.fidelity.follows: is required"),
    (lambda c: c.update(catalog=[]), "cards.bad.catalog: must be a non-empty list"),
    (lambda c: c["testbeds"]["miniprofiles"]["bar"]["all"].append({"metric": "UA", "op": ">=", "value": 1}),
     "cards.bad.testbeds.miniprofiles.bar.all.1.metric: 'UA' is not a metric of miniprofiles"),
    (lambda c: c["testbeds"]["miniprofiles"]["bar"]["all"].append({"metric": "forget_acc", "op": "~", "value": 1}),
     "bar.all.1.op: must be one of >=, <=, >, <"),
    (lambda c: c["testbeds"]["miniprofiles"]["bar"]["all"].append({"metric": "forget_acc", "op": "<",
                                                                  "reference": "nobody"}),
     "bar.all.1.reference: 'nobody' is not a reference of miniprofiles"),
    (lambda c: c["testbeds"]["miniprofiles"].update(adaptations={"steps": {"value": 3}}),
     "cards.bad.testbeds.miniprofiles.adaptations.steps.why: is required"),
])
def test_a_malformed_entry_names_the_file_and_the_field(tmp_path, change, message):
    entry = card_entry("miniprofiles", ["liu2024protecting"])
    change(entry)
    path = write_registry(tmp_path / "registry.yaml", {"bad": entry})
    with pytest.raises(RegistryError) as error:
        load_registry(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value), str(error.value)


@pytest.mark.parametrize("name", list(REGISTRY.cards))
def test_the_card_module_says_which_official_code_it_follows(name):
    """The module docstring (the notebook's algorithm cell) and the registry name the same official repository and
    commit, so the card page's fidelity box and the code cannot drift apart."""
    import ast

    card = REGISTRY.card(name)
    docstring = ast.get_docstring(ast.parse(card.module_file().read_text(encoding="utf-8")))
    repository_at_commit = card.follows.split(",")[0].split()[0]
    assert "Follows " in docstring and repository_at_commit in docstring, (name, repository_at_commit)


def test_no_committed_notebook_or_results_file_holds_an_absolute_path():
    """Notebooks and results are committed: they must not carry the path of the machine that ran them."""
    import json

    from methods.core.results import absolute_paths

    tracked = subprocess.run(["git", "ls-files", "notebooks", "results"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    offenders = []
    for name in tracked:
        if name.endswith((".ipynb", ".json")):
            found = absolute_paths(json.loads((ROOT / name).read_text(encoding="utf-8")))
            offenders += [f"{name}: {where}" for where in found]
    assert not offenders, offenders
