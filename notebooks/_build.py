"""Generate every card's notebook from the registry: `python notebooks/_build.py [CARD ...]`; edit this script, the
registry or the card's module docstring, never the .ipynb files.

An executed notebook keeps its outputs when only its text changes: if the builder's code cells equal the notebook's,
the markdown cells are updated in place (text has no outputs, so nothing needs re-executing) or the file is left
alone; only a notebook whose code changed is rewritten without outputs, to be executed again (`notebooks/_run.py`).

`python notebooks/_build.py --check` fails (exit 1, naming the notebook and the first differing cell) when a
committed notebook differs from what this script makes, outputs and execution metadata aside; `.ci/run` runs it.

Each notebook: the card's title and catalog entries, the paper's claim beside the testbed's quality bar, the
algorithm (the card module's own docstring, so nothing is retyped), a papermill `parameters` cell, the run (the
same call as `python -m methods run`), the results beside the testbed's references, the testbed's details and
figure, and the configuration with each adaptation's reason.

An attack card's notebook has the same structure around its column of the robustness matrix: the parameters
(`targets=None`: every unlearn card of the testbed), the run (the same call as `python -m methods matrix --attack
CARD`, writing results/<testbed>/matrix/<card>/<target>.json; the unlearn cards' edited weights come from the cache
their own notebooks filled), the column (pre- and post-attack values, queries, time and the bar per target) and the
adversarial prompts the attack saved.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from methods.registry import CardSpec, load_registry  # noqa: E402

# Cells papermill adds when it runs a notebook (the injected parameters): not part of what the builder makes.
INJECTED = "injected-parameters"


def module_docstring(card: CardSpec) -> str:
    """The card module's docstring, read from its source without importing it (no torch needed)."""
    path = card.module_file()
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    if not docstring:
        raise SystemExit(f"{path}: the card's module needs a docstring (it is the notebook's algorithm cell)")
    return docstring


def introduction(card: CardSpec, testbed) -> str:
    claim = card.claim
    bar = card.testbeds[testbed.name].bar
    labels = {metric.key: metric.label for metric in testbed.metrics_for(card.kind)}
    lines = [f"# {card.title}", "",
             f"Card `{card.name}` ({card.kind}, {card.modality}) · catalog: "
             + ", ".join(f"`{paper}`" for paper in card.catalog) + f" · testbed: {testbed.title}", "",
             "| What the paper reports | What the testbed checks |", "|---|---|",
             f"| {claim.text} ({claim.source}; {claim.status}) | "
             + (f"{bar.text(labels)}" + (f" ({bar.note})" if bar.note else "")
                + (f" **Known miss:** {bar.known_miss}" if bar.known_miss else "") if bar else "no quality bar") + " |",
             "", f"**Fidelity.** Follows `{card.follows}`; deviations and testbed adaptations are listed at the end."]
    return "\n".join(lines)


def algorithm(card: CardSpec) -> str:
    path = card.module_file()
    source = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    return f"## The algorithm\n\nThe docstring of `{source}`, the card's code:\n\n```text\n{module_docstring(card)}\n```"


def parameters(card: CardSpec, testbed) -> str:
    lines = ["# Parameters (papermill overrides these; they are checked like the command line's)",
             f'testbed = "{testbed.name}"  # one of: {", ".join(card.testbeds)}',
             f'scale = "ci"  # {" or ".join(testbed.scales)}',
             'device = "auto"  # "auto", "cpu" or "cuda"',
             "model = None  # None: the testbed's own model; or a real checkpoint (path or hub id)",
             "seed = 0"]
    if testbed.requests == "concept":
        lines += ["forget = None  # the concept to erase (None: the testbed's default)",
                  "anchor = None  # the concept it is mapped to, for cards that need one (None: the testbed's)"]
    lines += ["out_dir = None  # None: results/<testbed>/<card> (a real model: results/<testbed>-models/<card>)"]
    return "\n".join(lines)


# The setup cell of every notebook: `{imports}` are the notebook's own (an unlearn card's or an attack card's).
SETUP_TEMPLATE = """import sys
import time
import warnings
from pathlib import Path

# make `methods` importable when papermill runs the notebook from notebooks/ or from the repository root
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "methods" / "registry.yaml").exists())
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets

import transformers
{imports}

transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bars in the outputs
CARD = "{card}\""""

SETUP = SETUP_TEMPLATE.replace("{imports}", """from IPython.display import Image, Markdown, display

from methods.notebook import card_run, details_markdown
from methods.report import adaptations_markdown, summary_markdown""")

RUN = """notebook_start = time.perf_counter()
# The testbed trains once per machine and is cached (safetensors); then the card runs on each forget request.
record, out = card_run(CARD, testbed=testbed, scale=scale, device=device, model=model, seed=seed, out_dir=out_dir{extra})"""

RESULTS = """display(Markdown(summary_markdown(record)))"""
DETAILS = """display(Markdown(details_markdown(record)))"""
FIGURE = """if record["figure"]:
    display(Image(filename=str(out / record["figure"])))
print(f"notebook run time: {time.perf_counter() - notebook_start:.1f} s")"""
CONFIG = """display(Markdown(adaptations_markdown(record)))
print(record["config"])"""


def attack_parameters(card: CardSpec, testbed) -> str:
    return "\n".join([
        "# Parameters (papermill overrides these; they are checked like the command line's)",
        f'testbed = "{testbed.name}"  # one of: {", ".join(card.testbeds)}',
        f'scale = "ci"  # {" or ".join(testbed.scales)}',
        'device = "auto"  # "auto", "cpu" or "cuda"',
        "seed = 0",
        "targets = None  # None: every unlearn card of the testbed; or a list of card names (the base model always runs)",
        "out_dir = None  # None: results/<testbed>/matrix (one file per target: <card>/<target>.json)"])


ATTACK_SETUP = SETUP_TEMPLATE.replace("{imports}", """from IPython.display import Markdown, display

from methods.notebook import attack_run
from methods.report import adaptations_markdown, column_markdown, prompts_markdown""")

ATTACK_RUN = """notebook_start = time.perf_counter()
# The base model first, then each unlearn card's edited model (from the edited-weights cache; run once if missing).
records, out = attack_run(CARD, testbed=testbed, scale=scale, device=device, seed=seed, targets=targets, out_dir=out_dir)"""
COLUMN = """display(Markdown(column_markdown(records)))"""
PROMPTS = """display(Markdown(prompts_markdown(records)))
print(f"notebook run time: {time.perf_counter() - notebook_start:.1f} s")"""
ATTACK_CONFIG = """display(Markdown(adaptations_markdown(records[0])))
print(records[0]["config"])"""


def build_attack(card: CardSpec, registry) -> nbformat.NotebookNode:
    testbed = registry.testbeds[next(iter(card.testbeds))]
    params = new_code_cell(attack_parameters(card, testbed))
    params.metadata["tags"] = ["parameters"]
    cells = [
        new_markdown_cell(introduction(card, testbed)),
        new_markdown_cell(algorithm(card)),
        params,
        new_code_cell(ATTACK_SETUP.replace("{card}", card.name)),
        new_markdown_cell(f"## Run\nThe same call as `python -m methods matrix --testbed {testbed.name} --attack "
                          f"{card.name}`: it checks the parameters, attacks the unedited base model and each unlearn "
                          f"card, and writes one results file per target to `results/{testbed.name}/matrix/"
                          f"{card.name}/<target>.json` (results schema v1, kind attack): this card's column of the "
                          "robustness matrix."),
        new_code_cell(ATTACK_RUN),
        new_markdown_cell("## The column\nPer target: the value before the attack (on the concept's own prompts), "
                          "after it, the queries it made and its time, with the card's bar where it declares one on "
                          "that target (mean ± std over the testbed's sampling seeds)."),
        new_code_cell(COLUMN),
        new_markdown_cell("## Adversarial prompts\nWhat the attack found against each target, to copy and reuse."),
        new_code_cell(PROMPTS),
        new_markdown_cell(fidelity(card)),
        new_code_cell(ATTACK_CONFIG),
    ]
    return notebook_of(cells)


def notebook_of(cells: list) -> nbformat.NotebookNode:
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    return notebook


def fidelity(card: CardSpec) -> str:
    lines = ["## Fidelity and configuration", "", f"Follows `{card.follows}`."]
    if card.deviations:
        lines += ["", "Deviations from the official code:", ""]
        lines += [f"- {what} *Why:* {why}" for what, why in card.deviations]
    lines += ["", "The config's defaults are the official values; the testbed's adaptations (a real checkpoint runs "
                  "with the defaults), with the measurement behind each:"]
    return "\n".join(lines)


def build(card: CardSpec, registry) -> nbformat.NotebookNode:
    if card.kind == "attack":
        return build_attack(card, registry)
    testbed = registry.testbeds[next(iter(card.testbeds))]
    params = new_code_cell(parameters(card, testbed))
    params.metadata["tags"] = ["parameters"]
    extra = ", forget=forget, anchor=anchor" if testbed.requests == "concept" else ""
    cells = [
        new_markdown_cell(introduction(card, testbed)),
        new_markdown_cell(algorithm(card)),
        params,
        new_code_cell(SETUP.replace("{card}", card.name)),
        new_markdown_cell(f"## Run\nThe same call as `python -m methods run {card.name} --testbed {testbed.name}`: "
                          "it checks the parameters, runs the card and writes `metrics.json` (results schema v1) and "
                          "the figure."),
        new_code_cell(RUN.replace("{extra}", extra)),
        new_markdown_cell("## Results\nThe card beside the testbed's references, on the same forget requests "
                          "(mean ± std where there are several)."),
        new_code_cell(RESULTS),
        new_code_cell(DETAILS),
        new_markdown_cell("## Figure"),
        new_code_cell(FIGURE),
        new_markdown_cell(fidelity(card)),
        new_code_cell(CONFIG),
    ]
    return notebook_of(cells)


def comparable(notebook) -> list:
    """(cell type, source) of every cell but papermill's injected parameters: what the builder controls."""
    return [(cell.cell_type, cell.source) for cell in notebook.cells
            if INJECTED not in cell.get("metadata", {}).get("tags", [])]


def check(cards: list, registry) -> int:
    problems = []
    for card in cards:
        path = HERE / f"{card.name}.ipynb"
        if not path.exists():
            problems.append(f"{path.relative_to(ROOT)}: missing; run `python notebooks/_build.py {card.name}`")
            continue
        expected, actual = comparable(build(card, registry)), comparable(nbformat.read(str(path), as_version=4))
        if expected != actual:
            index = next((i for i, (a, b) in enumerate(zip(expected, actual)) if a != b), min(len(expected), len(actual)))
            problems.append(f"{path.relative_to(ROOT)}: cell {index} differs from what notebooks/_build.py makes; "
                            f"run `python notebooks/_build.py {card.name}` (then re-execute it)")
    known = {card.name for card in registry.cards.values()}
    for path in sorted(HERE.glob("*.ipynb")):
        if not path.name.startswith("_") and path.stem not in known:
            problems.append(f"{path.relative_to(ROOT)}: no card {path.stem!r} in the registry; register it or remove "
                            "the notebook")
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{len(cards)} notebooks match notebooks/_build.py")
    return 1 if problems else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare the committed notebooks with the builder")
    parser.add_argument("cards", nargs="*", help="only these cards (default: every registered card)")
    args = parser.parse_args(argv)
    registry = load_registry()
    unknown = [name for name in args.cards if name not in registry.cards]
    if unknown:
        parser.error(f"unknown card(s) {', '.join(unknown)}; choose from {', '.join(registry.cards)}")
    cards = [registry.cards[name] for name in args.cards] if args.cards else list(registry.cards.values())
    if args.check:
        return check(cards, registry)
    for card in cards:
        path = HERE / f"{card.name}.ipynb"
        print(write(build(card, registry), path), path.relative_to(ROOT))
    return 0


def write(notebook, path: Path) -> str:
    """Write `notebook` to `path`, keeping an executed notebook's outputs where its code cells are unchanged."""
    if path.exists():
        current = nbformat.read(str(path), as_version=4)
        if comparable(current) == comparable(notebook):
            return "unchanged"
        own = [cell for cell in current.cells if INJECTED not in cell.get("metadata", {}).get("tags", [])]
        same_code = len(own) == len(notebook.cells) and all(
            a.cell_type == b.cell_type and (a.cell_type == "markdown" or a.source == b.source)
            for a, b in zip(own, notebook.cells))
        if same_code:
            for cell, built in zip(own, notebook.cells):
                cell.source = built.source
            nbformat.write(current, str(path))
            return "updated the text of (outputs kept)"
    nbformat.write(notebook, str(path))
    return "wrote (execute it: notebooks/_run.py)"


if __name__ == "__main__":
    sys.exit(main())
