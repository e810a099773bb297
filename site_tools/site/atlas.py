"""The catalog as the site sees it: papers plus the indexes the pages need (benchmarks, related work, labels).

Everything here is derived from the YAML entries and the schema; nothing is hand-maintained.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from site_tools.catalog import load_schema

# Label fields shown as badges and offered as explorer filters, in reading order.
LABEL_FIELDS = ("contribution", "stage", "modality", "model_family", "target")
# The field naming the curated lists an entry comes from; CONTRIBUTED marks an entry added beyond them.
SOURCE_FIELD = "sources"
CONTRIBUTED = "contributed"
BENCHMARK_CONTRIBUTIONS = ("benchmark", "dataset")
# Contributions whose pages list attacks on the same model family and target, and the attacks that list them back.
DEFENDED_CONTRIBUTIONS = ("method", "defense")
ATTACK_CONTRIBUTION = "attack"

MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
               "November", "December"]

_YEAR = re.compile(r"\b(?:19|20)\d{2}\b")


def venue_series(venue: str) -> str:
    """The venue without its year, for grouping: 'CVPR 2024' -> 'CVPR', 'NeurIPS 2023 Workshop' -> 'NeurIPS Workshop',
    'ACM Transactions on Graphics (SIGGRAPH Asia 2023)' -> 'ACM Transactions on Graphics (SIGGRAPH Asia)'. Brackets
    left empty by the year go, and no space is left inside a bracket or before a comma."""
    text = _YEAR.sub(" ", venue)
    text = re.sub(r"[(\[]\s*[,;:]?\s*[)\]]", " ", text)  # '(2024)' -> ''
    text = re.sub(r"([(\[])\s+", r"\1", text)
    text = re.sub(r"\s+([)\],;:])", r"\1", text)
    text = re.sub(r"[,;:]+(?=[)\]])", "", text)  # '(Asia, 2023)' -> '(Asia)'
    text = " ".join(text.split()).strip(" ,;:-–")
    return text or venue


def sort_key_recent(paper: dict[str, Any]) -> tuple:
    """Newest first, then by title: the order of every paper list on the site."""
    return (-paper["year"], -(paper.get("month") or 0), paper["title"].lower(), paper["id"])


@dataclass(frozen=True)
class Vocabulary:
    """One labelled field of the schema: its title, description, and values with their meanings, in schema order."""

    name: str
    title: str
    description: str
    values: tuple[str, ...]
    meanings: dict[str, str] = field(default_factory=dict)


def vocabularies(schema: dict[str, Any] | None = None) -> dict[str, Vocabulary]:
    """The controlled vocabularies of the label fields and of `sources`, read from the schema (enum +
    x-enum-descriptions)."""
    properties = (schema or load_schema())["properties"]
    result = {}
    for name in LABEL_FIELDS + (SOURCE_FIELD,):
        spec = properties[name]
        values_spec = spec.get("items", spec)
        result[name] = Vocabulary(name=name, title=spec.get("title", name), description=spec.get("description", ""),
                                  values=tuple(values_spec["enum"]),
                                  meanings=dict(values_spec.get("x-enum-descriptions", {})))
    return result


def labels_of(paper: dict[str, Any], name: str) -> list[str]:
    """The values of a label field as a list (contribution is a single string in the catalog)."""
    value = paper.get(name)
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class Atlas:
    """Papers sorted by id, with lookups for benchmarks and related entries."""

    def __init__(self, papers: list[dict[str, Any]], schema: dict[str, Any] | None = None):
        self.papers = sorted(papers, key=lambda p: p["id"])
        self.by_id = {paper["id"]: paper for paper in self.papers}
        self.vocabularies = vocabularies(schema)

    @cached_property
    def evaluated_on(self) -> dict[str, list[dict[str, Any]]]:
        """Benchmark id -> the papers that list it under `benchmarks`, newest first."""
        users: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for paper in self.papers:
            for benchmark in paper.get("benchmarks") or []:
                users[benchmark].append(paper)
        return {key: sorted(value, key=sort_key_recent) for key, value in users.items()}

    @cached_property
    def benchmarks(self) -> list[dict[str, Any]]:
        """Benchmark and dataset entries plus any entry someone evaluates on; most used first."""
        ids = {p["id"] for p in self.papers if p["contribution"] in BENCHMARK_CONTRIBUTIONS} | set(self.evaluated_on)
        entries = [self.by_id[i] for i in ids if i in self.by_id]
        return sorted(entries, key=lambda p: (-len(self.evaluated_on.get(p["id"], [])),) + sort_key_recent(p))

    def same_benchmark(self, paper: dict[str, Any]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """For each benchmark the paper uses: the other papers evaluated on it."""
        groups = []
        for benchmark_id in paper.get("benchmarks") or []:
            others = [p for p in self.evaluated_on.get(benchmark_id, []) if p["id"] != paper["id"]]
            if benchmark_id in self.by_id and others:
                groups.append((self.by_id[benchmark_id], others))
        return groups

    @cached_property
    def _by_contribution(self) -> dict[str, list[dict[str, Any]]]:
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for paper in self.papers:
            groups[paper["contribution"]].append(paper)
        return groups

    def counterparts(self, paper: dict[str, Any]) -> list[dict[str, Any]]:
        """Attacks on a method's (or defence's) model family and target; for an attack, the methods and defences.

        Both must share at least one model family and one target. Ranked by how many labels they share, then by date.
        """
        if paper["contribution"] in DEFENDED_CONTRIBUTIONS:
            pool = self._by_contribution.get(ATTACK_CONTRIBUTION, [])
        elif paper["contribution"] == ATTACK_CONTRIBUTION:
            pool = [p for c in DEFENDED_CONTRIBUTIONS for p in self._by_contribution.get(c, [])]
        else:
            return []
        families, targets = set(labels_of(paper, "model_family")), set(labels_of(paper, "target"))
        scored = []
        for other in pool:
            shared_families = families & set(labels_of(other, "model_family"))
            shared_targets = targets & set(labels_of(other, "target"))
            if shared_families and shared_targets and other["id"] != paper["id"]:
                scored.append((len(shared_families) + len(shared_targets), other))
        scored.sort(key=lambda item: (-item[0],) + sort_key_recent(item[1]))
        return [other for _, other in scored]

    @cached_property
    def source_lists(self) -> tuple[str, ...]:
        """The curated source lists, in schema order: every `sources` value but CONTRIBUTED."""
        return tuple(v for v in self.vocabularies[SOURCE_FIELD].values if v != CONTRIBUTED)

    def from_source_lists(self) -> list[dict[str, Any]]:
        """Entries that at least one of the source lists contains."""
        lists = set(self.source_lists)
        return [p for p in self.papers if lists & set(p.get(SOURCE_FIELD) or [])]

    def beyond_source_lists(self) -> list[dict[str, Any]]:
        """Entries added beyond the source lists (no list contains them; `sources: [contributed]`)."""
        lists = set(self.source_lists)
        return [p for p in self.papers if not lists & set(p.get(SOURCE_FIELD) or [])]

    def with_label(self, name: str, value: str) -> list[dict[str, Any]]:
        return sorted((p for p in self.papers if value in labels_of(p, name)), key=sort_key_recent)

    def label_counts(self, name: str) -> Counter:
        return Counter(value for paper in self.papers for value in labels_of(paper, name))

    def matrix(self, rows: str, columns: str) -> dict[tuple[str, str], int]:
        """Papers per (row value, column value); a paper with two values in a field counts in both."""
        counts: Counter = Counter()
        for paper in self.papers:
            for row in labels_of(paper, rows):
                for column in labels_of(paper, columns):
                    counts[(row, column)] += 1
        return dict(counts)


def venue_and_year(paper: dict[str, Any]) -> str:
    """'CVPR 2024' as is; 'arXiv · 2024' for a venue that does not name its year."""
    return paper["venue"] if _YEAR.search(paper["venue"]) else f"{paper['venue']} · {paper['year']}"


def month_year(paper: dict[str, Any]) -> str:
    month = paper.get("month")
    return f"{MONTH_NAMES[month - 1]} {paper['year']}" if month else str(paper["year"])
