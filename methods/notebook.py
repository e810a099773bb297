"""What the card notebooks call: the run (its parameters checked like the command line's) and the testbed's details.

A bad parameter (`-p seed abc`, `-p seed -1`, an unknown concept) stops the notebook at its run cell with one line
naming the parameter and the fix, before anything is loaded or trained; nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .core.provenance import REPO_ROOT
from .registry import load_registry
from .run import default_out, execute, plan_run
from .testbeds import UsageError, testbed_class


class ParameterError(UsageError):
    """A notebook parameter that the run cannot use; shown as one line (no traceback) by IPython."""

    def _render_traceback_(self):  # IPython shows this instead of a traceback
        return [f"error: {self}"]


def card_run(card: str, *, testbed: str, scale: str = "ci", device: str = "auto", model: Optional[str] = None,
             seed=0, out_dir: Optional[str] = None, forget: Optional[str] = None, anchor: Optional[str] = None):
    """Run a card as `python -m methods run` does; returns (results record, output folder)."""
    try:
        if out_dir is None:
            out = default_out(card, testbed) if model is None else REPO_ROOT / "results" / f"{testbed}-models" / card
        else:
            out = REPO_ROOT / out_dir if not Path(out_dir).is_absolute() else Path(out_dir)
        plan = plan_run(card, testbed, seed=seed, scale=scale, device=device, model=model, forget=forget,
                        anchor=anchor, out=out)
    except UsageError as error:
        raise ParameterError(str(error)) from None
    print(plan.config)
    return execute(plan, out, print, {}), out


def details_markdown(record: dict) -> str:
    """The testbed's own detail of a record (per-split tables, per-concept accuracy...)."""
    spec = load_registry().testbed(record["testbed"])
    return testbed_class(spec).details_markdown(record)


def attack_run(card: str, *, testbed: str, scale: str = "ci", device: str = "auto", seed=0,
               targets: Optional[list] = None, out_dir: Optional[str] = None):
    """Run an attack card against every target of its testbed, as `python -m methods matrix --attack CARD` does:
    its column of the robustness matrix (the unedited base model first, then each unlearn card, loaded from the
    edited-weights cache or run once). `targets=None` means every unlearn card of the testbed. Returns (the cell
    records, base first, and the matrix folder they were written to: results/<testbed>/matrix/ by default)."""
    from .core.results import read_results
    from .matrix import plan_matrix, run_matrix

    try:
        if isinstance(targets, str):
            targets = [targets]
        out = None if out_dir is None else (REPO_ROOT / out_dir if not Path(out_dir).is_absolute() else Path(out_dir))
        plan = plan_matrix(testbed, seed=seed, scale=scale, device=device, out=out, attacks=[card], targets=targets)
    except UsageError as error:
        raise ParameterError(str(error)) from None
    if [attack.card.name for attack in plan.attacks] != [card]:
        raise ParameterError(f"{card} is not an attack card on {testbed}")
    print(plan.attacks[0].config)
    paths = list(dict.fromkeys(run_matrix(plan, print)))  # one file per target (the last request's, if several)
    return [read_results(path) for path in paths], plan.out
