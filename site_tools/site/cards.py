"""Executable cards in the site: card pages, the cards index and the leaderboards, generic over the registry.

Everything comes from data: the registry (methods/registry.yaml: each card's testbeds, catalog ids, claim, fidelity
notes and quality bar) and the testbed declarations (methods/testbeds/<name>/testbed.yaml: metrics, references,
figure, plot) read through `methods.registry` without importing torch, the notebooks `notebooks/<card>.ipynb`, and
the results files `results/<testbed>/<card>/metrics.json` (results schema v1, validated when the site is built). No
card or testbed is named in this module. The site never executes a notebook: it shows each one as last saved.

- every card page (the notebook rendered by mkdocs-jupyter) gets a header: what the paper reports beside what the
  testbed shows, the latest results with the references, the fidelity notes, when and at which commit the results
  were produced, and the command that reproduces them;
- the cards index lists every card with its headline metrics;
- the leaderboards compare the unlearn cards of each testbed, with the testbed's scatter plot;
- attack cards have no metrics.json: their results are the cells of the testbed's robustness matrix
  (`results/<testbed>/matrix/<attack>/<target>.json`, see :mod:`.robustness`), which has a page per testbed; an
  attack card's page shows its column (and the prompts it found), an unlearn card's page its row.

A card without a results file is "not yet executed". A results file that breaks the schema stops the build with a
message naming the file and the field. ``ATLAS_RESULTS_DIR`` points the build at another results folder and
``MMU_ATLAS_REGISTRY`` at another registry (the tests use temporary ones).
"""

from __future__ import annotations

import io
import json
import math
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from methods.core.results import ResultsError, read_results  # noqa: E402
from methods.registry import CardSpec, Registry, RegistryError, TestbedSpec, load_registry  # noqa: E402
from site_tools.catalog import RESULTS_DIR, card_names  # noqa: E402

from . import markup as md  # noqa: E402
from .atlas import Atlas, venue_and_year  # noqa: E402
from .plots import PALETTE, STYLE  # noqa: E402

RESULTS_DIR_VARIABLE = "ATLAS_RESULTS_DIR"

# Source paths of the generated pages and files (inside the docs folder).
CARDS_INDEX = "cards/index.md"
LEADERBOARDS = "leaderboards.md"


class CardError(Exception):
    """A notebook, registry entry or results file the site cannot use; the message names the file."""


def results_dir() -> Path:
    configured = os.environ.get(RESULTS_DIR_VARIABLE)
    return Path(configured).resolve() if configured else RESULTS_DIR


def card_src(name: str) -> str:
    """Where a card's notebook sits in the build (mkdocs-jupyter makes it the page cards/<name>/)."""
    return f"cards/{name}.ipynb"


def card_file_src(name: str, filename: str) -> str:
    """A file published beside a card's page (its metrics.json and figure)."""
    return f"cards/{name}/{filename}"


def plot_src(testbed: str) -> str:
    return f"leaderboards/{testbed}-plot.svg"


# --- results ----------------------------------------------------------------------------------------------------------

Value = tuple[float, "float | None"]  # mean and (optional) standard deviation


@dataclass
class Results:
    """What the pages show of one results file (schema v1)."""

    path: Path
    record: dict
    date: str
    commit: str | None
    dirty: bool | None
    metrics: dict[str, Value | None]
    references: dict[str, dict[str, Value | None]]
    time_s: Value | None
    memory_mb: float | None
    setting: str

    @property
    def figure(self) -> Path | None:
        name = self.record.get("figure")
        path = self.path.parent / name if name else None
        return path if path is not None and path.is_file() else None

    @property
    def media(self) -> list[tuple[Path, str, str]]:
        """(file, kind, caption) of each example file the run wrote beside metrics.json (its record's `media`)."""
        return [(self.path.parent / item["file"], item["kind"], item["caption"]) for item in self.record.get("media", [])]


def _value(stat: Any) -> Value | None:
    if not isinstance(stat, dict) or stat.get("mean") is None:
        return None
    return (float(stat["mean"]), None if stat.get("std") is None else float(stat["std"]))


def load_results(path: Path, card: str, testbed: str) -> Results | None:
    """The results of a card's latest run on a testbed, or None when it has not been executed (no file)."""
    if not path.is_file():
        return None
    try:
        record = read_results(path)
    except ResultsError as error:
        raise CardError(str(error)) from None
    for item in record.get("media", []):
        if not (path.parent / item["file"]).is_file():
            raise CardError(f"{path}: media lists {item['file']!r}, which is not beside it; re-run the card")
    if record["card"] != card or record["testbed"] != testbed:
        raise CardError(f"{path}: holds card {record['card']!r} on {record['testbed']!r}, expected {card!r} on "
                        f"{testbed!r}; re-run the card or move the file")
    requests = record["request"].get("requests", [])
    concept = requests[0].get("forget") if len(requests) == 1 and isinstance(requests[0], dict) else None
    parts = [f"forget {concept}" if isinstance(concept, str) else (f"{len(requests)} forget splits" if requests else ""),
             f"{record['scale']} scale", f"seed {record['seed']}"]
    if record.get("model"):
        parts.append(f"model {record['model']}")
    return Results(
        path=path, record=record, date=record["date"][:10], commit=record["git"]["commit"],
        dirty=record["git"]["dirty"],
        metrics={key: _value(stat) for key, stat in record["metrics"].items()},
        references={ref: {key: _value(stat) for key, stat in values.items()}
                    for ref, values in record["references"].items()},
        time_s=_value(record["timings"].get("method_s")), memory_mb=record["memory"].get("peak_rss_mb"),
        setting=", ".join(part for part in parts if part))


# --- cards ------------------------------------------------------------------------------------------------------------

@dataclass
class Card:
    """A registered card as the site shows it, on its (first) testbed."""

    spec: CardSpec
    testbed: TestbedSpec
    notebook: Path
    results: Results | None = None
    has_outputs: bool = True  # whether the notebook was saved with outputs (executed)
    papers: list[dict[str, Any]] = field(default_factory=list)  # catalog entries whose method_card names it
    matrix: Any = field(default=None, repr=False)  # the testbed's robustness matrix (robustness.Matrix), if any
    siblings: dict[str, "Card"] = field(default_factory=dict, repr=False)  # every card, for bars that compare cards

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def label(self) -> str:
        """A short name for menus: the title up to its first colon or comma, or the card's name."""
        short = re.split(r":|,", self.title, maxsplit=1)[0].strip()
        return short if short and len(short) <= 40 else self.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def is_attack(self) -> bool:
        return self.spec.kind == "attack"

    @property
    def cells(self) -> list:
        """An attack card's cells of the robustness matrix (empty for an unlearn card)."""
        if not self.is_attack or self.matrix is None:
            return []
        return [cell for _, cell in self.matrix.column(self.name) if cell is not None]

    @property
    def executed(self) -> bool:
        return bool(self.cells) if self.is_attack else self.results is not None

    @property
    def command(self) -> str:
        if self.is_attack:
            return f"python -m methods matrix --testbed {self.testbed.name} --attack {self.name} --seed 0"
        return f"python -m methods run {self.name} --testbed {self.testbed.name} --seed 0"

    @property
    def bar(self):
        return self.spec.testbeds[self.testbed.name].bar

    def bar_text(self) -> str:
        bar = self.bar
        return bar.text({m.key: m.label for m in self.testbed.metrics_for(self.kind)}) if bar else ""

    def meets_bar(self) -> bool | None:
        bar = self.bar
        if bar is None:
            return None
        if self.is_attack:  # every target it declares a condition on: missed if one misses, met if all are met
            targets = list(dict.fromkeys(c.target for c in bar.conditions))
            if self.matrix is None:
                return None
            verdicts = [self.matrix.verdict(self.name, target) for target in targets]
            if any(verdict is False for verdict in verdicts):
                return False
            return None if any(verdict is None for verdict in verdicts) else True
        if self.results is None:
            return None
        record = self.results.record

        def other(name: str) -> dict | None:
            sibling = self.siblings.get(name)
            return sibling.results.record["metrics"] if sibling is not None and sibling.results else None

        return bar.check(record["metrics"], record["references"], other)


def _has_outputs(path: Path) -> bool:
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        cells = notebook["cells"]
        if not isinstance(cells, list):
            raise TypeError("cells is not a list")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise CardError(f"{path}: not a readable Jupyter notebook ({exc})") from None
    return any(isinstance(cell, dict) and cell.get("outputs") for cell in cells)


def discover(notebooks_dir: Path, results_root: Path, atlas: Atlas | None = None,
             registry: Registry | None = None) -> list[Card]:
    """Every registered card with its notebook and latest results, in registry order grouped by testbed. A notebook
    that no registered card owns, or a card without its notebook, stops the build with the fix."""
    try:
        registry = registry or load_registry()
    except RegistryError as exc:
        raise CardError(str(exc)) from None
    cards = []
    for spec in registry.cards.values():
        notebook = notebooks_dir / f"{spec.name}.ipynb"
        if not notebook.is_file():
            raise CardError(f"{notebook}: missing; card {spec.name!r} of {registry.source.name} needs its notebook "
                            "(python notebooks/_build.py writes it)")
        testbed = registry.testbeds[next(iter(spec.testbeds))]
        card = Card(spec, testbed, notebook, has_outputs=_has_outputs(notebook))
        card.results = load_results(results_root / testbed.name / spec.name / "metrics.json", spec.name, testbed.name)
        cards.append(card)
    known = set(registry.cards)
    if notebooks_dir.is_dir():
        for path in sorted(notebooks_dir.glob("*.ipynb")):
            if not path.name.startswith("_") and path.stem not in known:
                raise CardError(f"{path}: no card {path.stem!r} in {registry.source.name}; register it or start the "
                                "file's name with '_' if it is not a card")
    siblings = {card.name: card for card in cards}
    from .robustness import load_matrices  # robustness imports this module

    matrices = load_matrices(registry, results_root)
    for card in cards:
        card.siblings = siblings
        card.matrix = matrices.get(card.testbed.name)
    if atlas is not None:
        for paper in atlas.papers:
            for name in card_names(paper.get("method_card")):
                if name in siblings:
                    siblings[name].papers.append(paper)
    order = list(registry.testbeds)
    return sorted(cards, key=lambda c: order.index(c.testbed.name))


def by_testbed(cards: list[Card]) -> dict[str, list[Card]]:
    groups: dict[str, list[Card]] = {}
    for card in cards:
        groups.setdefault(card.testbed.name, []).append(card)
    return groups


def matrices(cards: list[Card]) -> dict:
    """testbed name -> its robustness matrix, for the testbeds that have one."""
    return {card.testbed.name: card.matrix for card in cards if card.matrix is not None}


def unlearn_cards(cards: list[Card]) -> list[Card]:
    return [card for card in cards if not card.is_attack]


def testbed_of(cards: list[Card], name: str) -> TestbedSpec:
    return next(card.testbed for card in cards if card.testbed.name == name)


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


def testbed_title(card: Card) -> str:
    return card.testbed.title


def provenance(card: Card, capital: bool = False) -> str:
    """'reproduced on <testbed> on <date> at commit `<short hash>`' (Markdown)."""
    if card.is_attack:
        from .robustness import when

        if not card.cells:
            return "Not yet run" if capital else "not yet run"
        return f"{'Computed' if capital else 'computed'} on {md.text(card.testbed.title)} {when(card.cells)}"
    results = card.results
    if results is None:
        return "Not yet executed" if capital else "not yet executed"
    commit = f"at commit {short_commit(results.commit)}" if results.commit else "at an unrecorded commit"
    if results.dirty:
        commit += " (with uncommitted changes)"
    verb = "Reproduced" if capital else "reproduced"
    return f"{verb} on {md.text(card.testbed.title)} on {md.text(results.date)} {commit}"


def bar_mark(card: Card) -> str:
    """The bar's verdict as a short Markdown cell: 'met', 'missed' (flagged) or '—'."""
    verdict = card.meets_bar()
    if verdict is None:
        return "—"
    title = md.attribute_value(f"bar: {card.bar_text()}")
    if verdict:
        return f'<span class="atlas-bar atlas-bar--met" title="{title}">met</span>'
    return f'<span class="atlas-bar atlas-bar--missed" title="{title}">missed</span>'


def headline(card: Card) -> str:
    if card.is_attack:
        from .robustness import card_headline

        return card_headline(card, card.matrix)
    if card.results is None:
        return "*not yet executed*"
    parts = []
    for key in card.testbed.index:
        metric = card.testbed.metric(key)
        value = card.results.metrics.get(key)
        parts.append(f"{md.text(metric.label)} {number(value[0] if value else None, metric.digits)}")
    return " · ".join(parts)


def paper_refs(card: Card, link: Callable[[str], str]) -> str:
    """The catalog entries of a card as Markdown links; `link` maps a paper id to the link target."""
    if not card.papers:
        return "no catalog entry names this card yet"
    return "; ".join(f"{md.link(paper['title'], link(paper['id']))} · {md.text(venue_and_year(paper))}"
                     for paper in card.papers)


def metric_header(metric) -> str:
    return f'<span title="{md.attribute_value(metric.meaning)}">{md.text(metric.label)} {metric.arrow}</span>'


# --- card page header -------------------------------------------------------------------------------------------------

def results_table(card: Card) -> str:
    """The card's latest results beside the testbed's references (base model, oracle), on the same requests."""
    results = card.results
    assert results is not None
    references = [ref for ref in card.testbed.references if ref.key in results.references]
    columns = ["Metric", md.text(card.name)] + [md.text(ref.label) for ref in references]
    rows = []
    for metric in card.testbed.metrics:
        rows.append([metric_header(metric), mean_std(results.metrics.get(metric.key), metric.digits)]
                    + [mean_std(results.references[ref.key].get(metric.key), metric.digits) for ref in references])
    rows.append(["Card time"] + [seconds(results.time_s)] + ["—"] * len(references))
    rows.append(["Peak memory (process)"] + [megabytes(results.memory_mb)] + ["—"] * len(references))
    return md.table(columns, rows)


def paper_vs_testbed(card: Card) -> str:
    """What the paper reports beside what the testbed shows, so a reader sees how far the miniature reproduces it."""
    claim = card.spec.claim
    paper = (f"{md.text(claim.text)} ({md.text(claim.source)}; {md.text(claim.status)})" if claim
             else "no headline claim recorded yet")
    bar = card.bar
    if bar is None:
        testbed = "no quality bar declared for this testbed"
    else:
        verdict = {True: "met", False: "**missed**", None: "not yet measured"}[card.meets_bar()]
        values = []
        for condition in bar.conditions if card.is_attack and card.matrix is not None else ():
            metric = card.testbed.metric(condition.metric)
            cell = card.matrix.cell(card.name, condition.target)
            value = _value(cell.record["metrics"].get(metric.key)) if cell is not None else None
            values.append(f"{md.text(metric.label)} {mean_std(value, metric.digits)} against {md.text(condition.target)}")
        if card.results is not None:
            for condition in bar.conditions:
                metric = card.testbed.metric(condition.metric)
                values.append(f"{md.text(metric.label)} {mean_std(card.results.metrics.get(metric.key), metric.digits)}")
        testbed = f"Bar: {md.text(card.bar_text())} — {verdict}" + (f" ({'; '.join(values)})" if values else "")
        if bar.note:
            testbed += f". {md.text(bar.note)}"
        if bar.known_miss:
            testbed += f". Known miss: {md.text(bar.known_miss)}"
    return md.table(["What the paper reports", f"What {md.text(card.testbed.title)} shows"], [[paper, testbed]])


def fidelity_section(card: Card) -> list[str]:
    """Which official code the card follows, its deliberate deviations, and the testbed's adaptations of its config
    (official default, the value of the latest run, and why)."""
    spec = card.spec
    parts = ["**Fidelity.** Follows " + md.code(spec.follows) + "."]
    if spec.deviations:
        parts += ["", "Deviations from the official code:", ""]
        parts += [f"- {md.text(what)} *Why:* {md.text(why)}" for what, why in spec.deviations]
    adaptations = spec.testbeds[card.testbed.name].adaptations
    if adaptations:
        record = card.results.record if card.results is not None else (card.cells[0].record if card.cells else None)
        defaults = record["config_defaults"] if record is not None else {}
        rows = [[md.code(name), md.code(json.dumps(defaults[name])) if name in defaults else "—",
                 md.code(json.dumps(adaptation.value)), md.text(adaptation.why)]
                for name, adaptation in adaptations.items()]
        parts += ["", f"Testbed adaptations on {md.text(card.testbed.title)} (the config's defaults are the official "
                      "values; a real checkpoint runs with them):", "",
                  md.table(["Field", "Official", md.text(card.testbed.title), "Why (measured)"], rows)]
    return parts


def media_section(card: Card, url: Callable[[str], str]) -> list[str]:
    """The example files of the latest run (a testbed's `media`): an audio player or an image each, captioned."""
    parts = ["**Examples from this run** (files written beside metrics.json):", ""]
    for path, kind, caption in card.results.media:
        target = url(card_file_src(card.name, path.name))
        if kind == "audio":
            parts += [f'<audio class="atlas-media" controls preload="none" src="{target}"></audio> {md.text(caption)}',
                      ""]
        else:
            parts += [f"![{md.text(caption)}]({target}){{ .atlas-plot }}", ""]
    return parts


def card_header(card: Card, url: Callable[[str], str], card_pages: dict[str, str] | None = None) -> str:
    """Markdown of the box above a card's notebook. `url` maps a source path of the build (papers/<id>.md, the
    leaderboards, files beside the card) to a URL relative to the card's page; `card_pages` (name -> source path of
    the card pages in the build) lets an attack card's column link its targets."""
    if card.is_attack:
        return attack_header(card, url, card_pages or {})
    bed = card.testbed
    parts = card_box_opening(card, url)
    if card.results is None:
        expected = f"results/{bed.name}/{card.name}/metrics.json"
        parts += [f"**Not yet executed**: there is no {md.code(expected)} yet. Run the card to produce it:", ""]
    else:
        parts += [results_table(card), ""]
        parts += [f"**{provenance(card, capital=True)}** ({md.text(card.results.setting)}). Reproduce it with:", ""]
    parts += [md.code_block(card.command, "bash"), ""]
    if card.results is not None and card.results.media:
        parts += media_section(card, url) + [""]
    if card.matrix is not None:
        from .robustness import row_section

        parts += row_section(card, card.matrix, url)
    parts += fidelity_section(card) + [""]
    downloads = [f"[the notebook ({md.text(card.notebook.name)})]({card.notebook.name})"]
    figure = card.results.figure if card.results is not None else None
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


def card_box_opening(card: Card, url: Callable[[str], str]) -> list:
    """The first lines of every card's box: what it is, its testbed, its catalog entries, the paper's claim beside
    the testbed's bar."""
    bed = card.testbed
    where = f"[{md.text(bed.title)}]({url(LEADERBOARDS)}#{bed.name})"
    return ['<div class="atlas-card" markdown>', "",
            f"**Executable card {md.code(card.name)}** ({md.text(card.spec.kind)}, {md.text(card.spec.modality)}) · "
            f"testbed {where} · [all cards]({url(CARDS_INDEX)})", "",
            f"Catalog entry: {paper_refs(card, lambda paper_id: url(f'papers/{paper_id}.md'))}", "",
            paper_vs_testbed(card), ""]


def attack_header(card: Card, url: Callable[[str], str], card_pages: dict[str, str]) -> str:
    """The box above an attack card's notebook: its column of the robustness matrix instead of a results table, the
    prompts it found, and the cell files for download."""
    from .robustness import cell_src, column_section, prompts_section

    bed = card.testbed
    parts = card_box_opening(card, url)
    parts += column_section(card, card.matrix, url, card_pages)
    parts += [md.code_block(card.command, "bash"), ""]
    parts += prompts_section(card, card.matrix)
    parts += fidelity_section(card) + [""]
    downloads = [f"[the notebook ({md.text(card.notebook.name)})]({card.notebook.name})"]
    downloads += [f"[{md.text(cell.target)}.json]({url(cell_src(bed.name, card.name, cell.target))})"
                  for cell in card.cells]
    if card.has_outputs:
        below = "Below: the notebook as last executed (`make notebooks` re-executes every card)."
    else:
        below = ("Below: the notebook, saved without outputs: it has not been executed yet (`make notebooks` "
                 "executes every card).")
    parts += ["Download " + " · ".join(downloads) + ". " + below, "", "</div>", ""]
    return "\n".join(parts)


# --- cards index ------------------------------------------------------------------------------------------------------

def _relative(from_src: str, to_src: str) -> str:
    """The Markdown link from one docs source file to another (as pages.relative; mkdocs makes it a URL)."""
    return posixpath.relpath(to_src, posixpath.dirname(from_src) or ".")


def card_link(from_src: str, card: Card, card_pages: dict[str, str], long: bool = True) -> str:
    """The card linked to its page when the page is part of the build: its label and name, or just its name
    (`long=False`, for wide tables)."""
    if card.name not in card_pages:
        return md.code(card.name)
    target = _relative(from_src, card_pages[card.name])
    if long:
        return md.link(card.label, target) + f" {md.code(card.name)}"
    return f'[{md.text(card.name)}]({target} "{md.attribute_value(card.label)}")'


def run_cell(card: Card) -> str:
    """When and at which commit a card's results were produced, for a table column headed 'Reproduced on ...'."""
    if card.is_attack:
        if not card.cells:
            return "*not yet run*"
        dates = sorted({cell.date for cell in card.cells})
        commits = sorted({cell.commit for cell in card.cells if cell.commit})
        date = dates[0] if len(dates) == 1 else f"{dates[0]} – {dates[-1]}"
        return f"{md.text(date)} · " + (", ".join(short_commit(c) for c in commits) if commits else "unrecorded")
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
        parts += ["No cards yet: register one in `methods/registry.yaml`.", ""]
    for name, group in by_testbed(cards).items():
        bed = group[0].testbed
        parts += [f"## {md.text(bed.title)}", "", md.text(bed.description), ""]
        rows = [[card_link(src, card, card_pages), paper_refs(card, paper), headline(card), run_cell(card)]
                for card in group]
        parts += ['<div class="atlas-cards" markdown>', "",
                  md.table(["Card", "Catalog entry", "Headline metrics", f"Reproduced on {md.text(bed.title)}"],
                           rows), "", "</div>", ""]
    return "\n".join(parts)


# --- leaderboards -----------------------------------------------------------------------------------------------------

def _reference_rows(cards: list[Card], key: str) -> list[tuple[dict[str, Value | None], list[str]]]:
    """Distinct values of one reference (e.g. the base model) among the cards, with the cards they come from. The
    cards normally share one, measured with each run; differing ones (another concept, scale or seed) each get a
    row."""
    groups: list[tuple[dict[str, Value | None], list[str]]] = []
    for card in cards:
        if card.results is None or key not in card.results.references:
            continue
        values = card.results.references[key]
        rounded = {name: None if v is None else tuple(round(x, 6) if x is not None else None for x in v)
                   for name, v in values.items()}
        for known, names in groups:
            if {n: None if v is None else tuple(round(x, 6) if x is not None else None for x in v)
                    for n, v in known.items()} == rounded:
                names.append(card.name)
                break
        else:
            groups.append((values, [card.name]))
    return groups


def testbed_board(bed: TestbedSpec, cards: list[Card], card_pages: dict[str, str]) -> list[str]:
    src = LEADERBOARDS
    paper = lambda paper_id: _relative(src, f"papers/{paper_id}.md")  # noqa: E731
    metrics = [bed.metric(key) for key in bed.leaderboard]
    settings = {card.results.setting for card in cards if card.results is not None}
    setting_column = len(settings) > 1  # runs with another concept, scale or seed: say which row is which
    header = ["Card"] + [metric_header(m) for m in metrics] + ["Card time", "Peak memory", "Bar"]
    header += (["Setting"] if setting_column else []) + [f"Reproduced on {md.text(bed.title)}"]
    rows = []
    for card in cards:
        name = card_link(src, card, card_pages, long=False)
        if card.results is None:
            rows.append([name] + ["—"] * (len(metrics) + 3) + ([""] if setting_column else []) + [run_cell(card)])
            continue
        r = card.results
        rows.append([name] + [mean_std(r.metrics.get(m.key), m.digits) for m in metrics]
                    + [seconds(r.time_s), megabytes(r.memory_mb), bar_mark(card)]
                    + ([md.text(r.setting)] if setting_column else []) + [run_cell(card)])
    for reference in bed.references:
        groups = _reference_rows(cards, reference.key)
        for values, names in groups:
            label = reference.label if len(groups) == 1 else f"{reference.label}, run of {', '.join(names)}"
            rows.append([f"*{md.text(label)}*"] + [mean_std(values.get(m.key), m.digits) for m in metrics]
                        + ["—", "—", "—"] + ([""] if setting_column else []) + [""])
    notes = [f"- **{md.text(m.label)}** {m.arrow}: {md.text(m.meaning)}." for m in metrics]
    bars = [f"- {md.code(card.name)}: {md.text(card.bar_text())}" + (f" ({md.text(card.bar.note)})" if card.bar.note else "")
            + (f" Known miss: {md.text(card.bar.known_miss)}" if card.bar.known_miss else "")
            for card in cards if card.bar is not None]
    figure = []
    if bed.plot and any(card.results is not None for card in cards):
        x, y = bed.metric(bed.plot["x"]), bed.metric(bed.plot["y"])
        figure = [f"### {md.text(y.label)} against {md.text(x.label)}", "",
                  f"![{md.text(y.label)} against {md.text(x.label)} of each card, with the references]"
                  f"({_relative(src, plot_src(bed.name))}){{ .atlas-plot }}", "",
                  f"{md.text(x.label)} {x.arrow} and {md.text(y.label)} {y.arrow}; error bars are ± one standard "
                  "deviation over the forget requests where there are several.", ""]
    return [f"## {md.text(bed.title)} {{ #{bed.name} }}", "", md.text(bed.description), "",
            _reproduced_line(cards, bed.title), "",
            f'<div class="atlas-board atlas-board--{bed.name}" markdown>', "", md.table(header, rows), "", "</div>", "",
            *notes, "- **Card time** is the card's own step (mean over requests); **peak memory** is the whole run's "
            "process (peak RSS).", "- **Bar**: each card's quality bar on this testbed, shown beside the result and "
            "never used to hide one:", "", *bars, "", *_catalog_lines(cards, paper), "", *figure]


def _reproduced_line(cards: list[Card], title: str) -> str:
    """'Reproduced on <testbed> on <date> at commit `<short hash>`', or the span of dates and commits of the rows."""
    runs = [card.results for card in cards if card.results is not None]
    missing = len(cards) - len(runs)
    pending = f" {missing} card{'s' if missing != 1 else ''} not yet executed." if missing else ""
    if not runs:
        return f"**Not yet reproduced on {md.text(title)}**: no card of this testbed has been executed.{pending}"
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
    return (f"**Reproduced on {md.text(title)} {md.text(when)} {at}**{setting}; each row's date and commit are in its "
            f"last column.{pending}")


def _catalog_lines(cards: list[Card], paper: Callable[[str], str]) -> list[str]:
    lines = [f"- {md.code(card.name)}: {paper_refs(card, paper)}" for card in cards]
    return ["Catalog entries of the cards:", "", *lines] if lines else []


def leaderboards_page(cards: list[Card], card_pages: dict[str, str]) -> str:
    parts = ["---\nhide:\n  - navigation\n  - toc\n---\n", "# Leaderboards", "",
             "Every executable unlearn card of a testbed in one table, read from the results its notebook wrote "
             f"({md.code('results/<testbed>/<card>/metrics.json')}) when the site was built. Each row says when and at "
             "which commit it was reproduced; a result that misses its quality bar is shown as it is, flagged. "
             "Attack cards are compared on each testbed's robustness page (every attack against every unlearn "
             f"card). [All cards]({_relative(LEADERBOARDS, CARDS_INDEX)}).", ""]
    for name, group in by_testbed(cards).items():
        bed, unlearn = group[0].testbed, unlearn_cards(group)
        if unlearn:
            parts += testbed_board(bed, unlearn, card_pages)
        else:
            parts += [f"## {md.text(bed.title)} {{ #{bed.name} }}", "", md.text(bed.description), ""]
        parts += robustness_lines(bed, group, card_pages)
    return "\n".join(parts)


def robustness_lines(bed: TestbedSpec, group: list[Card], card_pages: dict[str, str]) -> list[str]:
    """The leaderboard's pointer to the testbed's robustness page and its attack cards."""
    from .robustness import robustness_src

    attacks = [card for card in group if card.is_attack]
    matrix = group[0].matrix
    if not attacks and matrix is None:
        return []
    src = LEADERBOARDS
    parts = [f"### Robustness on {md.text(bed.title)} {{ #{bed.name}-robustness }}", ""]
    if matrix is not None:
        parts += [f"The [robustness matrix of {md.text(bed.title)}]({_relative(src, robustness_src(bed.name))}) runs "
                  "every attack card against the base model and every unlearn card above. Attack cards:", ""]
    else:
        parts += ["No attack card has been run on this testbed yet (`python -m methods matrix --testbed "
                  f"{md.text(bed.name)}`). Attack cards:", ""]
    parts += [f"- {card_link(src, card, card_pages)}: {headline(card)}" + (f" ({run_cell(card)})" if card.executed else "")
              for card in attacks]
    return parts + [""]


def plots(cards: list[Card]) -> dict[str, bytes]:
    """src path -> SVG of each testbed's leaderboard plot (testbeds that declare one and have an executed card)."""
    out = {}
    for name, group in by_testbed(unlearn_cards(cards)).items():
        bed = group[0].testbed
        if bed.plot and any(card.results is not None for card in group):
            out[plot_src(name)] = scatter_svg(bed, group)
    return out


# --- leaderboard plot -------------------------------------------------------------------------------------------------

CARD_MARKERS = ["o", "D", "^", "v", "P", "X", "h", "<", ">"]  # with a colour each, so cards differ without colour
REFERENCE_MARKERS = ["s", "*", "p", "d"]


def scatter_svg(bed: TestbedSpec, cards: list[Card]) -> bytes:
    """The testbed's declared y metric against its x metric for every executed card, with the references; error
    bars are one standard deviation."""
    x_key, y_key = bed.plot["x"], bed.plot["y"]
    executed = [card for card in cards if card.results is not None]

    def point(axes, values: dict, marker: str, colour: str, size: float, label: str) -> None:
        x, y = values.get(x_key), values.get(y_key)
        if x is None or y is None:
            return
        axes.errorbar([x[0]], [y[0]], xerr=[x[1] or 0], yerr=[y[1] or 0], fmt="none", ecolor=colour, capsize=3,
                      alpha=0.8)
        axes.scatter([x[0]], [y[0]], marker=marker, color=colour, s=size, zorder=3, label=label)

    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(7, 4.6))
        for index, card in enumerate(executed):
            point(axes, card.results.metrics, CARD_MARKERS[index % len(CARD_MARKERS)], PALETTE[index % len(PALETTE)],
                  45, card.name)
        for index, reference in enumerate(bed.references):
            label = reference.label
            for values, _ in _reference_rows(executed, reference.key):
                marker = REFERENCE_MARKERS[index % len(REFERENCE_MARKERS)]
                point(axes, values, marker, ["#777777", "#000000", "#444444", "#aaaaaa"][index % 4],
                      130 if marker == "*" else 55, label)
                label = "_nolegend_"
        x, y = bed.metric(x_key), bed.metric(y_key)
        if all(card.results.metrics.get(k) is None or 0 <= card.results.metrics[k][0] <= 1
               for card in executed for k in (x_key, y_key)):
            axes.set_xlim(-0.02, 1.05)
            axes.set_ylim(-0.02, 1.05)
        axes.set_xlabel(f"{x.label} ({x.better} is better)")
        axes.set_ylabel(f"{y.label} ({y.better} is better)")
        axes.grid(alpha=0.3)
        if executed:
            axes.legend(frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
        plt.close(figure)
        return buffer.getvalue()
