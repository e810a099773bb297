"""Export the catalog as JSON (same field names as the YAML), BibTeX or CSV, and count it for `stats`."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from typing import Any

from .bibtex import catalog_to_bibtex
from .catalog import card_names

LINK_COLUMNS = ["arxiv", "openreview", "doi", "pdf", "url", "code", "project"]
LIST_COLUMNS = ["authors", "aliases", "stage", "modality", "model_family", "target", "benchmarks", "sources"]
CSV_COLUMNS = (["id", "title", "year", "month", "venue", "contribution", "stage", "modality", "model_family", "target",
                "authors"] + LINK_COLUMNS + ["benchmarks", "method_card", "sources", "aliases", "background", "summary",
                                             "notes"])


def to_json(papers: list[dict[str, Any]]) -> str:
    return json.dumps(papers, ensure_ascii=False, indent=1) + "\n"


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, with an apostrophe in front so that it shows as text;
    every other value unchanged."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def to_csv(papers: list[dict[str, Any]]) -> str:
    """One row per paper; list fields (and a list of executable cards) joined with '; ' (no value in the catalog
    contains that separator). A text cell starting with =, +, -, @, a tab or a carriage return gets a leading
    apostrophe, so that spreadsheets show it instead of running it as a formula."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for paper in papers:
        row: dict[str, Any] = {}
        for column in CSV_COLUMNS:
            if column in LINK_COLUMNS:
                row[column] = paper.get("links", {}).get(column, "")
            elif column in LIST_COLUMNS:
                row[column] = "; ".join(paper.get(column) or [])
            elif column == "method_card":  # one name or a list of names
                row[column] = "; ".join(card_names(paper.get(column)))
            else:
                value = paper.get(column, "")
                row[column] = "" if value is None else value
        writer.writerow({column: spreadsheet_safe(value) for column, value in row.items()})
    return buffer.getvalue()


EXPORTERS = {"json": to_json, "bib": catalog_to_bibtex, "csv": to_csv}


def stats(papers: list[dict[str, Any]]) -> dict[str, Counter]:
    counts: dict[str, Counter] = {name: Counter() for name in ("stage", "modality", "contribution", "year", "model_family")}
    for paper in papers:
        counts["contribution"][paper["contribution"]] += 1
        counts["year"][paper["year"]] += 1
        for name in ("stage", "modality", "model_family"):
            for value in paper.get(name) or ["(none)"]:
                counts[name][value] += 1
    return counts


def format_stats(papers: list[dict[str, Any]]) -> str:
    lines = [f"papers: {len(papers)}"]
    for name, counter in stats(papers).items():
        lines.append(f"\n{name}:")
        ordered = sorted(counter.items()) if name == "year" else counter.most_common()
        width = max((len(str(k)) for k in counter), default=0)
        lines += [f"  {str(key).ljust(width)}  {count:4d}" for key, count in ordered]
    return "\n".join(lines)
