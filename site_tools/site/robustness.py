"""The robustness matrix in the site: one page per testbed that has matrix results, and the row / column of it that
each card page shows. Generic over the registry: no testbed, card or attack is named here.

The matrix is read from `results/<testbed>/matrix/<attack>/<target>.json` (results schema v1, kind "attack"; target
`base` is the unedited model), listed by `methods.matrix.matrix_results`. Each file is one cell: an attack card run
against one target. Its metrics and references are the testbed's attack metrics (its `attacks:` block: the `cell`
metric, e.g. the post-attack ASR, and the pre-attack reference); its `details.prompts` are the adversarial prompts the
attack found (None for attacks that return embeddings).

- rows: the unedited base model first, then every unlearn card of the testbed (registry order), attacked or not;
- columns: every attack card of the testbed with at least one cell (registry order);
- a missing cell is shown as "not run", never guessed;
- each attack card's bar is evaluated per target (`Bar.on_target`) from the registry as it is now, and its
  `known_miss` is shown beside it.

A cell file that breaks the schema, holds another attack or testbed than its path says, or names an attack or target
the registry does not have on the testbed stops the build with a message naming the file.
"""

from __future__ import annotations

import html
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from methods.core.results import ResultsError, read_results
from methods.matrix import BASE, matrix_results
from methods.registry import Bar, Registry, TestbedSpec

from . import markup as md
from .cards import (LEADERBOARDS, CardError, Value, _value, mean_std, metric_header, seconds, short_commit)

BASE_LABEL = "Base model (no unlearning)"
PROMPTS_SHOWN = 24  # prompts per target listed on an attack card's page; the cell file has them all


def robustness_src(testbed: str) -> str:
    """The source path of a testbed's robustness page (URL robustness/<testbed>/)."""
    return f"robustness/{testbed}.md"


def cell_src(testbed: str, attack: str, target: str) -> str:
    """Where a cell's results file is published in the build, for download."""
    return f"matrix/{testbed}/{attack}/{target}.json"


def _relative(from_src: str, to_src: str) -> str:
    return posixpath.relpath(to_src, posixpath.dirname(from_src) or ".")


# --- data -------------------------------------------------------------------------------------------------------------

@dataclass
class Cell:
    """One (attack, target) results file as the pages show it."""

    attack: str
    target: str
    path: Path
    record: dict
    post: Value | None  # the testbed's cell metric after the attack (e.g. post-attack ASR)
    pre: Value | None  # the same metric of the first attack reference (e.g. pre-attack ASR)
    queries: Value | None
    time_s: Value | None  # the attack's own time
    date: str
    commit: str | None
    dirty: bool | None

    @property
    def prompts(self) -> list[str] | None:
        prompts = (self.record.get("details") or {}).get("prompts")
        return [str(p) for p in prompts] if isinstance(prompts, list) else None


@dataclass
class Matrix:
    """The robustness matrix of one testbed."""

    testbed: TestbedSpec
    registry: Registry = field(repr=False)
    attacks: list[str]  # columns: attack cards with at least one cell, registry order
    targets: list[str]  # rows: "base", then every unlearn card of the testbed
    cells: dict[tuple[str, str], Cell]
    pending: list[str] = field(default_factory=list)  # attack cards of the testbed without any cell yet

    def cell(self, attack: str, target: str) -> Cell | None:
        return self.cells.get((attack, target))

    def column(self, attack: str) -> list[tuple[str, Cell | None]]:
        return [(target, self.cell(attack, target)) for target in self.targets]

    def row(self, target: str) -> list[tuple[str, Cell | None]]:
        return [(attack, self.cell(attack, target)) for attack in self.attacks]

    @property
    def cell_metric(self):
        return self.testbed.metric(self.testbed.attacks.cell)

    @property
    def reference(self):
        """The attack reference shown beside each cell (the pre-attack value), if the testbed declares one."""
        references = self.testbed.attacks.references
        return references[0] if references else None

    def bar(self, attack: str, target: str) -> Bar | None:
        """The attack card's bar restricted to one target, or None where it declares no condition there."""
        bar = self.registry.cards[attack].testbeds[self.testbed.name].bar
        if bar is None:
            return None
        on = bar.on_target(target)
        return on if on.conditions else None

    def verdict(self, attack: str, target: str) -> bool | None:
        bar, cell = self.bar(attack, target), self.cell(attack, target)
        if bar is None or cell is None:
            return None
        return bar.check(cell.record["metrics"], cell.record["references"], lambda _: None)

    def labels(self) -> dict[str, str]:
        return {metric.key: metric.label for metric in self.testbed.attacks.metrics}


def load_cell(path: Path, attack: str, target: str, testbed: TestbedSpec) -> Cell:
    try:
        record = read_results(path)
    except ResultsError as error:
        raise CardError(str(error)) from None
    if record["kind"] != "attack" or record["card"] != attack or record["testbed"] != testbed.name:
        raise CardError(f"{path}: holds the {record['kind']} card {record['card']!r} on {record['testbed']!r}, "
                        f"expected the attack card {attack!r} on {testbed.name!r}; re-run the matrix or move the file")
    recorded = (record.get("details") or {}).get("target")
    if recorded is not None and recorded != target:
        raise CardError(f"{path}: its details.target is {recorded!r}, but its name says {target!r}; re-run the matrix")
    attacks = testbed.attacks
    reference = attacks.references[0].key if attacks.references else None
    return Cell(attack, target, path, record,
                post=_value(record["metrics"].get(attacks.cell)),
                pre=_value(record["references"].get(reference, {}).get(attacks.cell)) if reference else None,
                queries=_value(record["metrics"].get("queries")),
                time_s=_value(record["timings"].get("method_s")),
                date=record["date"][:10], commit=record["git"]["commit"], dirty=record["git"]["dirty"])


def load_matrices(registry: Registry, results_root: Path) -> dict[str, Matrix]:
    """testbed name -> its matrix, for every testbed that scores attack cards and has at least one cell."""
    matrices = {}
    for name, testbed in registry.testbeds.items():
        files = matrix_results(name, results_root)
        if testbed.attacks is None or not files:
            if files:
                path = next(iter(files.values()))
                raise CardError(f"{path}: {name} declares no `attacks:` block, so it has no robustness matrix")
            continue
        attack_cards = [card.name for card in registry.cards_on(name, "attack")]
        targets = [BASE] + [card.name for card in registry.cards_on(name, "unlearn")]
        cells = {}
        for (attack, target), path in files.items():
            if attack not in attack_cards:
                raise CardError(f"{path}: no attack card {attack!r} on {name} in {registry.source.name} "
                                f"(attack cards: {', '.join(attack_cards) or 'none'}); remove the folder or register it")
            if target not in targets:
                raise CardError(f"{path}: {target!r} is neither {BASE!r} nor an unlearn card on {name}; remove the "
                                "file or register the card")
            cells[(attack, target)] = load_cell(path, attack, target, testbed)
        attacks = [attack for attack in attack_cards if any(key[0] == attack for key in cells)]
        matrices[name] = Matrix(testbed, registry, attacks, targets, cells,
                                [attack for attack in attack_cards if attack not in attacks])
    return matrices


# --- formatting -------------------------------------------------------------------------------------------------------

def when(cells: list[Cell]) -> str:
    """'on <date> at commit `abc1234`', or the range of dates and the commits when the cells differ (Markdown)."""
    if not cells:
        return "not yet computed"
    dates = sorted({cell.date for cell in cells})
    commits = sorted({cell.commit for cell in cells if cell.commit})
    date = f"on {md.text(dates[0])}" if len(dates) == 1 else f"between {md.text(dates[0])} and {md.text(dates[-1])}"
    if not commits:
        at = "at an unrecorded commit"
    elif len(commits) == 1:
        at = f"at commit {short_commit(commits[0])}"
    else:
        at = "at commits " + ", ".join(short_commit(commit) for commit in commits)
        if any(cell.commit is None for cell in cells):
            at += " (some unrecorded)"
    if any(cell.dirty for cell in cells):
        at += " (with uncommitted changes)"
    return f"{date} {at}"


def verdict_mark(matrix: Matrix, attack: str, target: str) -> str:
    """The attack's bar on one target as a short cell: 'met', 'missed' (flagged), 'pending' or '—' (no bar there)."""
    bar = matrix.bar(attack, target)
    if bar is None:
        return "—"
    known = f". Known miss: {bar.known_miss}" if bar.known_miss else ""
    title = html.escape(" ".join(f"{attack}'s bar: {bar.text(matrix.labels())}{known}".split()))
    verdict = matrix.verdict(attack, target)
    if verdict is None:
        return f'<span class="atlas-bar" title="{title}">not yet measured</span>'
    state = "met" if verdict else "missed"
    return f'<span class="atlas-bar atlas-bar--{state}" title="{title}">{state}</span>'


def cell_text(matrix: Matrix, cell: Cell | None) -> str:
    """'0.950 ± 0.020 (pre 0.100 ± 0.000)' in Markdown, or 'not run'."""
    if cell is None:
        return "*not run*"
    digits = matrix.cell_metric.digits
    text = mean_std(cell.post, digits)
    if matrix.reference is not None:
        text += f" (pre {mean_std(cell.pre, digits)})"
    return text


def target_label(target: str) -> str:
    return BASE_LABEL if target == BASE else target


def card_ref(from_src: str, name: str, card_pages: dict[str, str]) -> str:
    """A card's name linked to its page when the page is in the build."""
    if name == BASE:
        return f"*{md.text(BASE_LABEL)}*"
    if name in card_pages:
        return f"[{md.text(name)}]({_relative(from_src, card_pages[name])})"
    return md.code(name)


# Sequential scale of the heatmap: light for low values, dark red for high ones (an attack that recovers the concept).
_LOW, _HIGH = (255, 245, 240), (165, 15, 21)


def _colour(value: float, low: float, high: float) -> tuple[str, str]:
    """(background, text colour) of a heatmap cell."""
    share = 0.0 if high <= low else min(1.0, max(0.0, (value - low) / (high - low)))
    rgb = [round(a + (b - a) * share) for a, b in zip(_LOW, _HIGH)]
    return "#{:02x}{:02x}{:02x}".format(*rgb), ("#ffffff" if share > 0.55 else "#1a1a1a")


def _scale(matrix: Matrix) -> tuple[float, float]:
    values = [cell.post[0] for cell in matrix.cells.values() if cell.post is not None]
    if values and all(0.0 <= value <= 1.0 for value in values):
        return 0.0, 1.0
    return (min(values), max(values)) if values else (0.0, 1.0)


def heatmap(matrix: Matrix) -> str:
    """An HTML table coloured by each cell's value (no script, no remote resource): rows are the targets, columns the
    attacks; each cell shows the value after the attack and, smaller, the reference before it."""
    e = html.escape
    metric, reference = matrix.cell_metric, matrix.reference
    low, high = _scale(matrix)
    head = "".join(f'<th scope="col" data-attack="{e(attack)}">{e(attack)}</th>' for attack in matrix.attacks)
    rows = []
    for target in matrix.targets:
        cells = []
        for attack, cell in matrix.row(target):
            where = f'data-attack="{e(attack)}" data-target="{e(target)}"'
            if cell is None or cell.post is None:
                state = "not run" if cell is None else f"no {metric.label} in its file"
                cells.append(f'<td class="atlas-heatmap__cell atlas-heatmap__cell--missing" {where} '
                             f'title="{e(attack)} against {e(target)}: {e(state)}">{"not run" if cell is None else "—"}'
                             "</td>")
                continue
            background, colour = _colour(cell.post[0], low, high)
            pre = (f'<span class="atlas-heatmap__pre">pre {e(mean_std(cell.pre, metric.digits))}</span>'
                   if reference is not None else "")
            title = f"{attack} against {target}: {metric.label} {mean_std(cell.post, metric.digits)}"
            if reference is not None:
                title += f"; {reference.label} {mean_std(cell.pre, metric.digits)}"
            cells.append(f'<td class="atlas-heatmap__cell" {where} data-value="{cell.post[0]:.6g}" '
                         f'style="background:{background};color:{colour}" title="{e(title)}">'
                         f'<span class="atlas-heatmap__value">{e(f"{cell.post[0]:.{metric.digits}f}")}</span>'
                         f" {pre}</td>")
        rows.append(f'<tr data-target="{e(target)}"><th scope="row">{e(target_label(target))}</th>{"".join(cells)}</tr>')
    low_colour, _ = _colour(low, low, high)
    high_colour, _ = _colour(high, low, high)
    legend = (f'<div class="atlas-heatmap__legend"><span>{e(f"{low:g}")}</span>'
              f'<span class="atlas-heatmap__ramp" style="background:linear-gradient(to right,{low_colour},{high_colour})">'
              f'</span><span>{e(f"{high:g}")}</span> <span>{e(metric.label)} ({e(metric.better)} means the attack '
              "recovered more)</span></div>")
    caption = (f"{e(metric.label)} of each attack (column) against each target (row)"
               + (f"; smaller: {e(reference.label)}" if reference is not None else ""))
    return "\n".join([
        '<div class="atlas-heatmap">',
        f'<table class="atlas-heatmap__table"><caption>{caption}</caption>',
        f'<thead><tr><th scope="col">Target</th>{head}</tr></thead>',
        "<tbody>", *rows, "</tbody></table>", legend, "</div>"])


# --- the robustness page ----------------------------------------------------------------------------------------------

def matrix_table(matrix: Matrix, from_src: str, card_pages: dict[str, str]) -> str:
    """Rows: targets; columns: attacks; each cell the value after the attack (mean ± std) with the one before, and the
    attack's bar verdict on that target where it declares one."""
    header = ["Target"] + [card_ref(from_src, attack, card_pages) for attack in matrix.attacks]
    rows = []
    for target in matrix.targets:
        row = [card_ref(from_src, target, card_pages)]
        for attack, cell in matrix.row(target):
            text = cell_text(matrix, cell)
            if matrix.bar(attack, target) is not None:
                text += " " + verdict_mark(matrix, attack, target)
            row.append(text)
        rows.append(row)
    return md.table(header, rows)


def bars_lines(matrix: Matrix, attacks: list[str]) -> list[str]:
    """Each attack card's bar, condition by target with its verdict, its note and its known miss (never hidden)."""
    labels = matrix.labels()
    lines = []
    for attack in attacks:
        bar = matrix.registry.cards[attack].testbeds[matrix.testbed.name].bar
        if bar is None:
            lines.append(f"- {md.code(attack)}: no bar declared on {md.text(matrix.testbed.title)}.")
            continue
        targets = list(dict.fromkeys(c.target for c in bar.conditions if c.target is not None))
        parts = []
        for target in targets:
            on = bar.on_target(target)
            parts.append(f"against {md.code(target)}: {md.text(on.text(labels).replace(f' against {target}', ''))} "
                         f"— {verdict_mark(matrix, attack, target)}")
        line = f"- {md.code(attack)}: " + "; ".join(parts) + "."
        if bar.note:
            line += f" {md.text(bar.note)}"
        if bar.known_miss:
            line += f" **Known miss:** {md.text(bar.known_miss)}"
        lines.append(line)
    return lines


def metric_lines(matrix: Matrix) -> list[str]:
    attacks = matrix.testbed.attacks
    lines = [f"- **{md.text(m.label)}** {m.arrow} ({md.code(m.key)}): {md.text(m.meaning)}." for m in attacks.metrics]
    lines += [f"- **{md.text(r.label)}** ({md.code(r.key)}): {md.text(r.meaning)}." for r in attacks.references]
    return lines


def downloads_lines(matrix: Matrix, from_src: str) -> list[str]:
    lines = []
    for attack in matrix.attacks:
        links = [f"[{md.text(target)}]({_relative(from_src, cell_src(matrix.testbed.name, attack, target))})"
                 for target, cell in matrix.column(attack) if cell is not None]
        lines.append(f"- {md.code(attack)}: " + " · ".join(links))
    return lines


def robustness_page(matrix: Matrix, card_pages: dict[str, str]) -> str:
    bed, src = matrix.testbed, robustness_src(matrix.testbed.name)
    metric, reference = matrix.cell_metric, matrix.reference
    cells = list(matrix.cells.values())
    missing = len(matrix.attacks) * len(matrix.targets) - len(cells)
    command = f"python -m methods matrix --testbed {bed.name}"
    # a data page that names every card many times: weighted like the card pages in the site search, so that a
    # search for a method finds its paper first
    parts = ["---\nhide:\n  - navigation\nsearch:\n  boost: 0.5\n---\n", f"# Robustness on {md.text(bed.title)}", "",
             f"Every attack card of {md.text(bed.title)} (a column each) against the unedited base model and every "
             f"unlearn card (a row each), read from {md.code(f'results/{bed.name}/matrix/<attack>/<target>.json')} "
             f"when the site was built. A cell is the attack's **{md.text(metric.label)}**"
             + (f" beside the **{md.text(reference.label)}**" if reference is not None else "")
             + f": how much of the erased concept the attack brings back. The [leaderboards]"
             f"({_relative(src, LEADERBOARDS)}#{bed.name}) compare the unlearn cards without attacks.", "",
             f"**Computed {when(cells)}** ({len(cells)} cell{'s' if len(cells) != 1 else ''}"
             + (f"; {missing} not run yet" if missing else "") + "). Reproduce it with:", "",
             md.code_block(command, "bash"), "",
             "## Heatmap", "", heatmap(matrix), "",
             "## Table", "",
             f"{md.text(metric.label)} mean ± std over the testbed's sampling seeds"
             + (f", with the {md.text(reference.label)} in brackets" if reference is not None else "")
             + "; where an attack card declares a bar on a target, its verdict follows the numbers.", "",
             '<div class="atlas-board atlas-matrix" markdown>', "", matrix_table(matrix, src, card_pages), "",
             "</div>", "", *metric_lines(matrix), ""]
    if matrix.pending:
        parts += ["Attack cards of this testbed not run yet: " + ", ".join(card_ref(src, a, card_pages)
                                                                             for a in matrix.pending) + ".", ""]
    parts += ["## Bars", "", "Each attack card's quality bar, condition by target; a miss is shown as it is, with the "
              "card's explanation when it declares one:", "", *bars_lines(matrix, matrix.attacks), ""]
    parts += ["## Cells", "", "Each cell's results file (results schema v1: config, per-seed values, the prompts the "
              "attack found, its date and commit):", "", *downloads_lines(matrix, src), ""]
    return "\n".join(parts)


# --- card pages -------------------------------------------------------------------------------------------------------

def row_section(card, matrix: Matrix, url: Callable[[str], str]) -> list[str]:
    """An unlearn card's row: its value under each attack, with the value before it and the attack's bar there."""
    page = f"[robustness matrix]({url(robustness_src(matrix.testbed.name))})"
    cells = [cell for _, cell in matrix.row(card.name) if cell is not None]
    if not cells:
        return [f"**Robustness.** No attack card has been run against {md.code(card.name)} yet (the {page} of "
                f"{md.text(matrix.testbed.title)} lists the attacks).", ""]
    metric, reference = matrix.cell_metric, matrix.reference
    header = ["Attack", metric_header(metric)] + ([md.text(reference.label)] if reference else []) + [
        "Attack's bar here", "Computed"]
    rows = []
    for attack, cell in matrix.row(card.name):
        if cell is None:
            rows.append([md.code(attack), "*not run*"] + (["—"] if reference else []) + ["—", "—"])
            continue
        rows.append([md.code(attack), mean_std(cell.post, metric.digits)]
                    + ([mean_std(cell.pre, metric.digits)] if reference else [])
                    + [verdict_mark(matrix, attack, card.name), f"{md.text(cell.date)} · {short_commit(cell.commit)}"])
    return [f"**Robustness** (this card's row of the {page}): each attack card run against it.", "",
            md.table(header, rows), ""]


def column_section(card, matrix: Matrix | None, url: Callable[[str], str], card_pages: dict[str, str]) -> list[str]:
    """An attack card's column: every target, before and after the attack, its cost and the bar there."""
    bed = card.testbed
    cells = [cell for _, cell in matrix.column(card.name) if cell is not None] if matrix is not None else []
    if not cells:
        expected = f"results/{bed.name}/matrix/{card.name}/<target>.json"
        return [f"**Not yet run**: there is no {md.code(expected)} yet. Run the attack against every unlearn card "
                "of the testbed to produce them:", ""]
    metric, reference = matrix.cell_metric, matrix.reference
    queries = next((m for m in bed.attacks.metrics if m.key == "queries"), None)
    header = ["Target"] + ([md.text(reference.label)] if reference else []) + [metric_header(metric)]
    header += ([metric_header(queries)] if queries else []) + ["Attack time", "Bar", "Cell"]
    rows = []
    for target, cell in matrix.column(card.name):
        name = (f"*{md.text(BASE_LABEL)}*" if target == BASE else
                (f"[{md.text(target)}]({url(card_pages[target])})" if target in card_pages else md.code(target)))
        if cell is None:
            rows.append([name] + (["—"] if reference else []) + ["*not run*"] + (["—"] if queries else [])
                        + ["—", verdict_mark(matrix, card.name, target), "—"])
            continue
        rows.append([name] + ([mean_std(cell.pre, metric.digits)] if reference else [])
                    + [mean_std(cell.post, metric.digits)]
                    + ([mean_std(cell.queries, queries.digits)] if queries else [])
                    + [seconds(cell.time_s), verdict_mark(matrix, card.name, target),
                       f"[{md.text(target)}.json]({url(cell_src(bed.name, card.name, target))})"])
    page = f"[robustness matrix]({url(robustness_src(bed.name))})"
    return [f"**This attack against every target** (its column of the {page}; mean ± std over the testbed's "
            "sampling seeds):", "", md.table(header, rows), "",
            f"**Computed {when(cells)}** ({md.text(cells[0].record['scale'])} scale, seed "
            f"{md.text(cells[0].record['seed'])}). Reproduce it with:", ""]


def prompts_section(card, matrix: Matrix | None) -> list[str]:
    """The adversarial prompts the attack saved against each target, as text to copy and reuse."""
    cells = [cell for _, cell in matrix.column(card.name) if cell is not None] if matrix is not None else []
    if not cells:
        return []
    parts = ["**Adversarial prompts** the attack found (each cell file's `details.prompts`), for reuse:", ""]
    for cell in cells:
        prompts = cell.prompts
        who = BASE_LABEL.lower() if cell.target == BASE else cell.target
        if prompts is None:
            parts += [f"- against {md.text(who)}: none as text (this attack returned embeddings; the cell file "
                      "records what it learned)", ""]
            continue
        shown = prompts[:PROMPTS_SHOWN]
        more = f"; the first {len(shown)} shown, all in the cell file" if len(prompts) > len(shown) else ""
        parts += [f"- against {md.text(who)} ({len(prompts)} prompt{'s' if len(prompts) != 1 else ''}{more}):", ""]
        parts += ["    " + line for line in md.code_block("\n".join(shown) or "(empty)", "text").splitlines()] + [""]
    return parts


def card_headline(card, matrix: Matrix | None) -> str:
    """An attack card's headline for the cards index: its value against the base model and the span over the
    unlearn cards."""
    cells = [cell for _, cell in matrix.column(card.name) if cell is not None and cell.post] if matrix else []
    if not cells:
        return "*not yet run*"
    metric = matrix.cell_metric
    parts = []
    base = matrix.cell(card.name, BASE)
    if base is not None and base.post is not None:
        parts.append(f"{md.text(metric.label)} {mean_std((base.post[0], None), metric.digits)} against base")
    others = [cell.post[0] for cell in cells if cell.target != BASE]
    if others:
        low, high = min(others), max(others)
        span = f"{low:.{metric.digits}f}" if low == high else f"{low:.{metric.digits}f}–{high:.{metric.digits}f}"
        parts.append(f"{span} against {len(others)} unlearn card{'s' if len(others) != 1 else ''}")
    return " · ".join(parts)


def cells_of(card, matrix: Matrix | None) -> list[Cell]:
    return [cell for _, cell in matrix.column(card.name) if cell is not None] if matrix is not None else []
