"""MACE erases five digits in one run (MiniCanvas, ci, seed 0): the share of samples the testbed judge reads as each
erased digit and as each kept digit, base model against the edited one.

    python benchmarks/mace_five_digits.py [one,four,six,nine] ['{"field": value}']

The request erases "three" (surrogate "eight"); the other erased digits are the card's `extra_concepts`. Every digit
is sampled with its five prompts (four styles and alone), 20 samples each, with the same noise before and after.
The slow test `tests/test_bars_slow.py::test_mace_erases_five_digits_at_once` checks the issue's bar on it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SAMPLES_PER_PROMPT = 20


def measure(extra=("one", "four", "six", "nine"), overrides=None) -> dict:
    """{"erased": {digit: (base rate, rate after)}, "kept": {...}, "card_s": seconds} for one MACE run."""
    from methods.core.seeding import make_generator
    from methods.registry import load_registry
    from methods.t2i.diffusion import EditedDiffusion
    from methods.t2i.mace import erase
    from methods.testbeds.minicanvas.prompts import DIGITS, STYLES, full_prompt, object_only_prompt
    from methods.testbeds.minicanvas.testbed import MiniCanvasTestbed

    testbed = MiniCanvasTestbed.load("ci", "cpu", log=lambda *_: None)
    request = testbed.requests(0, "three")[0]
    erased = ("three", *extra)
    kept = [digit for digit in DIGITS if digit not in erased]

    def rates(model) -> dict:
        out = {}
        for digit in list(erased) + kept:
            prompts = [full_prompt(digit, style) for style in STYLES] + [object_only_prompt(digit)]
            images = model.sample([p for p in prompts for _ in range(SAMPLES_PER_PROMPT)], make_generator(1000))
            out[digit] = testbed.concept_rate(images, digit)
        return out

    base = rates(EditedDiffusion(testbed.components))
    config = dataclasses.replace(load_registry().card("mace").build_config("minicanvas"), extra_concepts=tuple(extra),
                                 **(overrides or {}))
    start = time.perf_counter()
    edited = erase(testbed.components, request.payload, config, seed=0)
    card_s = time.perf_counter() - start
    after = rates(edited)
    return {"erased": {d: (base[d], after[d]) for d in erased}, "kept": {d: (base[d], after[d]) for d in kept},
            "card_s": card_s}


def main(argv: list) -> None:
    extra = tuple(argv[0].split(",")) if argv else ("one", "four", "six", "nine")
    result = measure(extra, json.loads(argv[1]) if len(argv) > 1 else None)
    print(f"card time {result['card_s']:.1f} s")
    for digit, (base, after) in result["erased"].items():
        print(f"erased {digit}: base rate {base:.3f} -> {after:.3f}  UA {1 - after:.3f}")
    for digit, (base, after) in result["kept"].items():
        print(f"kept   {digit}: base {base:.3f} -> {after:.3f}")
    kept = result["kept"].values()
    print(f"kept mean: base {sum(b for b, _ in kept) / len(kept):.3f} -> {sum(a for _, a in kept) / len(kept):.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
