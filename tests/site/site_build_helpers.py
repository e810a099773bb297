"""Helpers of the site tests: a hostile temporary catalog and strict builds of the site into temp folders.

(A module with its own name rather than conftest, so that test files can import it unambiguously.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

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
        "venue": "<b>CVPR</b> 2024 $x$",
        "links": {"arxiv": "2405.00001", "code": "https://example.org/code?a=1&b=2"},
        "contribution": "benchmark",
        "modality": ["image"],
        "model_family": ["stable-diffusion"],
        "target": ["nsfw"],
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
        "method_card": "plain_card",  # a card whose page is not in the build: the page must not link it
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


def write_catalog(folder: Path, papers: list[dict]) -> Path:
    """folder/catalog/papers/<id>.yaml, plus folder/notebooks/<card>.ipynb where validation expects a card's notebook."""
    papers_dir = folder / "catalog" / "papers"
    papers_dir.mkdir(parents=True)
    for paper in papers:
        (papers_dir / f"{paper['id']}.yaml").write_text(yaml.safe_dump(paper, allow_unicode=True, sort_keys=False),
                                                       encoding="utf-8")
        if paper.get("method_card"):
            (folder / "notebooks").mkdir(exist_ok=True)
            (folder / "notebooks" / f"{paper['method_card']}.ipynb").write_text("{}", encoding="utf-8")
    return papers_dir


def build_site(site_dir: Path, papers_dir: Path | None = None) -> Path:
    """A strict build as `make build` runs it; `papers_dir` replaces the catalog through ATLAS_PAPERS_DIR."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", MPLBACKEND="Agg")
    env.pop("ATLAS_PAPERS_DIR", None)
    if papers_dir is not None:
        env["ATLAS_PAPERS_DIR"] = str(papers_dir)
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site_dir)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"mkdocs build failed:\n{result.stdout}\n{result.stderr}"
    warnings = [line for line in result.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert not warnings, "\n".join(warnings)
    return site_dir
