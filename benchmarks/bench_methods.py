"""Wall time and peak memory of each method on MiniCanvas, and of the whole notebook suite.

    python benchmarks/bench_methods.py                 # every method, ci scale (each in a fresh process)
    python benchmarks/bench_methods.py --notebooks     # also execute the 4 notebooks with papermill
    python benchmarks/bench_methods.py --methods uce esd --forget inverted

Each method runs through the CLI in its own process, so the peak RSS (resource.getrusage ru_maxrss) is that run's
own. Targets (2 CPU cores): UCE edit < 1 s, ESD < 60 s, notebook suite < 20 min. The testbed is trained on first
use (minutes) and cached; run once before timing, or read the `setup` column.
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
METHODS = ("esd", "uce", "ca", "sld")
TARGETS_S = {"uce": 1.0, "esd": 60.0}
NOTEBOOK_SUITE_TARGET_S = 20 * 60


def bench_method(method: str, forget: str, scale: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        completed = subprocess.run(
            [sys.executable, "-m", "methods", "run", method, "--forget", forget, "--scale", scale,
             "--seed", str(seed), "--device", "cpu", "--out", out],
            cwd=ROOT, capture_output=True, text=True,
        )
        process_time = time.perf_counter() - start
        if completed.returncode != 0:
            raise RuntimeError(f"{method} failed:\n{completed.stderr[-2000:]}")
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    return {"process_s": process_time, **metrics}


def bench_notebooks(methods) -> dict:
    import papermill

    times = {}
    with tempfile.TemporaryDirectory() as out:
        for method in methods:
            start = time.perf_counter()
            papermill.execute_notebook(
                str(ROOT / "notebooks" / f"{method}.ipynb"), str(Path(out) / f"{method}.ipynb"),
                parameters={"scale": "ci", "device": "cpu"}, kernel_name="python3", cwd=str(ROOT / "notebooks"),
                progress_bar=False,
            )
            times[method] = time.perf_counter() - start
            print(f"notebook {method:4s} {times[method]:7.1f} s", flush=True)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--forget", default="three")
    parser.add_argument("--scale", default="ci", choices=("ci", "full"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--notebooks", action="store_true", help="also execute the notebooks with papermill")
    args = parser.parse_args()

    # Train / load the cached testbed first so that no method pays for it.
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", f"from methods.testbeds.minicanvas import load_minicanvas; load_minicanvas({args.scale!r})"],
        cwd=ROOT, check=True,
    )
    print(f"setup (load or train the {args.scale} testbed): {time.perf_counter() - start:.1f} s\n")

    header = f"{'method':6s} {'method s':>9s} {'target':>7s} {'eval s':>7s} {'process s':>9s} {'peak RSS MB':>11s} {'+RSS MB':>8s}  UA / IRA / CRA / FD"
    print(header)
    print("-" * len(header))
    failed = False
    for method in args.methods:
        result = bench_method(method, args.forget, args.scale, args.seed)
        m, memory = result["metrics"], result["memory"]
        target = TARGETS_S.get(method)
        ok = target is None or result["method_wall_time_s"] < target
        failed |= not ok
        print(
            f"{method:6s} {result['method_wall_time_s']:9.2f} {('<%g' % target) if target else '-':>7s} "
            f"{m['sampling_time_s']:7.1f} {result['process_s']:9.1f} {memory['peak_rss_mb']:11.0f} "
            f"{memory['method_peak_rss_increase_mb']:8.1f}  "
            f"{m['UA']:.3f} / {m['IRA']:.3f} / {m['CRA']:.3f} / {m['FD']:.1f}{'' if ok else '   (over target)'}",
            flush=True,
        )
    print("\nmemory: resource.getrusage ru_maxrss of the run's process (peak) and its increase during the method")

    if args.notebooks:
        times = bench_notebooks(args.methods)
        total = sum(times.values())
        print(f"notebook suite: {total:.1f} s (target < {NOTEBOOK_SUITE_TARGET_S} s)")
        failed |= total >= NOTEBOOK_SUITE_TARGET_S
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
