"""Execute every card's notebook in place with papermill at ci scale, JOBS at a time (default 2: one per core).

    python notebooks/_run.py [CARD ...] [--jobs N] [--scale ci]

Cards of different testbeds are interleaved, so that on a cold cache two testbeds train at the same time instead of
one card waiting for the other's testbed (the cache's lock makes a second process wait for a testbed being
trained). Attack cards' notebooks run after every unlearn card's (same parallelism): they attack the edited weights
the unlearn cards' runs cached. Paths passed to papermill are relative, so no absolute path of the machine lands in a notebook. Each
notebook keeps its new outputs and rewrites results/<testbed>/<card>/; the times are printed at the end.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from methods.registry import load_registry  # noqa: E402


def interleaved(cards: list) -> list:
    """One card of each testbed in turn (registry order within a testbed)."""
    by_testbed = {}
    for card in cards:
        by_testbed.setdefault(next(iter(card.testbeds)), []).append(card)
    return [card for group in itertools.zip_longest(*by_testbed.values()) for card in group if card is not None]


def phases(cards: list) -> list:
    """The cards in the order their notebooks run: every unlearn card, then every attack card (non-empty groups)."""
    groups = [[card for card in cards if card.kind != "attack"], [card for card in cards if card.kind == "attack"]]
    return [group for group in groups if group]


def execute(name: str, scale: str) -> tuple:
    notebook = f"notebooks/{name}.ipynb"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "papermill", notebook, notebook, "-p", "scale", scale,
                           "--cwd", "notebooks", "--kernel", "python3", "--no-progress-bar"],
                          cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    status = "ok" if done.returncode == 0 else "FAILED"
    print(f"== {name}: {status} in {seconds:.0f} s", flush=True)
    if done.returncode != 0:
        print(done.stdout[-3000:] + done.stderr[-6000:], file=sys.stderr, flush=True)
    return name, done.returncode, seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cards", nargs="*")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--scale", default="ci")
    args = parser.parse_args(argv)
    registry = load_registry()
    unknown = [name for name in args.cards if name not in registry.cards]
    if unknown:
        parser.error(f"unknown card(s) {', '.join(unknown)}; choose from {', '.join(registry.cards)}")
    cards = [registry.cards[name] for name in args.cards] if args.cards else list(registry.cards.values())
    start = time.perf_counter()
    outcomes = []
    for phase in phases(cards):  # unlearn cards first, then attack cards (they reuse the unlearn cards' weights)
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            outcomes += list(pool.map(lambda card: execute(card.name, args.scale), interleaved(phase)))
    failed = [name for name, code, _ in outcomes if code != 0]
    print(f"{len(outcomes)} notebooks in {time.perf_counter() - start:.0f} s wall ({args.jobs} at a time); "
          f"sum {sum(s for *_, s in outcomes):.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
