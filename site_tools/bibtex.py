"""BibTeX export and import (bibtexparser v2).

Export writes one entry per paper keyed by its id. Beyond the standard fields it writes the catalog's
labels (`keywords`), the summary (`abstract`) and the code link (`code`), so that `import-bib` of an
export gives back the same papers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import bibtexparser
from bibtexparser.model import Entry as BibEntry

from .catalog import load_schema

# Venues that are journals rather than proceedings: the schema's journal names, and these markers for other spellings.
JOURNAL_MARKERS = ("transactions", "journal", "review", "tog", "tpami", "ijcv", "tmlr", "nature", "letters")
# Venues that only host preprints or submissions, or say that the paper is unpublished.
PREPRINT_VENUES = ("arxiv", "openreview", "techrxiv", "ssrn", "unpublished")
LABEL_FIELDS = ("contribution", "stage", "modality", "model_family", "target")
LINK_FIELDS = {"code": "code", "project": "project", "pdf": "pdf", "openreview": "openreview"}


def _escape(text: str) -> str:
    """Braces balance BibTeX values; protect capitals of the title with an outer brace pair."""
    return text.replace("\\", "\\\\").replace("{", "\\{").replace("}", "\\}")


def _unescape(text: str) -> str:
    return text.replace("\\{", "{").replace("\\}", "}").replace("\\\\", "\\")


def bib_type(paper: dict[str, Any]) -> str:
    venue = paper["venue"].lower()
    if venue in PREPRINT_VENUES:
        return "misc"
    journals = [name.lower() for name in load_schema()["properties"]["venue"].get("x-venue-journals", [])]
    if any(venue.startswith(name + " ") for name in journals) or any(marker in venue for marker in JOURNAL_MARKERS):
        return "article"
    return "inproceedings"


def paper_to_bibtex(paper: dict[str, Any]) -> str:
    links = paper.get("links", {})
    kind = bib_type(paper)
    fields: list[tuple[str, str]] = [("title", "{" + _escape(paper["title"]) + "}")]
    if paper.get("authors"):
        fields.append(("author", " and ".join(_escape(a) for a in paper["authors"])))
    fields.append(("year", str(paper["year"])))
    if paper.get("month"):
        fields.append(("month", str(paper["month"])))
    venue_field = {"misc": "howpublished", "article": "journal", "inproceedings": "booktitle"}[kind]
    fields.append((venue_field, _escape(paper["venue"])))
    if links.get("arxiv"):
        fields += [("eprint", links["arxiv"]), ("archivePrefix", "arXiv")]
    if links.get("doi"):
        fields.append(("doi", links["doi"]))
    url = links.get("url") or (f"https://arxiv.org/abs/{links['arxiv']}" if links.get("arxiv") else None)
    if links.get("url"):
        fields.append(("url", links["url"]))
    elif url:
        fields.append(("url", url))
    for link_name, field_name in LINK_FIELDS.items():
        if links.get(link_name):
            fields.append((field_name, _escape(links[link_name])))
    keywords = []
    for label in LABEL_FIELDS:
        values = paper.get(label)
        for value in [values] if isinstance(values, str) else values or []:
            keywords.append(f"{label}:{value}")
    if keywords:
        fields.append(("keywords", ", ".join(keywords)))
    fields.append(("abstract", _escape(paper["summary"])))
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
    return f"@{kind}{{{paper['id']},\n{body}\n}}\n"


def catalog_to_bibtex(papers: list[dict[str, Any]]) -> str:
    return "\n".join(paper_to_bibtex(p) for p in papers)


def _plain(text: str) -> str:
    """A field's text: grouping braces (``{D}iffusion``) dropped, escaped braces and backslashes restored."""
    return _unescape(re.sub(r"(?<!\\)[{}]", "", text)).strip()


MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}


class BibImportError(Exception):
    pass


def bib_entry_to_paper(entry: BibEntry) -> tuple[dict[str, Any], list[str]]:
    """A catalog dict from one BibTeX entry, and the required fields it could not fill."""
    fields = {f.key.lower(): _plain(str(f.value)) for f in entry.fields}
    paper: dict[str, Any] = {"id": entry.key.strip().lower()}
    missing: list[str] = []
    if "title" in fields:
        paper["title"] = re.sub(r"\s+", " ", fields["title"]).strip()
    if fields.get("author"):
        paper["authors"] = [_flip_name(a) for a in re.split(r"\s+and\s+", fields["author"]) if a.strip()]
    if fields.get("year", "").strip().isdigit():
        paper["year"] = int(fields["year"])
    month = fields.get("month", "").strip().lower()
    if month.isdigit():
        paper["month"] = int(month)
    elif month[:3] in MONTHS:
        paper["month"] = MONTHS[month[:3]]
    venue = fields.get("booktitle") or fields.get("journal") or fields.get("howpublished")
    if not venue and (fields.get("archiveprefix", "").lower() == "arxiv" or "arxiv" in fields.get("url", "")):
        venue = "arXiv"
    if venue:
        paper["venue"] = venue
    links: dict[str, str] = {}
    eprint = fields.get("eprint", "")
    arxiv = re.search(r"(\d{4}\.\d{4,5})", eprint) or re.search(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})", fields.get("url", ""))
    if arxiv:
        links["arxiv"] = arxiv.group(1)
    if fields.get("doi"):
        links["doi"] = fields["doi"]
    url = fields.get("url")
    if url and not (links.get("arxiv") and url == f"https://arxiv.org/abs/{links['arxiv']}"):
        links["url"] = url
    for link_name, field_name in LINK_FIELDS.items():
        if fields.get(field_name):
            links[link_name] = fields[field_name]
    if links:
        paper["links"] = links
    for item in (k.strip() for k in fields.get("keywords", "").split(",")):
        label, _, value = item.partition(":")
        if label in LABEL_FIELDS and value:
            if label == "contribution":
                paper["contribution"] = value
            else:
                paper.setdefault(label, []).append(value)
    if fields.get("abstract"):
        paper["summary"] = fields["abstract"]
    for required in ("title", "year", "venue", "links", "contribution", "modality", "summary"):
        if required not in paper:
            missing.append(required)
    return paper, missing


def _flip_name(name: str) -> str:
    name = re.sub(r"\s+", " ", name.strip())
    if "," in name:
        last, _, first = name.partition(",")
        return f"{first.strip()} {last.strip()}".strip()
    return name


def parse_bib_file(path: Path) -> list[BibEntry]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BibImportError(f"{path}: not UTF-8 (offset {exc.start}); save the file as UTF-8") from None
    except OSError as exc:
        raise BibImportError(f"{path}: cannot read the file: {exc.strerror}") from None
    library = bibtexparser.parse_string(text)
    if library.failed_blocks:
        block = library.failed_blocks[0]
        line = getattr(block, "start_line", 0) + 1
        raise BibImportError(f"{path}:{line}: could not parse this BibTeX block "
                             f"({len(library.failed_blocks)} block(s) failed); check braces and commas")
    return list(library.entries)
