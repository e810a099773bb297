"""Adding a card is one method file plus one registry entry: a toy card registered in a temporary registry gets a
notebook, a results file, a card page and a leaderboard row, and no file of the repository changes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

from methods.core.results import read_results
from methods.registry import REGISTRY_FILE, load_registry
from methods.run import run_card

ROOT = REGISTRY_FILE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "site"))
from site_build_helpers import build_site  # noqa: E402

TOY = '''"""Toy eraser: a card that changes nothing (it only exists to show what adding a card takes).

Follows owner/toy@0000000, toy.py.
"""

from dataclasses import dataclass

from methods.core.config import check_config
from methods.t2i.diffusion import EditedDiffusion


@dataclass
class ToyConfig:
    strength: float = 1.0  # the toy paper's default

    def __post_init__(self):
        check_config(self, strength="[0,10]")


def erase(components, request, config, seed=0):
    """1. Do nothing. 2. Return the model as it was."""
    return EditedDiffusion(components, info={"strength": config.strength})
'''

PAPER = {"id": "toy2026eraser", "title": "A Toy Eraser for Testing the Atlas", "year": 2026, "venue": "arXiv",
         "links": {"arxiv": "2601.00001"}, "contribution": "method", "stage": ["training-free"],
         "modality": ["image", "text"], "model_family": ["stable-diffusion"], "target": ["object"],
         "method_card": "toy", "summary": "A toy entry whose card changes nothing; it tests the card platform.",
         "sources": ["contributed"]}


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def test_a_toy_card_gets_a_notebook_a_results_file_a_page_and_a_row(tmp_path, monkeypatch):
    before = git_status()
    # 1. one method file ...
    (tmp_path / "toy_eraser.py").write_text(TOY, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    # ... and one registry entry (in a temporary registry)
    registry_path = tmp_path / "registry.yaml"
    registry_path.write_text(yaml.safe_dump({"cards": {"toy": {
        "kind": "unlearn", "modality": "t2i", "title": "Toy eraser: changes nothing", "entry": "toy_eraser:erase",
        "config": "toy_eraser:ToyConfig", "edits": "sampler", "catalog": ["toy2026eraser"],
        "claim": {"text": "The toy erases nothing, 0% of the time.", "source": "Table 0", "status": "verified"},
        "fidelity": {"follows": "owner/toy@0000000, toy.py"},
        "testbeds": {"minicanvas": {"adaptations": {"strength": {"value": 0.5, "why": "measured: half is enough"}},
                                    "bar": {"all": [{"metric": "UA", "op": ">=", "reference": "base",
                                                             "offset": 0.5}]}}},
    }}}), encoding="utf-8")
    monkeypatch.setenv("MMU_ATLAS_REGISTRY", str(registry_path))
    registry = load_registry()
    assert list(registry.cards) == ["toy"]

    # 2. its notebook, from the one builder
    spec = importlib.util.spec_from_file_location("notebooks_build", ROOT / "notebooks" / "_build.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    notebook = builder.build(registry.card("toy"), registry)
    assert "Toy eraser: a card that changes nothing" in notebook.cells[1].source  # the module docstring
    (tmp_path / "notebooks").mkdir()
    nbformat.write(notebook, str(tmp_path / "notebooks" / "toy.ipynb"))

    # 3. a results file, from the generic runner on the smoke testbed
    out = tmp_path / "results" / "minicanvas" / "toy"
    record = run_card("toy", "minicanvas", seed=0, device="cpu", out=out, log=lambda _: None,
                      testbed_overrides=registry.testbed("minicanvas").smoke)
    assert read_results(out / "metrics.json")["card"] == "toy"
    assert record["config"] == {"strength": 0.5} and record["bar"]["met"] is False  # changing nothing misses it

    # 4. a card page and a leaderboard row, in a strict site build of a catalog that names the card
    papers = tmp_path / "catalog" / "papers"
    papers.mkdir(parents=True)
    (papers / "toy2026eraser.yaml").write_text(yaml.safe_dump(PAPER, sort_keys=False), encoding="utf-8")
    site = build_site(tmp_path / "site", papers, tmp_path / "results", registry_path)
    page = (site / "cards" / "toy" / "index.html").read_text(encoding="utf-8")
    assert "Toy eraser" in page and "The toy erases nothing, 0% of the time." in page
    assert "measured: half is enough" in page  # the adaptation's reason on the card page
    board = (site / "leaderboards" / "index.html").read_text(encoding="utf-8")
    assert 'href="../cards/toy/"' in board and "atlas-bar--missed" in board
    assert json.loads((site / "cards" / "toy" / "metrics.json").read_text())["card"] == "toy"

    # 5. and nothing in the repository changed
    assert git_status() == before
