"""Create new catalog entries: citation keys, YAML rendering, duplicate checks (used by `new` and `import-bib`)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from .catalog import Entry
from .safe_io import UnsafeWriteError, id_problem, write_inside
from .validate import normalise_title

# Words skipped when picking the "first meaningful title word" of a citation key.
STOP_WORDS = {"a", "an", "the", "on", "of", "in", "towards", "toward", "when", "how", "do", "does", "can", "is",
              "are", "to", "what", "from", "for", "and", "with", "via", "by", "at", "as", "be", "not", "no", "why"}

# Field order of a written entry; mirrors the schema's reading order.
FIELD_ORDER = ["id", "title", "aliases", "authors", "year", "month", "venue", "links", "contribution", "stage",
               "modality", "model_family", "target", "benchmarks", "method_card", "summary", "sources",
               "background", "notes"]


def ascii_lower(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower())


def make_id(first_author: str, year: int, title: str) -> str:
    """Citation key: surname + year + first meaningful title word (gandikota2023erasing)."""
    surname = ascii_lower(first_author.split(",")[0] if "," in first_author else first_author.split()[-1])
    words = [ascii_lower(w) for w in re.split(r"[\s:\-–—/]+", title.replace(".", ""))]
    word = next((w for w in words if w and w not in STOP_WORDS), "paper")
    return f"{surname or 'anon'}{year}{word}"


def find_duplicate(paper: dict[str, Any], existing: list[Entry]) -> Entry | None:
    """The existing entry that is the same paper: same id, arXiv id, OpenReview id, or normalised title/alias."""
    links = paper.get("links") or {}
    titles = {normalise_title(t) for t in [paper.get("title", "")] + list(paper.get("aliases") or []) if t}
    titles.discard("")
    for entry in existing:
        data = entry.data
        other_links = data.get("links") if isinstance(data.get("links"), dict) else {}
        if data.get("id") == paper.get("id"):
            return entry
        for key in ("arxiv", "openreview", "doi"):
            if links.get(key) and links.get(key) == other_links.get(key):
                return entry
        other_titles = {normalise_title(t) for t in [data.get("title", "")] + list(data.get("aliases") or [])
                        if isinstance(t, str)}
        if titles & other_titles:
            return entry
    return None


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if len(value) > 90 and "\n" not in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=">")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_presenter)


def render_yaml(paper: dict[str, Any], todo: list[str] | None = None) -> str:
    ordered = {key: paper[key] for key in FIELD_ORDER if key in paper}
    ordered.update({k: v for k, v in paper.items() if k not in ordered})
    text = yaml.dump(ordered, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    if todo:
        text += "# TODO: fill in the required field(s) below, then run `python -m site_tools validate`.\n"
        text += "".join(f"# {field}:\n" for field in todo)
    return text


def write_entry(paper: dict[str, Any], papers_dir: Path, todo: list[str] | None = None) -> Path:
    """Write a new entry as papers_dir/<id>.yaml; refuses an id that is not a catalog id and an existing file
    (raises :class:`~site_tools.safe_io.UnsafeWriteError`)."""
    problem = id_problem(paper.get("id"))
    if problem:
        raise UnsafeWriteError(f"id {problem}")
    return write_inside(papers_dir, f"{paper['id']}.yaml", render_yaml(paper, todo))
