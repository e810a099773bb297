"""Attack cards' notebooks: the builder's attack variant (a column of the robustness matrix instead of a run of the
card), their order in notebooks/_run.py (after every unlearn card: they attack the unlearn cards' cached weights),
the notebook helper's parameter checks and the column / prompts summaries."""

from __future__ import annotations

import importlib.util

import pytest

from methods.core.results import stat
from methods.registry import REGISTRY_FILE, load_registry

REGISTRY = load_registry()
ROOT = REGISTRY_FILE.parents[1]
ATTACKS = [card for card in REGISTRY.cards.values() if card.kind == "attack"]


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"notebooks_{name}", ROOT / "notebooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("card", ATTACKS, ids=[card.name for card in ATTACKS])
def test_attack_notebook_runs_the_column_of_the_matrix(card):
    notebook = load("_build").build(card, REGISTRY)
    sources = [cell.source for cell in notebook.cells]
    parameters = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    assert "targets = None  # None: every unlearn card of the testbed" in parameters.source
    for name in ("testbed = ", "scale = ", "device = ", "seed = "):
        assert name in parameters.source
    assert "model = " not in parameters.source and "forget = " not in parameters.source
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "attack_run(CARD, testbed=testbed, scale=scale, device=device, seed=seed, targets=targets" in code
    assert "column_markdown(records)" in code and "prompts_markdown(records)" in code and "card_run" not in code
    assert f"python -m methods matrix --testbed minicanvas --attack {card.name}" in "\n".join(sources)
    assert sources[0].startswith(f"# {card.title}") and "against base" in sources[0], "the claim and the bar"
    assert card.module_file().name in sources[1], "the module docstring is the algorithm"


def test_run_order_puts_attack_notebooks_after_every_unlearn_notebook():
    runner = load("_run")
    cards = list(REGISTRY.cards.values())
    phases = runner.phases(cards)
    assert [card.kind for card in phases[0]] == ["unlearn"] * len(phases[0])
    if ATTACKS:
        assert len(phases) == 2 and phases[1] == ATTACKS
    assert sum(len(phase) for phase in phases) == len(cards)
    assert runner.phases(ATTACKS) == [ATTACKS]


@pytest.mark.parametrize("arguments, message", [
    (dict(card="esd"), "esd: not an attack card on minicanvas"),
    (dict(targets=["nonesuch"]), "nonesuch: not an unlearn card on minicanvas"),
    (dict(seed=-1), "seed must be an integer"),
])
def test_attack_run_checks_its_parameters(arguments, message):
    from methods.notebook import ParameterError, attack_run

    if not ATTACKS:
        pytest.skip("no attack card registered")
    arguments = {"card": ATTACKS[0].name, **arguments}
    with pytest.raises(ParameterError) as error:
        attack_run(arguments.pop("card"), testbed="minicanvas", **arguments)
    assert message in str(error.value)


def test_column_and_prompts_markdown():
    from methods.report import column_markdown, prompts_markdown

    def record(target, post, pre, prompts, met, conditions):
        return {"testbed": "minicanvas", "metrics": {"ASR": stat([post]), "queries": stat([100.0])},
                "references": {"pre_attack": {"ASR": stat([pre])}}, "timings": {"method_s": stat([2.0])},
                "bar": {"text": "Post-attack ASR ≥ 0.8 against base", "met": met, "conditions": conditions},
                "details": {"target": target, "prompts": prompts}}

    records = [record("base", 0.9, 0.8, ["a digit thre", "trois"], True, ["x"]),
               record("esd", 0.2, 0.1, None, None, [])]
    table = column_markdown(records).splitlines()
    assert table[0] == "| target | Pre-attack ASR | Post-attack ASR ↑ | Queries ↓ | attack time | bar here |"
    assert table[2] == ("| base | 0.800 | 0.900 | 100 | 2.0 s | **met** (Post-attack ASR ≥ 0.8 against base) |")
    assert table[3] == "| esd | 0.100 | 0.200 | 100 | 2.0 s | no condition on this target |"
    prompts = prompts_markdown(records)
    assert "**Against base** (2 prompts):" in prompts and "a digit thre\ntrois" in prompts
    assert "**Against esd:** no text prompts" in prompts
