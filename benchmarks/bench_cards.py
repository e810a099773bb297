"""Wall time and peak memory of every card at ci scale, and the suite's total.

    python benchmarks/bench_cards.py                    # every registered card, each in a fresh process
    python benchmarks/bench_cards.py esd npo --seed 1   # some cards
    python benchmarks/bench_cards.py --notebooks        # also the notebook suite as `make notebooks` runs it (2 jobs)

Each card runs through the CLI in its own process (`python -m methods run <card> --out <tmp>`), so the peak RSS
(ru_maxrss, from the results file) is that run's own. Columns: the card's own time (mean per forget request), the
whole process (testbed loading and evaluation included), peak RSS. Targets (2 CPU cores, the card-platform issue):
each card <= 60 s at ci scale once its testbed is cached (the process column), the notebook suite designed for <= 60
minutes of CI at 45 cards. Testbeds train on first use (minutes) and are cached: run once before timing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from methods.registry import load_registry  # noqa: E402

CARD_TARGET_S = 60.0


def bench_card(name: str, testbed: str, scale: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "methods", "run", name, "--testbed", testbed, "--scale", scale,
                               "--seed", str(seed), "--device", "cpu", "--out", out],
                              cwd=ROOT, capture_output=True, text=True)
        process_s = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        record = json.loads((Path(out) / "metrics.json").read_text())
    return {"card": name, "testbed": testbed, "process_s": process_s,
            "card_s": record["timings"]["method_s"]["mean"], "peak_rss_mb": record["memory"]["peak_rss_mb"],
            "bar": record["bar"]["met"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cards", nargs="*")
    parser.add_argument("--scale", default="ci")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--notebooks", action="store_true")
    args = parser.parse_args(argv)
    registry = load_registry()
    names = args.cards or [card.name for card in registry.cards.values() if card.kind == "unlearn"]
    rows = [bench_card(name, next(iter(registry.card(name).testbeds)), args.scale, args.seed) for name in names]
    print(f"{'card':14s} {'testbed':13s} {'card s':>8s} {'process s':>10s} {'peak RSS MB':>12s}  bar  <= {CARD_TARGET_S:.0f} s")
    for row in rows:
        within = "yes" if row["process_s"] <= CARD_TARGET_S else "NO"
        print(f"{row['card']:14s} {row['testbed']:13s} {row['card_s']:8.2f} {row['process_s']:10.1f} "
              f"{row['peak_rss_mb']:12.0f}  {str(row['bar']):5s} {within}")
    total = sum(row["process_s"] for row in rows)
    print(f"suite: {len(rows)} cards, {total:.0f} s sequential ({total / 2:.0f} s on 2 cores); "
          f"max peak RSS {max(row['peak_rss_mb'] for row in rows):.0f} MB")
    if args.notebooks:
        start = time.perf_counter()
        subprocess.run([sys.executable, "notebooks/_run.py", "--jobs", "2", *args.cards], cwd=ROOT, check=True)
        print(f"notebook suite: {time.perf_counter() - start:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
