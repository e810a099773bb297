"""Executable method cards in the site: the notebooks, their latest results, and the pages made from them.

A card is a notebook ``notebooks/<name>.ipynb`` (files starting with ``_`` are helpers, not cards). Run by papermill,
it writes its results to ``results/<testbed>/<name>/metrics.json`` (plus ``samples.png`` on MiniCanvas or
``tradeoff.png`` on MiniProfiles). The site never executes a notebook: it shows each one as last saved, and reads the
results files when it is built:

- every card page (the notebook rendered by mkdocs-jupyter) gets a header: the catalog entries that name the card,
  the testbed, the latest results, when and at which commit they were produced, and the command that reproduces them;
- the cards index lists every card with its headline metrics;
- the leaderboards compare the cards of each testbed, with a forget / retain trade-off plot for MiniProfiles.

A card without a results file is "not yet executed". A results file that is not JSON, or lacks a metric the pages
show, stops the build with a message naming the file. ``ATLAS_RESULTS_DIR`` points the build at another results
folder (the tests use temporary ones).
"""

from __future__ import annotations

import io
import json
import math
import os
import posixpath
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from site_tools.catalog import RESULTS_DIR, card_names  # noqa: E402

from . import markup as md  # noqa: E402
from .atlas import Atlas, venue_and_year  # noqa: E402
from .plots import PALETTE, STYLE  # noqa: E402

RESULTS_DIR_VARIABLE = "ATLAS_RESULTS_DIR"
CARD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # the schema's pattern for method_card
RESERVED_NAMES = {"index"}  # cards/index.md is the cards index

# Source paths of the generated pages and files (inside the docs folder).
CARDS_INDEX = "cards/index.md"
LEADERBOARDS = "leaderboards.md"
TRADEOFF_PLOT = "leaderboards/miniprofiles-tradeoff.svg"

# `out_dir = "results/<testbed>/<name>"` in a notebook's parameters cell says where its results go.
_OUT_DIR = re.compile(r"""^\s*out_dir\s*=\s*["']results/([a-z0-9_]+)/([a-z0-9_]+)/?["']""", re.MULTILINE)
_H1 = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


class CardError(Exception):
    """A notebook or results file the site cannot use; the message names the file."""


def results_dir() -> Path:
    configured = os.environ.get(RESULTS_DIR_VARIABLE)
    return Path(configured).resolve() if configured else RESULTS_DIR


def card_src(name: str) -> str:
    """Where a card's notebook sits in the build (mkdocs-jupyter makes it the page cards/<name>/)."""
    return f"cards/{name}.ipynb"


def card_file_src(name: str, filename: str) -> str:
    """A file published beside a card's page (its metrics.json and figure)."""
    return f"cards/{name}/{filename}"


# --- testbeds and their metrics ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    better: str  # "higher" or "lower"
    meaning: str
    digits: int = 3

    @property
    def arrow(self) -> str:
        return "↑" if self.better == "higher" else "↓"


@dataclass(frozen=True)
class Testbed:
    key: str
    title: str
    description: str
    metrics: tuple[Metric, ...]
    figure: str  # the figure a run writes beside metrics.json
    headline: tuple[str, ...]  # metric keys shown on the cards index


TESTBEDS = {
    "minicanvas": Testbed(
        key="minicanvas", title="MiniCanvas",
        description="A miniature UnlearnCanvas: 8×8 digits in four styles, a tiny text-to-image diffusion model "
                    "trained from scratch and a CNN judge. Each run erases one concept (a digit or a style) and is "
                    "scored on the same prompts and noise before (base model) and after.",
        metrics=(
            Metric("UA", "UA", "higher", "unlearning accuracy: share of the forget concept's samples that the judge "
                   "does not read as that concept"),
            Metric("IRA", "IRA", "higher", "in-domain retain accuracy: the judge still reads the other concepts of "
                   "the same axis"),
            Metric("CRA", "CRA", "higher", "cross-domain retain accuracy: the other axis (style for a digit) is "
                   "kept"),
            Metric("FD", "FD", "lower", "Fréchet distance between judge features of the samples and of real images",
                   digits=1),
        ),
        figure="samples.png", headline=("UA", "IRA", "CRA", "FD")),
    "miniprofiles": Testbed(
        key="miniprofiles", title="MiniProfiles",
        description="A miniature MLLMU-Bench: fictitious person profiles (a rendered face plus facts) asked about "
                    "with and without the image, a tiny LLaVA fine-tuned until it memorises them, and a model "
                    "retrained without the forget profiles as the oracle. Mean ± std over random forget splits.",
        metrics=(
            Metric("forget_acc", "Forget", "lower", "multiple-choice accuracy on the forget profiles"),
            Metric("forget_paraphrase_acc", "Forget (paraphrased)", "lower",
                   "the same on held-out paraphrased questions"),
            Metric("retain_acc", "Retain", "higher", "accuracy on the profiles that were not forgotten"),
            Metric("real_world_acc", "Real world", "higher", "accuracy on the celebrities (never forgotten)"),
            Metric("utility_acc", "Utility", "higher", "general visual questions on unseen faces"),
        ),
        figure="tradeoff.png", headline=("forget_acc", "retain_acc", "utility_acc")),
}


def testbed_title(key: str | None) -> str:
    return TESTBEDS[key].title if key in TESTBEDS else (key or "unknown testbed")


# --- results ----------------------------------------------------------------------------------------------------------

Value = tuple[float, "float | None"]  # mean and (optional) standard deviation

_MISSING = object()


@dataclass
class Results:
    """What the pages show of one metrics.json."""

    path: Path
    date: str
    commit: str | None
    metrics: dict[str, Value]
    base: dict[str, Value] = field(default_factory=dict)
    oracle: dict[str, Value] = field(default_factory=dict)
    time_s: Value | None = None
    memory_mb: float | None = None
    gap: Value | None = None  # MiniProfiles: forget-quality gap to the retrain oracle
    forget_accuracy: float | None = None  # MiniCanvas: judge accuracy on the forget concept (SLD's bar)
    base_forget_accuracy: float | None = None
    setting: str = ""


def _dig(data: Any, dotted: str, path: Path) -> Any:
    value = data
    walked = []
    for part in dotted.split("."):
        if not isinstance(value, dict):
            raise CardError(f"{path}: {'.'.join(walked)} is not a JSON object")
        walked.append(part)
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _number(data: Any, dotted: str, path: Path, required: bool = False) -> float | None:
    value = _dig(data, dotted, path)
    if value is _MISSING or value is None:
        if required:
            raise CardError(f"{path}: {dotted} is missing (a number is expected)")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CardError(f"{path}: {dotted} is {json.dumps(value)[:60]}, not a number")
    return float(value)


def _mean_std(data: Any, dotted: str, path: Path) -> Value | None:
    """A {mean, std} object (or a bare number) as (mean, std)."""
    value = _dig(data, dotted, path)
    if value is _MISSING or value is None:
        return None
    if isinstance(value, dict):
        mean = _number(data, f"{dotted}.mean", path)
        return None if mean is None else (mean, _number(data, f"{dotted}.std", path))
    return (_number(data, dotted, path), None)  # type: ignore[return-value]


def _text(data: dict[str, Any], key: str, path: Path) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise CardError(f"{path}: {key} is {json.dumps(value)[:60]}, not a string")
    return str(value)


def load_results(path: Path, testbed: str) -> Results | None:
    """The results of a card's latest run, or None when it has not been executed (no file)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CardError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise CardError(f"{path}: the top level is not a JSON object")
    date = _text(data, "date", path)
    if date is None:
        date = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc).date().isoformat()
    commit = _text(data, "git_commit", path)
    parts = [f"forget {data['forget']}" if isinstance(data.get("forget"), str) else "",
             f"{data['scale']} scale" if isinstance(data.get("scale"), str) else "",
             f"seed {data['seed']}" if isinstance(data.get("seed"), int) else ""]
    results = Results(path=path, date=date[:10], commit=commit, metrics={},
                      setting=", ".join(part for part in parts if part))
    bed = TESTBEDS[testbed]
    if testbed == "minicanvas":
        for metric in bed.metrics:
            results.metrics[metric.key] = (_number(data, f"metrics.{metric.key}", path, required=True), None)
            base = _number(data, f"base_metrics.{metric.key}", path)
            if base is not None:
                results.base[metric.key] = (base, None)
        time_s = _number(data, "method_wall_time_s", path)
        results.time_s = None if time_s is None else (time_s, None)
        results.memory_mb = _number(data, "memory.peak_rss_mb", path)
        results.forget_accuracy = _number(data, "metrics.forget_accuracy", path)
        results.base_forget_accuracy = _number(data, "base_metrics.forget_accuracy", path)
    elif testbed == "miniprofiles":
        for metric in bed.metrics:
            mean = _number(data, metric.key, path, required=True)
            results.metrics[metric.key] = (mean, _number(data, f"headline_std.{metric.key}", path))  # type: ignore[assignment]
            for reference, target in (("base", results.base), ("oracle", results.oracle)):
                value = _mean_std(data, f"{reference}.{metric.key}", path)
                if value is not None:
                    target[metric.key] = value
        results.gap = _mean_std(data, "forget_quality_gap", path)
        results.time_s = _mean_std(data, "unlearn_time_s", path)
        results.memory_mb = _number(data, "peak_rss_mb", path)
    return results


# --- quality bars -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bar:
    """A quality bar of the methods' slow tests (tests/methods*/), shown beside the results; a miss is flagged, never
    hidden. `check` returns None when the results lack what the bar needs."""

    text: str
    check: Callable[[Results], "bool | None"]


def _erasure_bar(results: Results) -> bool | None:
    if not all(key in results.base for key in ("IRA", "CRA")):
        return None
    value = {key: results.metrics[key][0] for key in ("UA", "IRA", "CRA")}
    return (value["UA"] >= 0.85 and value["IRA"] >= results.base["IRA"][0] - 0.10
            and value["CRA"] >= results.base["CRA"][0] - 0.10)


def _halving_bar(results: Results) -> bool | None:
    if results.forget_accuracy is None or results.base_forget_accuracy is None:
        return None
    return results.forget_accuracy <= 0.5 * results.base_forget_accuracy


def _forget_bar(results: Results) -> bool | None:
    return results.metrics["forget_acc"][0] < 0.2


ERASURE_BAR = Bar("UA ≥ 0.85, IRA and CRA at most 0.10 below the base model", _erasure_bar)
# SLD steers sampling (no weights change) and is held to a weaker bar by its test.
HALVING_BAR = Bar("forget-concept accuracy at most half the base model's", _halving_bar)
FORGET_BAR = Bar("forget accuracy below 0.2", _forget_bar)
BARS: dict[str, dict[str, Bar]] = {
    "minicanvas": {"*": ERASURE_BAR, "sld": HALVING_BAR},
    "miniprofiles": {"*": FORGET_BAR},
}


def bar_of(testbed: str | None, name: str) -> Bar | None:
    bars = BARS.get(testbed or "", {})
    return bars.get(name, bars.get("*"))


# --- cards ------------------------------------------------------------------------------------------------------------

@dataclass
class Card:
    name: str
    notebook: Path
    title: str
    testbed: str | None
    results_path: Path | None
    results: Results | None = None
    has_outputs: bool = True  # whether the notebook was saved with outputs (executed)
    papers: list[dict[str, Any]] = field(default_factory=list)  # catalog entries whose method_card names it

    @property
    def label(self) -> str:
        """A short name for menus: the notebook's title up to a colon or ' on ' ('ESD', 'Gradient Ascent (GA)')."""
        short = re.split(r":| on ", self.title, maxsplit=1)[0].strip()
        return short if short and len(short) <= 40 else self.name

    @property
    def command(self) -> str:
        return f"python -m methods run {self.name} --testbed {self.testbed or '<testbed>'} --seed 0"

    @property
    def figure_path(self) -> Path | None:
        if self.results_path is None or self.testbed not in TESTBEDS:
            return None
        figure = self.results_path.parent / TESTBEDS[self.testbed].figure
        return figure if figure.is_file() else None

    @property
    def bar(self) -> Bar | None:
        return bar_of(self.testbed, self.name)

    def meets_bar(self) -> bool | None:
        bar = self.bar
        return None if bar is None or self.results is None else bar.check(self.results)


def _notebook_info(path: Path) -> tuple[str | None, str | None, bool]:
    """(title, testbed, has outputs) of a notebook: its first Markdown heading, the testbed folder of `out_dir` in
    its parameters cell, and whether any code cell has saved outputs. Raises CardError if the file is not a
    notebook."""
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = notebook["cells"]
        if not isinstance(cells, list):
            raise TypeError("cells is not a list")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise CardError(f"{path}: not a readable Jupyter notebook ({exc})") from None
    title = testbed = None
    has_outputs = False
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        has_outputs = has_outputs or bool(cell.get("outputs"))
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        if title is None and cell.get("cell_type") == "markdown":
            heading = _H1.search(source)
            if heading:
                title = re.sub(r"[*`]", "", heading.group(1)).strip()
        if testbed is None and cell.get("cell_type") == "code":
            out_dir = _OUT_DIR.search(source)
            if out_dir:
                testbed = out_dir.group(1)
    return title, testbed, has_outputs


def discover(notebooks_dir: Path, results_root: Path, atlas: Atlas | None = None) -> list[Card]:
    """Every card of `notebooks_dir` with its latest results from `results_root`, sorted by testbed then name."""
    cards = []
    paths = sorted(notebooks_dir.glob("*.ipynb")) if notebooks_dir.is_dir() else []
    for notebook in paths:
        name = notebook.stem
        if name.startswith("_"):
            continue
        if not CARD_NAME.match(name) or name in RESERVED_NAMES:
            raise CardError(f"{notebook}: a card's name must match {CARD_NAME.pattern} and not be "
                            f"{', '.join(sorted(RESERVED_NAMES))}; rename the notebook (or start it with '_' if it "
                            "is not a card)")
        title, testbed, has_outputs = _notebook_info(notebook)
        if testbed is None:  # no out_dir parameter: where a previous run left results, if anywhere
            found = sorted(results_root.glob(f"*/{name}/metrics.json"))
            testbed = found[0].parent.parent.name if found else None
        results_path = results_root / testbed / name / "metrics.json" if testbed else None
        card = Card(name=name, notebook=notebook, title=title or name, testbed=testbed, results_path=results_path,
                    has_outputs=has_outputs)
        if results_path is not None and testbed in TESTBEDS:
            card.results = load_results(results_path, testbed)
        cards.append(card)
    if atlas is not None:
        by_name = {card.name: card for card in cards}
        for paper in atlas.papers:
            for name in card_names(paper.get("method_card")):
                if name in by_name:
                    by_name[name].papers.append(paper)
    order = list(TESTBEDS)
    return sorted(cards, key=lambda c: (order.index(c.testbed) if c.testbed in order else len(order), c.name))


def by_testbed(cards: list[Card]) -> dict[str | None, list[Card]]:
    groups: dict[str | None, list[Card]] = {}
    for card in cards:
        groups.setdefault(card.testbed if card.testbed in TESTBEDS else None, []).append(card)
    return groups


# --- formatting -------------------------------------------------------------------------------------------------------

def number(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.{digits}f}"


def mean_std(value: Value | None, digits: int = 3) -> str:
    if value is None:
        return "—"
    mean, std = value
    return number(mean, digits) if std is None else f"{number(mean, digits)} ± {number(std, digits)}"


def seconds(value: Value | None) -> str:
    if value is None:
        return "—"
    mean, std = value
    digits = 2 if mean < 10 else 1 if mean < 100 else 0
    return f"{number(mean, digits)} ± {number(std, digits)} s" if std is not None else f"{number(mean, digits)} s"


def megabytes(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} MB"


def short_commit(commit: str | None) -> str:
    return md.code(commit[:7]) if commit else "unrecorded"


def provenance(card: Card, capital: bool = False) -> str:
    """'reproduced on MiniCanvas on 2026-11-22 at commit `fd86b9d`' (Markdown)."""
    results = card.results
    if results is None:
        return "Not yet executed" if capital else "not yet executed"
    commit = f"at commit {short_commit(results.commit)}" if results.commit else "at an unrecorded commit"
    verb = "Reproduced" if capital else "reproduced"
    return f"{verb} on {md.text(testbed_title(card.testbed))} on {md.text(results.date)} {commit}"


def bar_mark(card: Card) -> str:
    """The bar's verdict as a short Markdown cell: 'met', 'missed' (flagged) or '—'."""
    verdict = card.meets_bar()
    bar = card.bar
    if verdict is None or bar is None:
        return "—"
    title = md.attribute_value(f"bar: {bar.text}")
    if verdict:
        return f'<span class="atlas-bar atlas-bar--met" title="{title}">met</span>'
    return f'<span class="atlas-bar atlas-bar--missed" title="{title}">missed</span>'


def headline(card: Card) -> str:
    if card.results is None:
        return "*not yet executed*"
    bed = TESTBEDS[card.testbed]  # type: ignore[index]
    metrics = {metric.key: metric for metric in bed.metrics}
    return " · ".join(f"{md.text(metrics[key].label)} {number(card.results.metrics[key][0], metrics[key].digits)}"
                      for key in bed.headline)


def paper_refs(card: Card, link: Callable[[str], str]) -> str:
    """The catalog entries of a card as Markdown links; `link` maps a paper id to the link target."""
    if not card.papers:
        return "no catalog entry names this card yet"
    return "; ".join(f"{md.link(paper['title'], link(paper['id']))} · {md.text(venue_and_year(paper))}"
                     for paper in card.papers)


# --- card page header -------------------------------------------------------------------------------------------------

def results_table(card: Card) -> str:
    """The card's latest results beside the base model (and the retrain oracle on MiniProfiles)."""
    results = card.results
    assert results is not None and card.testbed in TESTBEDS
    bed = TESTBEDS[card.testbed]
    columns = [md.text(card.name), "Base model"] + (["Retrain oracle"] if bed.key == "miniprofiles" else [])
    rows = []
    for metric in bed.metrics:
        cells = [f'<span title="{md.attribute_value(metric.meaning)}">{md.text(metric.label)} {metric.arrow}</span>',
                 mean_std(results.metrics[metric.key], metric.digits), mean_std(results.base.get(metric.key), metric.digits)]
        if bed.key == "miniprofiles":
            cells.append(mean_std(results.oracle.get(metric.key), metric.digits))
        rows.append(cells)
    if bed.key == "miniprofiles":
        rows.append(["Forget-quality gap to the oracle ↓", mean_std(results.gap), "—", "0"])
    extra = [] if bed.key == "minicanvas" else ["—"]
    rows.append(["Method time", seconds(results.time_s), "—"] + extra)
    rows.append(["Peak memory (process)", megabytes(results.memory_mb), "—"] + extra)
    return md.table(["Metric"] + columns, rows)


def card_header(card: Card, url: Callable[[str], str]) -> str:
    """Markdown of the box above a card's notebook. `url` maps a source path of the build (papers/<id>.md, the
    leaderboards, files beside the card) to a URL relative to the card's page."""
    bed = card.testbed
    parts = ['<div class="atlas-card" markdown>', ""]
    where = (f"[{md.text(testbed_title(bed))}]({url(LEADERBOARDS)}#{bed})" if bed in TESTBEDS
             else md.text(testbed_title(bed)))
    parts += [f"**Executable card {md.code(card.name)}** · testbed {where} · [all cards]({url(CARDS_INDEX)})", ""]
    parts += [f"Catalog entry: {paper_refs(card, lambda paper_id: url(f'papers/{paper_id}.md'))}", ""]
    if card.results is None:
        expected = f"results/{bed}/{card.name}/metrics.json" if bed else f"results/<testbed>/{card.name}/metrics.json"
        parts += [f"**Not yet executed**: there is no {md.code(expected)} yet. Run the card to produce it:", ""]
    else:
        parts += [results_table(card), ""]
        bar = card.bar
        verdict = card.meets_bar()
        if bar is not None and verdict is not None:
            parts += [f"Quality bar ({md.text(bar.text)}): {bar_mark(card)}.", ""]
        setting = f" ({md.text(card.results.setting)})" if card.results.setting else ""
        parts += [f"**{provenance(card, capital=True)}**{setting}. Reproduce it with:", ""]
    parts += [md.code_block(card.command, "bash"), ""]
    downloads = [f"[the notebook ({md.text(card.notebook.name)})]({card.notebook.name})"]
    figure = card.figure_path if card.results is not None else None
    if card.results is not None:
        downloads.append(f"[metrics.json]({url(card_file_src(card.name, 'metrics.json'))})")
        if figure is not None:
            downloads.append(f"[{md.text(figure.name)}]({url(card_file_src(card.name, figure.name))})")
    if card.has_outputs:
        below = "Below: the notebook as last executed (`make notebooks` re-executes every card)."
    else:
        below = ("Below: the notebook, saved without outputs: it has not been executed yet (`make notebooks` "
                 "executes every card).")
    parts += ["Download " + " · ".join(downloads) + ". " + below, ""]
    if figure is not None and not card.has_outputs:  # the run's figure, which the notebook would otherwise show
        parts += [f"![The figure of the latest run]({url(card_file_src(card.name, figure.name))}){{ .atlas-plot }}", ""]
    parts += ["</div>", ""]
    return "\n".join(parts)


# --- cards index ------------------------------------------------------------------------------------------------------

def _relative(from_src: str, to_src: str) -> str:
    """The Markdown link from one docs source file to another (as pages.relative; mkdocs makes it a URL)."""
    return posixpath.relpath(to_src, posixpath.dirname(from_src) or ".")


def card_link(from_src: str, card: Card, card_pages: dict[str, str], long: bool = True) -> str:
    """The card linked to its page when the page is part of the build: 'ESD `esd`', or just 'esd' (`long=False`,
    for wide tables)."""
    if card.name not in card_pages:
        return md.code(card.name)
    target = _relative(from_src, card_pages[card.name])
    if long:
        return md.link(card.label, target) + f" {md.code(card.name)}"
    return f'[{md.text(card.name)}]({target} "{md.attribute_value(card.label)}")'


def run_cell(card: Card) -> str:
    """When and at which commit a card's results were produced, for a table column headed 'Reproduced on ...'."""
    if card.results is None:
        return "*not yet executed*"
    return f"{md.text(card.results.date)} · {short_commit(card.results.commit)}"


def cards_index(cards: list[Card], card_pages: dict[str, str]) -> str:
    src = CARDS_INDEX
    paper = lambda paper_id: _relative(src, f"papers/{paper_id}.md")  # noqa: E731
    parts = ["# Method cards", "",
             "An executable card is a reference implementation of a method with a notebook that runs it on a "
             "small testbed on CPU. Each card's page shows its notebook as last executed and the results that run "
             f"wrote to {md.code('results/<testbed>/<card>/metrics.json')}; the [leaderboards]"
             f"({_relative(src, LEADERBOARDS)}) compare the cards of each testbed. The site never runs a notebook: "
             "`make notebooks` re-executes them all.", ""]
    if not cards:
        parts += ["No cards yet: add a notebook to `notebooks/`.", ""]
    for testbed, group in by_testbed(cards).items():
        title = testbed_title(testbed) if testbed else "Other cards"
        parts += [f"## {md.text(title)}", ""]
        if testbed in TESTBEDS:
            parts += [md.text(TESTBEDS[testbed].description), ""]
        if testbed is None:
            parts += ["Cards whose notebook names no known testbed (its `out_dir` parameter is not "
                      "`results/<testbed>/<card>`), so their results cannot be shown.", ""]
        rows = [[card_link(src, card, card_pages), paper_refs(card, paper), headline(card) if testbed else "—",
                 run_cell(card) if testbed else "—"] for card in group]
        reproduced = f"Reproduced on {md.text(title)}" if testbed else "Latest run"
        parts += ['<div class="atlas-cards" markdown>', "",
                  md.table(["Card", "Catalog entry", "Headline metrics", reproduced], rows), "", "</div>", ""]
    return "\n".join(parts)


# --- leaderboards -----------------------------------------------------------------------------------------------------

def _reference_rows(cards: list[Card], kind: str) -> list[tuple[str, dict[str, Value], list[str]]]:
    """Distinct base-model (or oracle) results among the cards: (label, values, cards it comes from). The cards
    normally share one, measured with each run; differing ones (another forget concept, scale or seed) each get a
    row."""
    groups: list[tuple[dict[str, Value], list[str]]] = []
    for card in cards:
        if card.results is None:
            continue
        values = getattr(card.results, kind)
        if not values:
            continue
        key = {name: tuple(round(v, 6) if v is not None else None for v in value) for name, value in values.items()}
        for known, names in groups:
            if {n: tuple(round(v, 6) if v is not None else None for v in val) for n, val in known.items()} == key:
                names.append(card.name)
                break
        else:
            groups.append((values, [card.name]))
    label = "Base model (no unlearning)" if kind == "base" else "Retrain oracle (never saw the forget set)"
    if len(groups) <= 1:
        return [(label, values, names) for values, names in groups]
    return [(f"{label}, run of {', '.join(names)}", values, names) for values, names in groups]


def minicanvas_board(cards: list[Card], card_pages: dict[str, str]) -> list[str]:
    src = LEADERBOARDS
    bed = TESTBEDS["minicanvas"]
    paper = lambda paper_id: _relative(src, f"papers/{paper_id}.md")  # noqa: E731
    header = ["Card"] + [f'<span title="{md.attribute_value(m.meaning)}">{m.label} {m.arrow}</span>' for m in bed.metrics]
    settings = {card.results.setting for card in cards if card.results is not None}
    setting_column = len(settings) > 1  # runs with another concept, scale or seed: say which row is which
    header += ["Method time", "Peak memory", "Bar"] + (["Setting"] if setting_column else [])
    header += ["Reproduced on MiniCanvas"]
    rows = []
    for card in cards:
        name = card_link(src, card, card_pages, long=False)
        if card.results is None:
            rows.append([name] + ["—"] * (len(bed.metrics) + 3) + ([""] if setting_column else []) + [run_cell(card)])
            continue
        r = card.results
        rows.append([name] + [number(r.metrics[m.key][0], m.digits) for m in bed.metrics]
                    + [seconds(r.time_s), megabytes(r.memory_mb), bar_mark(card)]
                    + ([md.text(r.setting)] if setting_column else []) + [run_cell(card)])
    for label, values, _ in _reference_rows(cards, "base"):
        rows.append([f"*{md.text(label)}*"] + [number(values[m.key][0], m.digits) if m.key in values else "—"
                                               for m in bed.metrics] + ["—", "—", "—"]
                    + ([""] if setting_column else []) + [""])
    notes = [f"- **{m.label}** {m.arrow}: {md.text(m.meaning)}." for m in bed.metrics]
    return ["## MiniCanvas { #minicanvas }", "", md.text(bed.description), "",
            _reproduced_line(cards, "MiniCanvas"), "",
            '<div class="atlas-board atlas-board--minicanvas" markdown>', "", md.table(header, rows), "", "</div>", "",
            *notes, f"- **Bar**: the quality bar of the methods' tests, shown beside the result and never used to "
            f"hide one: {md.text(ERASURE_BAR.text)} (SLD, which only steers sampling: "
            f"{md.text(HALVING_BAR.text)}).",
            "- **Method time** is the unlearning step alone; **peak memory** is the whole run's process (peak RSS).",
            "", *_catalog_lines(cards, paper), ""]


def miniprofiles_board(cards: list[Card], card_pages: dict[str, str]) -> list[str]:
    src = LEADERBOARDS
    bed = TESTBEDS["miniprofiles"]
    paper = lambda paper_id: _relative(src, f"papers/{paper_id}.md")  # noqa: E731
    header = ["Card"] + [f'<span title="{md.attribute_value(m.meaning)}">{md.text(m.label)} {m.arrow}</span>'
                         for m in bed.metrics]
    header += ["Forget-quality gap ↓", "Unlearn time", "Peak memory", "Bar", "Reproduced on MiniProfiles"]
    rows = []
    for card in cards:
        name = card_link(src, card, card_pages, long=False)
        if card.results is None:
            rows.append([name] + ["—"] * (len(bed.metrics) + 4) + [run_cell(card)])
            continue
        r = card.results
        rows.append([name] + [mean_std(r.metrics[m.key]) for m in bed.metrics]
                    + [mean_std(r.gap), seconds(r.time_s), megabytes(r.memory_mb), bar_mark(card), run_cell(card)])
    for kind in ("base", "oracle"):
        for label, values, _ in _reference_rows(cards, kind):
            gap = "0" if kind == "oracle" else "—"
            rows.append([f"*{md.text(label)}*"] + [mean_std(values.get(m.key)) for m in bed.metrics]
                        + [gap, "—", "—", "—", ""])
    executed = [card for card in cards if card.results is not None]
    figure = (["### Forget / retain trade-off", "",
               f"![Forget accuracy against retain accuracy of each card, with the base model and the retrain oracle]"
               f"({_relative(src, TRADEOFF_PLOT)}){{ .atlas-plot }}", "",
               "Lower forget accuracy and higher retain accuracy are better: the retrain oracle (★) marks what "
               "unlearning should reach; error bars are ± one standard deviation over the forget splits.", ""]
              if executed else [])
    notes = [f"- **{m.label}** {m.arrow}: {md.text(m.meaning)}." for m in bed.metrics]
    return ["## MiniProfiles { #miniprofiles }", "", md.text(bed.description), "",
            _reproduced_line(cards, "MiniProfiles"), "",
            '<div class="atlas-board atlas-board--miniprofiles" markdown>', "", md.table(header, rows), "", "</div>", "",
            *notes, "- **Forget-quality gap**: mean absolute difference from the retrain oracle over every "
            "forget-side score (forget and paraphrased, visual and text questions); 0 is the oracle itself.",
            f"- **Bar**: the quality bar of the methods' tests, shown beside the result and never used to hide one: "
            f"{md.text(FORGET_BAR.text)}.", "", *_catalog_lines(cards, paper), "", *figure]


def _reproduced_line(cards: list[Card], title: str) -> str:
    """'Reproduced on MiniCanvas on 2026-11-22 at commit `fd86b9d`', or the span of dates and commits of the rows."""
    runs = [card.results for card in cards if card.results is not None]
    missing = len(cards) - len(runs)
    pending = f" {missing} card{'s' if missing != 1 else ''} not yet executed." if missing else ""
    if not runs:
        return f"**Not yet reproduced on {title}**: no card of this testbed has been executed.{pending}"
    settings = {r.setting for r in runs}
    setting = f" ({md.text(settings.pop())})" if len(settings) == 1 and "" not in settings else ""
    dates = sorted({r.date for r in runs})
    commits = sorted({r.commit or "" for r in runs})
    when = f"on {dates[0]}" if len(dates) == 1 else f"between {dates[0]} and {dates[-1]}"
    if commits == [""]:
        at = "at an unrecorded commit"
    elif len(commits) == 1:
        at = f"at commit {short_commit(commits[0])}"
    else:
        at = "at the commits in the last column"
    return (f"**Reproduced on {title} {md.text(when)} {at}**{setting}; each row's date and commit are in its last "
            f"column.{pending}")


def _catalog_lines(cards: list[Card], paper: Callable[[str], str]) -> list[str]:
    lines = [f"- {md.code(card.name)}: {paper_refs(card, paper)}" for card in cards]
    return ["Catalog entries of the cards:", "", *lines] if lines else []


def leaderboards_page(cards: list[Card], card_pages: dict[str, str]) -> str:
    groups = by_testbed(cards)
    parts = ["---\nhide:\n  - navigation\n  - toc\n---\n", "# Leaderboards", "",
             "Every executable card of a testbed in one table, read from the results its notebook wrote "
             f"({md.code('results/<testbed>/<card>/metrics.json')}) when the site was built. Each row says when and at "
             "which commit it was reproduced; a result that misses its quality bar is shown as it is, flagged. "
             f"[All cards]({_relative(LEADERBOARDS, CARDS_INDEX)}).", ""]
    boards = {"minicanvas": minicanvas_board, "miniprofiles": miniprofiles_board}
    for key, board in boards.items():
        if groups.get(key):
            parts += board(groups[key], card_pages)
        else:
            parts += [f"## {TESTBEDS[key].title} {{ #{key} }}", "", "No card runs on this testbed yet.", ""]
    return "\n".join(parts)


# --- trade-off plot ---------------------------------------------------------------------------------------------------

CARD_MARKERS = ["o", "D", "^", "v", "P", "X", "h", "<", ">"]  # with a colour each, so cards differ without colour

def tradeoff_svg(cards: list[Card]) -> bytes:
    """Forget accuracy (lower is better) against retain accuracy (higher is better) of every executed MiniProfiles
    card, with the base model and the retrain oracle; error bars are one standard deviation."""
    executed = [card for card in cards if card.testbed == "miniprofiles" and card.results is not None]
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(7, 4.6))
        for index, card in enumerate(executed):
            r = card.results
            assert r is not None
            (retain, retain_std), (forget, forget_std) = r.metrics["retain_acc"], r.metrics["forget_acc"]
            colour = PALETTE[index % len(PALETTE)]
            axes.errorbar([retain], [forget], xerr=[retain_std or 0], yerr=[forget_std or 0], fmt="none",
                          ecolor=colour, capsize=3, alpha=0.8)
            axes.scatter([retain], [forget], marker=CARD_MARKERS[index % len(CARD_MARKERS)], color=colour, s=45,
                         zorder=3, label=card.name)
        for kind, marker, colour, label in (("base", "s", "#777777", "base model"),
                                            ("oracle", "*", "#000000", "retrain oracle")):
            for _, values, _ in _reference_rows(executed, kind):
                if "retain_acc" in values and "forget_acc" in values:
                    (retain, retain_std), (forget, forget_std) = values["retain_acc"], values["forget_acc"]
                    axes.errorbar([retain], [forget], xerr=[retain_std or 0], yerr=[forget_std or 0], fmt="none",
                                  ecolor=colour, capsize=3, alpha=0.8)
                    axes.scatter([retain], [forget], marker=marker, color=colour, s=130 if marker == "*" else 55,
                                 zorder=3, label=label)
                    label = "_nolegend_"
        axes.set_xlim(-0.02, 1.05)
        axes.set_ylim(-0.02, 1.05)
        axes.set_xlabel("retain accuracy (higher is better)")
        axes.set_ylabel("forget accuracy (lower is better)")
        axes.grid(alpha=0.3)
        if executed:
            axes.legend(frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
        plt.close(figure)
        return buffer.getvalue()
