"""Helpers of the site tests: a hostile temporary catalog with its executable cards and their results, and strict
builds of the site into temp folders.

(A module with its own name rather than conftest, so that test files can import it unambiguously.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from site_tools.catalog import REPO_ROOT

# Strings that would run script, inject markup or break out of a context if any page inserted them unescaped.
SCRIPT_TITLE = "<script>alert(1)</script> Unlearning"
TITLE_BREAKOUT = "</title><script>alert(2)</script> Erasure"
HOSTILE_PAPERS = [
    {
        "id": "evil2024script",
        "title": SCRIPT_TITLE,
        "aliases": [TITLE_BREAKOUT, "*Bold* [click](javascript:alert(3)) `code` | pipe"],
        "authors": ["<img src=x onerror=alert(4)>", "Ann O'Hara & {{ jinja }}"],
        "year": 2024,
        "month": 5,
        "venue": "IEEE S&P 2024 Workshop",  # validate admits no markup in a venue, but '&' must still be escaped
        "links": {"arxiv": "2405.00001", "code": "https://example.org/code?a=1&b=2"},
        "contribution": "benchmark",
        "modality": ["image"],
        "model_family": ["stable-diffusion"],
        "target": ["nsfw"],
        "method_card": ["canvas_todo", "profile_card"],  # a list: the baselines of a benchmark
        "summary": "A hostile entry: <iframe src=javascript:alert(5)></iframe> <!-- comment --> ``` fence ``` "
                   "# not a heading\n\n    not code, **not bold** and [not a link](https://example.org).",
        "sources": ["contributed"],
        "notes": "<svg onload=alert(6)> ]]> --> {#id} <style>body{display:none}</style>",
    },
    {
        "id": "plain2024method",
        "title": "A Plain Method That Evaluates on the Hostile Benchmark",
        "authors": ["Jane Doe"],
        "year": 2024,
        "venue": "arXiv",
        "links": {"arxiv": "2405.00002"},
        "contribution": "method",
        "stage": ["decoding-time"],
        "modality": ["image"],
        "model_family": ["stable-diffusion"],
        "target": ["nsfw"],
        "benchmarks": ["evil2024script"],
        "method_card": "plain_card",  # one card: MiniCanvas, executed, misses its quality bar
        "summary": "Steers sampling away from a concept without changing weights; used to test the hostile pages.",
        "sources": ["contributed"],
    },
    {
        "id": "plain2024attack",
        "title": "An Attack on Erased Concepts in <Stable> Diffusion",
        "year": 2024,
        "venue": "ICLR 2025",
        "links": {"openreview": "abcdef1234"},
        "contribution": "attack",
        "modality": ["image"],
        "model_family": ["stable-diffusion"],
        "target": ["nsfw"],
        "benchmarks": ["evil2024script"],
        "summary": "Recovers erased concepts with adversarial prompts; used to test related-entry links.",
        "sources": ["contributed"],
    },
]


# The testbed of each card of the hostile catalog (its notebook's out_dir parameter says so).
HOSTILE_CARDS = {"plain_card": "minicanvas", "canvas_todo": "minicanvas", "profile_card": "miniprofiles"}
SAVED_OUTPUT = "saved output of {name}: the site shows it without running the notebook"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

# A MiniCanvas run (the fields the site reads; real files have more) whose UA misses the 0.85 bar.
MINICANVAS_RESULTS = {
    "method": "plain_card", "testbed": "minicanvas", "scale": "ci", "forget": "three", "seed": 0,
    "metrics": {"UA": 0.5125, "IRA": 0.9611, "CRA": 0.9986, "FD": 61.25, "forget_accuracy": 0.4875},
    "base_metrics": {"UA": 0.0375, "IRA": 0.9778, "CRA": 0.9986, "FD": 52.71, "forget_accuracy": 0.9625},
    "method_wall_time_s": 12.5, "memory": {"peak_rss_mb": 812.4}, "git_commit": COMMIT,
}
HEADLINE = ("forget_acc", "forget_paraphrase_acc", "retain_acc", "real_world_acc", "utility_acc")
MINIPROFILES_RESULTS = {
    "method": "profile_card", "testbed": "miniprofiles", "scale": "ci", "seed": 0, "date": "2026-01-02",
    "forget_acc": 0.0903, "forget_paraphrase_acc": 0.066, "retain_acc": 0.5941, "real_world_acc": 0.7229,
    "utility_acc": 0.4907, "headline_std": dict.fromkeys(HEADLINE, 0.0123),
    "forget_quality_gap": {"mean": 0.0373, "std": 0.007},
    "base": {key: {"mean": 0.99, "std": 0.0} for key in HEADLINE},
    "oracle": {key: {"mean": 0.0868 if key.startswith("forget") else 0.9977, "std": 0.05} for key in HEADLINE},
    "unlearn_time_s": {"mean": 2.4, "std": 0.06}, "peak_rss_mb": 748.3,
}


def write_notebook(path: Path, name: str, testbed: str) -> Path:
    """A small card notebook as papermill leaves it: a title, a parameters cell naming its results folder, and a code
    cell with a saved output."""
    notebook = new_notebook(cells=[
        new_markdown_cell(f"# Card {name} on {testbed}\n\nA test notebook; math stays text: $\\epsilon_\\theta$."),
        new_code_cell(f'scale = "ci"\nseed = 0\nout_dir = "results/{testbed}/{name}"', metadata={"tags": ["parameters"]}),
        new_code_cell(f"print({SAVED_OUTPUT.format(name=name)!r})", execution_count=1,
                      outputs=[new_output("stream", name="stdout", text=SAVED_OUTPUT.format(name=name) + "\n")]),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))
    return path


def write_catalog(folder: Path, papers: list[dict], testbeds: dict[str, str] | None = None) -> Path:
    """folder/catalog/papers/<id>.yaml, plus folder/notebooks/<card>.ipynb for every card the papers name (validation
    expects them; the site renders them), on the testbed `testbeds` gives (default MiniCanvas)."""
    papers_dir = folder / "catalog" / "papers"
    papers_dir.mkdir(parents=True)
    testbeds = HOSTILE_CARDS if testbeds is None else testbeds
    for paper in papers:
        (papers_dir / f"{paper['id']}.yaml").write_text(yaml.safe_dump(paper, allow_unicode=True, sort_keys=False),
                                                       encoding="utf-8")
        cards = paper.get("method_card") or []
        for name in [cards] if isinstance(cards, str) else cards:
            write_notebook(folder / "notebooks" / f"{name}.ipynb", name, testbeds.get(name, "minicanvas"))
    return papers_dir


def write_results(folder: Path, runs: dict[tuple[str, str], dict | str]) -> Path:
    """folder/<testbed>/<card>/metrics.json for each (testbed, card): a dict as JSON, a string as the file's text."""
    for (testbed, name), content in runs.items():
        path = folder / testbed / name / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content, indent=1), encoding="utf-8")
    return folder


def run_build(site_dir: Path, papers_dir: Path | None = None, results_dir: Path | None = None) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` as `make build` runs it. `papers_dir` replaces the catalog (ATLAS_PAPERS_DIR; the
    cards' notebooks are read beside it), `results_dir` the results folder (ATLAS_RESULTS_DIR). The notebooks'
    rendering cache goes beside the site, so test builds leave the repository's cache alone."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", MPLBACKEND="Agg",
               ATLAS_NOTEBOOK_CACHE=str(site_dir.parent / f"{site_dir.name}-notebook-cache"))
    for name, value in (("ATLAS_PAPERS_DIR", papers_dir), ("ATLAS_RESULTS_DIR", results_dir)):
        env.pop(name, None)
        if value is not None:
            env[name] = str(value)
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site_dir)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def build_site(site_dir: Path, papers_dir: Path | None = None, results_dir: Path | None = None) -> Path:
    """A strict build that must succeed without a warning."""
    result = run_build(site_dir, papers_dir, results_dir)
    assert result.returncode == 0, f"mkdocs build failed:\n{result.stdout}\n{result.stderr}"
    warnings = [line for line in result.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert not warnings, "\n".join(warnings)
    return site_dir
