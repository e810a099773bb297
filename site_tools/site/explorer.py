"""The explorer's data file: the fields its table and filters need, and the filter vocabularies.

Kept compact (no summaries or notes, empty fields left out, no indentation) so that 1,000 papers stay well under
1 MB. The explorer script reads it with fetch() and writes every string with textContent.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from site_tools.catalog import card_names

from .atlas import LABEL_FIELDS, SOURCE_FIELD, Atlas, labels_of, venue_series

FORMAT_VERSION = 2  # 2: `card` is a list of card names (`sources` and its facet were added later, compatibly)


def explorer_paper(paper: dict[str, Any]) -> dict[str, Any]:
    """One row of the explorer: what its columns, filters and free-text search use."""
    row: dict[str, Any] = {"id": paper["id"], "title": paper["title"], "year": paper["year"]}
    if paper.get("month"):
        row["month"] = paper["month"]
    if paper.get("aliases"):
        row["aliases"] = paper["aliases"]
    if paper.get("authors"):
        row["authors"] = paper["authors"]
    row["venue"] = paper["venue"]
    series = venue_series(paper["venue"])
    if series != paper["venue"]:
        row["venue_series"] = series
    for field in LABEL_FIELDS:
        values = labels_of(paper, field)
        if values:
            row[field] = paper[field]
    code = paper.get("links", {}).get("code")
    if code:
        row["code"] = code
    cards = card_names(paper.get("method_card"))
    if cards:
        row["card"] = cards  # always a list: method_card is one name or several
    row[SOURCE_FIELD] = list(paper.get(SOURCE_FIELD) or [])
    return row


def facets(atlas: Atlas) -> list[dict[str, Any]]:
    """The filters in display order: label vocabularies from the schema, then years and venues found in the data,
    then the source lists (the schema's `sources` vocabulary: the three lists and `contributed`).

    Each value is [value, meaning]; meanings are the schema's x-enum-descriptions (empty for years and venues).
    """
    result = []
    for field in LABEL_FIELDS:
        vocabulary = atlas.vocabularies[field]
        result.append({"key": field, "label": vocabulary.title,
                       "values": [[v, vocabulary.meanings.get(v, "")] for v in vocabulary.values]})
    years = sorted({p["year"] for p in atlas.papers}, reverse=True)
    result.append({"key": "year", "label": "Year", "values": [[str(y), ""] for y in years]})
    venues = Counter(venue_series(p["venue"]) for p in atlas.papers)
    ordered = sorted(venues, key=lambda v: (-venues[v], v.lower()))
    result.append({"key": "venue", "label": "Venue", "values": [[v, ""] for v in ordered]})
    sources = atlas.vocabularies[SOURCE_FIELD]
    result.append({"key": SOURCE_FIELD, "label": "Source list",
                   "values": [[v, sources.meanings.get(v, "")] for v in sources.values]})
    return result


def explorer_data(atlas: Atlas, paper_url: str, card_urls: dict[str, str]) -> dict[str, Any]:
    """The whole data file.

    `paper_url` is the URL of a paper page relative to the site root with ``{id}`` for the id (``papers/{id}/``);
    `card_urls` maps the names of published executable cards to their URL relative to the site root; a paper's
    `card` is the list of its card names.
    """
    return {"version": FORMAT_VERSION, "paper_url": paper_url, "cards": card_urls, "facets": facets(atlas),
            "papers": [explorer_paper(p) for p in atlas.papers]}


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
