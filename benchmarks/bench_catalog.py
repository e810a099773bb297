"""Time `validate` and `export --format json` on 1,000 and 10,000 synthetic valid entries.

Target: 10,000 entries validated in under 5 s on one core. Run: `python benchmarks/bench_catalog.py`
(it pins itself to one core where the OS allows).
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from site_tools.catalog import load_schema  # noqa: E402
from site_tools.entries import render_yaml  # noqa: E402
from site_tools.export import to_json  # noqa: E402
from site_tools.validate import validate_paths  # noqa: E402

WORDS = "erasing concepts diffusion unlearning robust safe multimodal models vision language adversarial prompts".split()


def synthetic_entry(index: int, rng: random.Random) -> dict:
    props = load_schema()["properties"]
    vocab = {name: props[name]["items"]["enum"] for name in ("stage", "modality", "model_family", "target")}
    title = " ".join(rng.choice(WORDS).capitalize() for _ in range(6)) + f" Number {index}"
    return {
        "id": f"author{index}2024paper",
        "title": title,
        "authors": [f"Author {index}", "Second Author"],
        "year": rng.randint(2019, 2026),
        "month": rng.randint(1, 12),
        "venue": rng.choice(["arXiv", "CVPR 2024", "ICLR 2025", "NeurIPS 2024"]),
        "links": {"arxiv": f"24{index // 100000 % 10:01d}{rng.randint(1, 9)}.{index % 100000:05d}",
                  "code": f"https://github.com/example/repo{index}"},
        "contribution": "method",
        "stage": rng.sample(vocab["stage"], 2),
        "modality": rng.sample(vocab["modality"], 1),
        "model_family": rng.sample(vocab["model_family"], 1),
        "target": rng.sample(vocab["target"], 2),
        "summary": "A synthetic entry for the benchmark: it erases a concept by fine-tuning cross-attention weights.",
        "sources": ["contributed"],
    }


def run(count: int) -> None:
    rng = random.Random(count)
    with tempfile.TemporaryDirectory() as folder:
        papers = Path(folder) / "papers"
        papers.mkdir()
        for index in range(count):
            entry = synthetic_entry(index, rng)
            (papers / f"{entry['id']}.yaml").write_text(render_yaml(entry), encoding="utf-8")
        start = time.perf_counter()
        validated, problems = validate_paths(None, papers_dir=papers)
        validate_s = time.perf_counter() - start
        assert validated == count and not problems, problems[:3]
        start = time.perf_counter()
        from site_tools.catalog import load_catalog

        text = to_json(load_catalog(papers))
        export_s = time.perf_counter() - start
        print(f"{count:>6} entries: validate {validate_s:6.2f} s ({validate_s / count * 1e3:.2f} ms/entry), "
              f"export json {export_s:6.2f} s ({len(text) / 1e6:.1f} MB)")


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the target says
    for n in (1_000, 10_000):
        run(n)
