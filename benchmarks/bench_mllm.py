"""Time and peak memory of the MLLM unlearning methods on MiniProfiles, and of the five notebooks together.

Each method runs `run_miniprofiles(method, seed, scale)` in a fresh subprocess, so its peak RSS is its own.
With `--cold` the runs use an empty temporary cache, so the first one includes fine-tuning the vanilla model and
the oracles (trained once per machine otherwise). `--notebooks` also executes the five notebooks with papermill
(into a temporary directory, the committed notebooks are not touched).

Run: `python benchmarks/bench_mllm.py [--scale ci] [--seed 0] [--notebooks] [--cold] [--json out.json]`
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("ga", "graddiff", "kl", "npo", "mmunlearner")

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
start = time.perf_counter()
from methods.mllm import run_miniprofiles
metrics = run_miniprofiles({method!r}, seed={seed}, scale={scale!r}, out_dir={out!r}, device="cpu", log=lambda _: None)
print(json.dumps({{
    "wall_s": time.perf_counter() - start,
    "pipeline_s": metrics["wall_time_s"],
    "unlearn_s_per_split": metrics["unlearn_time_s"]["mean"],
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "forget_acc": metrics["forget_acc"], "retain_acc": metrics["retain_acc"],
    "real_world_acc": metrics["real_world_acc"], "utility_acc": metrics["utility_acc"],
}}))
"""


def bench_method(method: str, seed: int, scale: str, env: dict) -> dict:
    with tempfile.TemporaryDirectory() as out:
        code = CHILD.format(root=str(ROOT), method=method, seed=seed, scale=scale, out=out)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_notebooks(env: dict) -> dict:
    sys.path.insert(0, str(ROOT / "notebooks" / "mllm"))
    import papermill
    from _build import build  # noqa: E402  (the notebook builder)

    import nbformat

    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in METHODS:
            source = Path(tmp) / f"{method}.ipynb"
            nbformat.write(build(method), source)
            start = time.perf_counter()
            old_env = dict(os.environ)
            os.environ.update(env)
            try:
                papermill.execute_notebook(str(source), str(source), parameters={"scale": "ci",
                                           "out_dir": str(Path(tmp) / method)}, cwd=str(ROOT / "notebooks"),
                                           kernel_name="python3", progress_bar=False)  # fmt: skip
            finally:
                os.environ.clear()
                os.environ.update(old_env)
            times[method] = time.perf_counter() - start
            print(f"  notebook {method}: {times[method]:.1f} s", flush=True)
    times["total"] = sum(times.values())
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="ci", choices=("ci", "full"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--cold", action="store_true", help="use an empty cache (includes fine-tuning)")
    parser.add_argument("--notebooks", action="store_true", help="also execute the five notebooks (ci)")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    args = parser.parse_args()

    env = dict(os.environ)
    cold_cache = tempfile.TemporaryDirectory() if args.cold else None
    if cold_cache is not None:
        env["MMU_ATLAS_CACHE"] = cold_cache.name
    results = {"scale": args.scale, "seed": args.seed, "cold_cache": args.cold, "cpu_count": os.cpu_count(),
               "load_average_before": os.getloadavg(), "methods": {}}  # fmt: skip
    print(f"MiniProfiles {args.scale}, seed {args.seed}, {'cold' if args.cold else 'warm'} cache")
    print("| method | wall s | pipeline s | unlearn s / split | peak RSS MB | forget | retain | real world | utility |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method in args.methods:
        r = bench_method(method, args.seed, args.scale, env)
        results["methods"][method] = r
        print(f"| {method} | {r['wall_s']:.1f} | {r['pipeline_s']:.1f} | {r['unlearn_s_per_split']:.2f} | "
              f"{r['peak_rss_mb']:.0f} | {r['forget_acc']:.3f} | {r['retain_acc']:.3f} | {r['real_world_acc']:.3f} | "
              f"{r['utility_acc']:.3f} |", flush=True)  # fmt: skip
    if args.notebooks:
        print("notebooks (papermill, ci):")
        results["notebooks_s"] = bench_notebooks(env)
        print(f"  five notebooks together: {results['notebooks_s']['total']:.1f} s")
    results["load_average_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if cold_cache is not None:
        cold_cache.cleanup()


if __name__ == "__main__":
    main()
