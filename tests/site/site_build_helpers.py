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


# The testbed of each card of the hostile catalog (its registry entry says so).
HOSTILE_CARDS = {"plain_card": "minicanvas", "canvas_todo": "minicanvas", "profile_card": "miniprofiles"}
SAVED_OUTPUT = "saved output of {name}: the site shows it without running the notebook"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def stat(mean, std=None):
    return {"mean": mean, "std": std}


def results_record(card: str, testbed: str, metrics: dict, references: dict, *, date="2026-01-02T03:04:05+00:00",
                   commit=COMMIT, method_s=stat(12.5), memory=812.4, requests=None, **extra) -> dict:
    """A results record of schema v1 (what `python -m methods run` writes) with the given metrics."""
    return {
        "schema_version": 1, "card": card, "kind": "unlearn", "modality": "t2i" if testbed == "minicanvas" else "mllm",
        "testbed": testbed, "catalog_ids": [], "date": date, "git": {"commit": commit, "dirty": False}, "seed": 0,
        "scale": "ci", "device": "cpu", "model": None,
        "request": {"requests": requests if requests is not None else [{"forget": "three", "anchor": "eight"}]},
        "config": {"lamb": 0.5}, "config_defaults": {"lamb": 0.5}, "adaptations": {}, "testbed_config": {},
        "versions": {"torch": "2.13.0"}, "metrics": metrics, "references": references,
        "bar": {"text": "written by the run", "met": None}, "timings": {"method_s": method_s, "total_s": stat(40.0)},
        "memory": {"peak_rss_mb": memory}, "details": {}, "figure": "samples.png" if testbed == "minicanvas" else None,
        **extra,
    }


# A MiniCanvas run whose UA misses the 0.85 bar.
MINICANVAS_RESULTS = results_record(
    "plain_card", "minicanvas",
    {"UA": stat(0.5125), "IRA": stat(0.9611), "CRA": stat(0.9986), "FD": stat(61.25), "forget_accuracy": stat(0.4875)},
    {"base": {"UA": stat(0.0375), "IRA": stat(0.9778), "CRA": stat(0.9986), "FD": stat(52.71),
              "forget_accuracy": stat(0.9625)}})
HEADLINE = ("forget_acc", "forget_paraphrase_acc", "retain_acc", "real_world_acc", "utility_acc")
MINIPROFILES_RESULTS = results_record(
    "profile_card", "miniprofiles",
    {"forget_acc": stat(0.0903, 0.0123), "forget_paraphrase_acc": stat(0.066, 0.0123), "retain_acc": stat(0.5941, 0.0123),
     "real_world_acc": stat(0.7229, 0.0123), "utility_acc": stat(0.4907, 0.0123), "forget_quality_gap": stat(0.0373, 0.007)},
    {"base": {key: stat(0.99, 0.0) for key in HEADLINE},
     "oracle": {**{key: stat(0.0868 if key.startswith("forget") else 0.9977, 0.05) for key in HEADLINE},
                "forget_quality_gap": stat(0.0, 0.0)}},
    commit=None, method_s=stat(2.4, 0.06), memory=748.3,
    requests=[{"forget_ids": ["p01"]}, {"forget_ids": ["p02"]}, {"forget_ids": ["p03"]}])


def write_registry(path: Path, cards: dict[str, str] | None = None) -> Path:
    """A registry with a card per (name, testbed) of `cards` (default: the hostile catalog's), each naming the papers
    of HOSTILE_PAPERS whose method_card lists it."""
    from registry_helpers import card_entry, write_registry as write

    cards = HOSTILE_CARDS if cards is None else cards
    entries = {}
    for name, testbed in cards.items():
        catalog = [paper["id"] for paper in HOSTILE_PAPERS
                   if name in ([paper.get("method_card")] if isinstance(paper.get("method_card"), str)
                               else paper.get("method_card") or [])]
        entries[name] = card_entry(testbed, catalog or ["plain2024method"], title=f"Card {name}: a test card")
    return write(path, entries)


def write_notebook(path: Path, name: str, testbed: str) -> Path:
    """A small card notebook as papermill leaves it: a title, a parameters cell, and a code cell with a saved
    output."""
    notebook = new_notebook(cells=[
        new_markdown_cell(f"# Card {name} on {testbed}\n\nA test notebook; math stays text: $\\epsilon_\\theta$."),
        new_code_cell(f'testbed = "{testbed}"\nscale = "ci"\nseed = 0', metadata={"tags": ["parameters"]}),
        new_code_cell(f"print({SAVED_OUTPUT.format(name=name)!r})", execution_count=1,
                      outputs=[new_output("stream", name="stdout", text=SAVED_OUTPUT.format(name=name) + "\n")]),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(path))
    return path


def write_catalog(folder: Path, papers: list[dict], testbeds: dict[str, str] | None = None) -> Path:
    """folder/catalog/papers/<id>.yaml, plus folder/notebooks/<card>.ipynb for every card the papers name (the site
    renders them), on the testbed `testbeds` gives (default MiniCanvas), and folder/registry.yaml registering them."""
    papers_dir = folder / "catalog" / "papers"
    papers_dir.mkdir(parents=True)
    testbeds = HOSTILE_CARDS if testbeds is None else testbeds
    for paper in papers:
        (papers_dir / f"{paper['id']}.yaml").write_text(yaml.safe_dump(paper, allow_unicode=True, sort_keys=False),
                                                       encoding="utf-8")
        cards = paper.get("method_card") or []
        for name in [cards] if isinstance(cards, str) else cards:
            write_notebook(folder / "notebooks" / f"{name}.ipynb", name, testbeds.get(name, "minicanvas"))
    write_registry(folder / "registry.yaml", testbeds)
    return papers_dir


def write_results(folder: Path, runs: dict[tuple[str, str], dict | str]) -> Path:
    """folder/<testbed>/<card>/metrics.json for each (testbed, card): a dict as JSON, a string as the file's text."""
    for (testbed, name), content in runs.items():
        path = folder / testbed / name / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content, indent=1), encoding="utf-8")
    return folder


def run_build(site_dir: Path, papers_dir: Path | None = None, results_dir: Path | None = None,
              registry: Path | None = None) -> subprocess.CompletedProcess:
    """`mkdocs build --strict` as `make build` runs it. `papers_dir` replaces the catalog (ATLAS_PAPERS_DIR; the
    cards' notebooks are read beside it, and the registry written by `write_catalog` beside them unless `registry`
    is given), `results_dir` the results folder (ATLAS_RESULTS_DIR). The notebooks' rendering cache goes beside the
    site, so test builds leave the repository's cache alone."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", MPLBACKEND="Agg",
               ATLAS_NOTEBOOK_CACHE=str(site_dir.parent / f"{site_dir.name}-notebook-cache"))
    if registry is None and papers_dir is not None and (papers_dir.parent.parent / "registry.yaml").exists():
        registry = papers_dir.parent.parent / "registry.yaml"
    for name, value in (("ATLAS_PAPERS_DIR", papers_dir), ("ATLAS_RESULTS_DIR", results_dir),
                        ("MMU_ATLAS_REGISTRY", registry)):
        env.pop(name, None)
        if value is not None:
            env[name] = str(value)
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site_dir)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def build_site(site_dir: Path, papers_dir: Path | None = None, results_dir: Path | None = None,
               registry: Path | None = None) -> Path:
    """A strict build that must succeed without a warning."""
    result = run_build(site_dir, papers_dir, results_dir, registry)
    assert result.returncode == 0, f"mkdocs build failed:\n{result.stdout}\n{result.stderr}"
    warnings = [line for line in result.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert not warnings, "\n".join(warnings)
    return site_dir


# --- a site with a robustness matrix ----------------------------------------------------------------------------------

# Two attack cards on MiniCanvas beside the hostile catalog's cards: attack_one declares a bar per target and a known
# miss; attack_two declares no bar. Their cells: attack_one against base and plain_card, attack_two against base only
# (canvas_todo is never attacked: missing cells).
ATTACK_KNOWN_MISS = "Misses against base on the tiny judge: <b>tried</b> more steps & a larger batch."
ATTACK_PROMPTS = ["a digit thre in plain style", "<script>alert(7)</script> trois", "``` fence `code` | pipe"]


def attack_entry(bar: dict | None) -> dict:
    from registry_helpers import card_entry

    entry = card_entry("minicanvas", ["plain2024attack"], title="Attack card: a test attack",
                       entry="methods.attacks.t2i.concept_inversion:attack",
                       config="methods.attacks.t2i.concept_inversion:ConceptInversionConfig")
    entry["kind"] = "attack"
    entry.pop("edits")
    entry["testbeds"]["minicanvas"]["bar"] = bar
    return entry


ATTACK_BAR = {"all": [{"target": "base", "metric": "ASR", "op": ">=", "value": 0.8},
                      {"target": "plain_card", "metric": "ASR", "op": ">=", "reference": "pre_attack", "offset": 0.3},
                      {"target": "canvas_todo", "metric": "ASR", "op": ">=", "value": 0.5}],
              "known_miss": ATTACK_KNOWN_MISS}


def attack_record(attack: str, target: str, post, pre, *, prompts=None, date="2026-01-02T03:04:05+00:00",
                  commit=COMMIT) -> dict:
    """A robustness-matrix cell as `python -m methods matrix` writes it (kind attack; target in details)."""
    return results_record(attack, "minicanvas", {"ASR": stat(*post), "queries": stat(4800.0, 0.0)},
                          {"pre_attack": {"ASR": stat(*pre)}}, kind="attack", date=date, commit=commit,
                          method_s=stat(9.5), figure=None,
                          details={"target": target, "prompts": prompts, "per_seed": {}, "attack": {}})


MATRIX_CELLS = {
    ("attack_one", "base"): attack_record("attack_one", "base", (0.9, 0.05), (0.85, 0.02), prompts=ATTACK_PROMPTS),
    ("attack_one", "plain_card"): attack_record("attack_one", "plain_card", (0.7, 0.1), (0.15, 0.05),
                                                prompts=ATTACK_PROMPTS[:1], date="2026-01-05T00:00:00+00:00",
                                                commit="fedcba9876543210fedcba9876543210fedcba98"),
    ("attack_two", "base"): attack_record("attack_two", "base", (0.4, 0.0), (0.85, 0.02)),
}


def write_matrix(folder: Path, cells: dict[tuple[str, str], dict | str]) -> Path:
    """folder/minicanvas/matrix/<attack>/<target>.json for each (attack, target)."""
    for (attack, target), content in cells.items():
        path = folder / "minicanvas" / "matrix" / attack / f"{target}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content, indent=1), encoding="utf-8")
    return folder


def write_robust_catalog(folder: Path) -> tuple[Path, Path]:
    """The hostile catalog plus the two attack cards (registry entries and notebooks); returns (papers, results)."""
    from registry_helpers import write_registry as write

    papers_dir = write_catalog(folder, HOSTILE_PAPERS)
    registry = yaml.safe_load((folder / "registry.yaml").read_text(encoding="utf-8"))
    registry["cards"]["attack_one"] = attack_entry(ATTACK_BAR)
    registry["cards"]["attack_two"] = attack_entry(None)
    write(folder / "registry.yaml", registry["cards"])
    for name in ("attack_one", "attack_two"):
        write_notebook(folder / "notebooks" / f"{name}.ipynb", name, "minicanvas")
    results_dir = write_results(folder / "results", {("minicanvas", "plain_card"): MINICANVAS_RESULTS})
    write_matrix(results_dir, MATRIX_CELLS)
    return papers_dir, results_dir
