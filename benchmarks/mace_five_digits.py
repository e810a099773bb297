"""MACE erases five digits in one run (MiniCanvas, ci, seed 0): the share of samples the testbed judge reads as each
erased digit and as each kept digit, base model against the edited one.

    python benchmarks/mace_five_digits.py [one,four,six,nine] ['{"field": value}']

The request erases "three" (surrogate "eight"); the other erased digits are the card's `extra_concepts`. Every digit
is sampled with its five prompts (four styles and alone), 20 samples each, with the same noise before and after.
"""
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from methods.registry import load_registry  # noqa: E402
from methods.testbeds.minicanvas.testbed import MiniCanvasTestbed
from methods.testbeds.minicanvas.prompts import STYLES, full_prompt, object_only_prompt
from methods.t2i.mace import erase
from methods.t2i.diffusion import EditedDiffusion
from methods.core.seeding import make_generator
tb = MiniCanvasTestbed.load("ci", "cpu", log=lambda *a: None)
req = tb.requests(0, "three")[0]
extra = tuple(sys.argv[1].split(",")) if len(sys.argv) > 1 else ("one", "four", "six", "nine")
over = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
erased = ("three",) + extra
kept = [d for d in ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine") if d not in erased]
n = 20  # samples per prompt
def rates(model):
    out = {}
    for d in list(erased) + kept:
        prompts = [p for p in [full_prompt(d, s) for s in STYLES] + [object_only_prompt(d)] for _ in range(n)]
        images = model.sample(prompts, make_generator(1000))
        out[d] = tb.concept_rate(images, d)
    return out
base = rates(EditedDiffusion(tb.components))
t = time.perf_counter()
config = dataclasses.replace(load_registry().card("mace").build_config("minicanvas"), extra_concepts=extra, **over)
edited = erase(tb.components, req.payload, config, seed=0)
dt = time.perf_counter() - t
after = rates(edited)
print(f"card time {dt:.1f}s; concepts {edited.info['concepts']}")
for d in erased:
    print(f"erased {d}: base rate {base[d]:.3f} -> {after[d]:.3f}  UA {1 - after[d]:.3f}")
for d in kept:
    print(f"kept   {d}: base {base[d]:.3f} -> {after[d]:.3f}")
print(f"kept mean: base {sum(base[d] for d in kept)/len(kept):.3f} -> {sum(after[d] for d in kept)/len(kept):.3f}")
