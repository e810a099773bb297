"""Time `mkdocs build --strict` of the site for the real catalog and for 1,000 and 5,000 synthetic entries, and
report the size of the explorer's JSON and of the search index.

Targets: 1,000 papers build in under 60 s on 2 cores; the explorer JSON stays under 1 MB for 1,000 papers.
Run: `python benchmarks/bench_site.py [COUNT ...]` (default: the real catalog, 1000 and 5000). The synthetic catalogs
reuse bench_catalog.synthetic_entry and reach the build through ATLAS_PAPERS_DIR, which the site's hook reads.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_catalog import synthetic_entry  # noqa: E402

from site_tools.catalog import PAPERS_DIR  # noqa: E402
from site_tools.entries import render_yaml  # noqa: E402
from site_tools.site.pages import EXPLORER_DATA  # noqa: E402

SEARCH_INDEX = "search/search_index.json"
TARGET_BUILD_S = 60.0  # for 1,000 papers
TARGET_EXPLORER_BYTES = 1_000_000  # for 1,000 papers


def write_synthetic_catalog(folder: Path, count: int) -> Path:
    papers = folder / "papers"
    papers.mkdir(parents=True)
    rng = random.Random(count)
    for index in range(count):
        entry = synthetic_entry(index, rng)
        (papers / f"{entry['id']}.yaml").write_text(render_yaml(entry), encoding="utf-8")
    return papers


def build(papers_dir: Path, site_dir: Path) -> float:
    """Seconds for a strict build of the site from `papers_dir`, as `make build` runs it (a fresh process)."""
    env = dict(os.environ, ATLAS_PAPERS_DIR=str(papers_dir), NO_MKDOCS_2_WARNING="1", MPLBACKEND="Agg")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site_dir)],
                            cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"build failed for {papers_dir}:\n{result.stdout}\n{result.stderr}")
    return seconds


def measure(label: str, papers_dir: Path, count: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        site = Path(folder) / "site"
        seconds = build(papers_dir, site)
        pages = sum(1 for _ in (site / "papers").glob("*/index.html"))
        assert pages == count, f"{pages} paper pages for {count} papers"
        return {"label": label, "papers": count, "build_s": seconds,
                "explorer_bytes": (site / EXPLORER_DATA).stat().st_size,
                "search_bytes": (site / SEARCH_INDEX).stat().st_size}


def main(counts: list[int]) -> int:
    rows = [measure("real catalog", PAPERS_DIR, len(list(PAPERS_DIR.glob("*.yaml"))))]
    print(_format(rows[-1]), flush=True)
    for count in counts:
        with tempfile.TemporaryDirectory() as folder:
            papers = write_synthetic_catalog(Path(folder), count)
            rows.append(measure(f"synthetic {count}", papers, count))
        print(_format(rows[-1]), flush=True)
    failed = []
    for row in rows:
        if row["papers"] == 1000 and row["build_s"] >= TARGET_BUILD_S:
            failed.append(f"1,000 papers took {row['build_s']:.1f} s (target < {TARGET_BUILD_S:.0f} s)")
        if row["papers"] == 1000 and row["explorer_bytes"] >= TARGET_EXPLORER_BYTES:
            failed.append(f"explorer JSON is {row['explorer_bytes']:,} bytes for 1,000 papers (target < 1 MB)")
    print("\n".join(failed) if failed else "targets met (1,000 papers: build < 60 s, explorer JSON < 1 MB)")
    return 1 if failed else 0


def _format(row: dict) -> str:
    return (f"{row['label']:>16}: {row['papers']:>5} papers  build {row['build_s']:6.1f} s "
            f"({row['build_s'] / row['papers'] * 1e3:5.1f} ms/paper)  explorer JSON {row['explorer_bytes'] / 1e3:7.1f} kB  "
            f"search index {row['search_bytes'] / 1e6:6.2f} MB")


if __name__ == "__main__":
    print(f"cores available: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}")
    sys.exit(main([int(a) for a in sys.argv[1:]] or [1_000, 5_000]))
