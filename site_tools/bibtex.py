"""BibTeX export and import (bibtexparser v2).

Export writes one entry per paper keyed by its id. A *citation* entry (:func:`paper_to_bibtex`, shown on each paper
page) has the standard fields plus the catalog's labels (``keywords``), the summary (``abstract``) and the links
(``code``, ``project``, ``pdf``, ``openreview``). A *complete* entry (``complete=True``; ``export --format bib`` and
the site's catalog.bib) adds one custom field per remaining catalog field: ``atlas_aliases``, ``atlas_benchmarks``,
``atlas_method_card``, ``atlas_sources`` and ``atlas_background`` hold the value as JSON, ``atlas_notes`` the text. ``import-bib`` of a complete export gives back every field of every entry; the only normalisation
is that runs of whitespace in the title, authors, venue and summary become one space (valid entries have none), and
a ``links.url`` that only repeats the arXiv abstract address is dropped (``links.arxiv`` already says it).

Import decodes the LaTeX that BibTeX files use for accents (``M{\\"u}ller`` is ``Müller``) and reports every problem
of a file at once, before anything is written: keys that are not catalog ids, keys used twice, years and months that
are not dates, blocks that do not parse, and a file with no entries at all.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import bibtexparser
from bibtexparser.model import DuplicateBlockKeyBlock, DuplicateFieldKeyBlock
from bibtexparser.model import Entry as BibEntry

from .catalog import Problem, display_path, load_schema
from .safe_io import id_problem

# Venues that are journals rather than proceedings: the schema's journal names, and these markers for other spellings.
JOURNAL_MARKERS = ("transactions", "journal", "review", "tog", "tpami", "ijcv", "tmlr", "nature", "letters")
# Venues that only host preprints or submissions, or say that the paper is unpublished.
PREPRINT_VENUES = ("arxiv", "openreview", "techrxiv", "ssrn", "unpublished")
LABEL_FIELDS = ("contribution", "stage", "modality", "model_family", "target")
LINK_FIELDS = {"code": "code", "project": "project", "pdf": "pdf", "openreview": "openreview"}
# Catalog fields without a standard BibTeX field: carried by a complete export as JSON in atlas_<field>.
CUSTOM_FIELDS = ("aliases", "benchmarks", "method_card", "sources", "background", "notes")
TEXT_CUSTOM_FIELDS = ("notes",)  # as text, exactly; the others as JSON
CUSTOM_PREFIX = "atlas_"


_ESCAPES = {"\\": "\\textbackslash{}", "{": "\\{", "}": "\\}", "@": "{@}"}


def _escape(text: str) -> str:
    """Any text as a balanced BibTeX value that imports back unchanged: a backslash is ``\\textbackslash{}`` (bibtexparser
    takes a brace after a backslash for an escaped one, so ``\\\\`` before a closing brace would break the entry),
    braces are ``\\{`` and ``\\}``, and ``@`` is ``{@}`` (``@word(`` inside a value would start a new entry)."""
    return re.sub(r"[\\{}@]", lambda match: _ESCAPES[match.group(0)], text)


def _unescape(text: str) -> str:
    """The inverse of :func:`_escape`, in one pass, for values that are not LaTeX (the custom atlas_* fields)."""
    return re.sub(r"\\textbackslash\{\}|\\([\\{}])|\{@\}",
                  lambda match: "\\" if match.group(0).startswith("\\t") else (match.group(1) or "@"), text)


def bib_type(paper: dict[str, Any]) -> str:
    venue = paper["venue"].lower()
    if venue in PREPRINT_VENUES:
        return "misc"
    journals = [name.lower() for name in load_schema()["properties"]["venue"].get("x-venue-journals", [])]
    if any(venue.startswith(name + " ") for name in journals) or any(marker in venue for marker in JOURNAL_MARKERS):
        return "article"
    return "inproceedings"


def _author(name: str) -> str:
    """One author for the `author` field; a name with a comma or an 'and' is braced so it stays one name."""
    escaped = _escape(name)
    return "{" + escaped + "}" if ("," in name or re.search(r"\sand\s", name, re.I)) else escaped


def paper_to_bibtex(paper: dict[str, Any], complete: bool = False) -> str:
    """The BibTeX entry of a paper: for citing, or with every catalog field (`complete`) for a lossless export."""
    links = paper.get("links", {})
    kind = bib_type(paper)
    fields: list[tuple[str, str]] = [("title", "{" + _escape(paper["title"]) + "}")]
    if paper.get("authors"):
        fields.append(("author", " and ".join(_author(a) for a in paper["authors"])))
    fields.append(("year", str(paper["year"])))
    if paper.get("month"):
        fields.append(("month", str(paper["month"])))
    venue_field = {"misc": "howpublished", "article": "journal", "inproceedings": "booktitle"}[kind]
    fields.append((venue_field, _escape(paper["venue"])))
    if links.get("arxiv"):
        fields += [("eprint", links["arxiv"]), ("archivePrefix", "arXiv")]
    if links.get("doi"):
        fields.append(("doi", _escape(links["doi"])))
    url = links.get("url") or (f"https://arxiv.org/abs/{links['arxiv']}" if links.get("arxiv") else None)
    if url:
        fields.append(("url", _escape(url)))
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
    if complete:
        for name in CUSTOM_FIELDS:
            if name in paper:
                value = paper[name] if name in TEXT_CUSTOM_FIELDS else json.dumps(paper[name], ensure_ascii=False)
                fields.append((CUSTOM_PREFIX + name, _escape(value)))
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
    return f"@{kind}{{{paper['id']},\n{body}\n}}\n"


def catalog_to_bibtex(papers: list[dict[str, Any]]) -> str:
    """The whole catalog as complete entries: `import-bib` of it gives back every field."""
    return "\n".join(paper_to_bibtex(p, complete=True) for p in papers)


# --- LaTeX in BibTeX values -------------------------------------------------------------------------------------------

# Accent commands and the combining character each puts on the next letter (\"u -> ü, \c{c} -> ç, \v{S} -> Š).
_ACCENTS = {'"': "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303", "=": "\u0304", ".": "\u0307",
            "u": "\u0306", "v": "\u030c", "H": "\u030b", "c": "\u0327", "k": "\u0328", "r": "\u030a", "d": "\u0323",
            "b": "\u0331", "t": "\u0361"}
# Commands that are letters or symbols of their own.
_LETTERS = {"ss": "ß", "SS": "SS", "o": "ø", "O": "Ø", "aa": "å", "AA": "Å", "ae": "æ", "AE": "Æ", "oe": "œ",
            "OE": "Œ", "l": "ł", "L": "Ł", "i": "ı", "j": "ȷ", "dh": "ð", "DH": "Ð", "th": "þ", "TH": "Þ",
            "ng": "ŋ", "NG": "Ŋ", "textbackslash": "\\", "textendash": "–", "textemdash": "—", "textquoteright": "’",
            "textquoteleft": "‘", "textquotedblleft": "“", "textquotedblright": "”"}
_DOTLESS = {"ı": "i", "ȷ": "j"}  # \"{\i} is ï


def _closing_brace(text: str, start: int) -> int:
    """The index of the brace closing the one at `start` (escaped braces do not count), or len(text)."""
    depth, index = 0, start
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return len(text)


def _accent_argument(text: str, index: int) -> tuple[str, int]:
    """The decoded letter(s) an accent applies to, starting at `index` (``{u}``, ``u``, ``{\\i}``, ``\\i``)."""
    while index < len(text) and text[index] == " ":
        index += 1
    if index >= len(text):
        return "", index
    if text[index] == "{":
        end = _closing_brace(text, index)
        return decode_latex(text[index + 1:end]), end + 1
    if text[index] == "\\":
        match = re.match(r"\\([a-zA-Z]+)", text[index:])
        if match and match.group(1) in _LETTERS:
            return _LETTERS[match.group(1)], index + match.end()
    return text[index], index + 1


def decode_latex(text: str) -> str:
    """A BibTeX value as plain text: accent commands become the accented letters, escaped characters (``\\&``,
    ``\\{``, ``\\\\``) themselves, grouping braces disappear. An unknown command is kept as written (``validate``
    then points at it)."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char in "{}":
            index += 1
            continue
        if char != "\\" or index + 1 >= len(text):
            out.append(char)
            index += 1
            continue
        following = text[index + 1]
        if following in "\\{}&%$#_":
            out.append(following)
            index += 2
            continue
        if following in _ACCENTS and not following.isalpha():
            base, index = _accent_argument(text, index + 2)
            out.append(_accented(base, _ACCENTS[following], following))
            continue
        match = re.match(r"\\([a-zA-Z]+)", text[index:])
        if match is None:
            out.append(char)
            index += 1
            continue
        word, index = match.group(1), index + match.end()
        if word in _ACCENTS:
            base, index = _accent_argument(text, index)
            out.append(_accented(base, _ACCENTS[word], ""))
        elif word in _LETTERS:
            out.append(_LETTERS[word])
            if text.startswith("{}", index):
                index += 2
            elif text.startswith(" ", index):
                index += 1  # TeX ends a command word at the space and drops it
        else:
            out.append("\\" + word)
    return unicodedata.normalize("NFC", "".join(out))


def _accented(base: str, combining: str, symbol: str) -> str:
    if not base:
        return symbol
    first = _DOTLESS.get(base[0], base[0])
    return unicodedata.normalize("NFC", first + combining) + base[1:]


def _split_top_level(text: str, separator: re.Pattern[str]) -> list[str]:
    """`text` split at matches of `separator` that are outside braces."""
    parts, depth, start, index = [], 0, 0, 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif depth == 0:
            match = separator.match(text, index)
            if match and match.end() > index:
                parts.append(text[start:index])
                start = index = match.end()
                continue
        index += 1
    parts.append(text[start:])
    return parts


_AND = re.compile(r"\s+and\s+")
_COMMA = re.compile(r",")


def _authors(raw: str) -> list[str]:
    """'Last, First and First Last' -> ['First Last', 'First Last'], braces protecting a name's own commas."""
    names = []
    for raw_name in _split_top_level(raw.strip(), _AND):
        parts = [" ".join(decode_latex(p).split()) for p in _split_top_level(raw_name, _COMMA)]
        if len(parts) == 2:  # Last, First
            parts = [parts[1], parts[0]]
        elif len(parts) == 3:  # von Last, Jr, First
            parts = [parts[2], parts[0], parts[1]]
        name = " ".join(p for p in parts if p)
        if name:
            names.append(name)
    return names


# --- import -----------------------------------------------------------------------------------------------------------

MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}


class BibImportError(Exception):
    """The file cannot be read at all (missing, not UTF-8); the message names it."""


def _field_lines(entry: BibEntry) -> dict[str, int]:
    first = entry.start_line + 1
    return {f.key.lower(): (f.start_line + 1 if getattr(f, "start_line", None) is not None else first)
            for f in entry.fields}


def _year_range() -> tuple[int, int]:
    spec = load_schema()["properties"]["year"]
    return int(spec.get("minimum", 1900)), int(spec.get("maximum", 2100))


def bib_entry_to_paper(entry: BibEntry, path: Path | None = None) -> tuple[dict[str, Any], list[str], list[Problem]]:
    """A catalog dict from one BibTeX entry, the required fields it could not fill (left for the contributor), and
    the problems that stop an import (a key that is not a catalog id, a year or month that is not a date, a custom
    field that is not JSON)."""
    shown = display_path(path) if path is not None else "(bibtex)"
    raw = {f.key.lower(): str(f.value) for f in entry.fields}
    lines = _field_lines(entry)
    key = entry.key.strip()
    problems: list[Problem] = []

    def problem(field: str, message: str, hint: str) -> None:
        line = lines.get(field, entry.start_line + 1)
        problems.append(Problem(shown, line, f"{key or '(no key)'}.{field}" if field else (key or "(no key)"), message, hint))

    paper_id = key.lower()
    reason = id_problem(paper_id)
    if reason:
        problems.append(Problem(shown, entry.start_line + 1, "key", f"the entry key {reason}",
                                "rename the key (@article{key, ...}): it becomes the catalog id and the file name"))
    paper: dict[str, Any] = {"id": paper_id}
    missing: list[str] = []
    fields = {name: decode_latex(value) for name, value in raw.items() if not name.startswith(CUSTOM_PREFIX)}
    if fields.get("title", "").strip():
        paper["title"] = " ".join(fields["title"].split())
    if raw.get("author", "").strip():
        paper["authors"] = _authors(raw["author"])
    year = fields.get("year", "").strip()
    low, high = _year_range()
    if year:
        if year.isdigit() and len(year) == 4 and low <= int(year) <= high:
            paper["year"] = int(year)
        else:
            problem("year", f"'{year[:20]}' is not a year between {low} and {high}",
                    "write the 4-digit year of first appearance, e.g. year = {2024}")
    month = fields.get("month", "").strip().lower()
    if month:
        if month.isdigit() and 1 <= int(month) <= 12:
            paper["month"] = int(month)
        elif month.rstrip(".") in MONTHS or month.rstrip(".") in _MONTH_NAMES:
            paper["month"] = MONTHS[month[:3]]
        else:
            problem("month", f"'{month[:20]}' is not a month", "write 1-12 or a month name, e.g. month = {may}")
    venue = fields.get("booktitle") or fields.get("journal") or fields.get("howpublished")
    if not venue and (fields.get("archiveprefix", "").lower() == "arxiv" or "arxiv" in fields.get("url", "")):
        venue = "arXiv"
    if venue and venue.strip():
        paper["venue"] = " ".join(venue.split())
    links: dict[str, str] = {}
    eprint = fields.get("eprint", "")
    arxiv = re.search(r"(\d{4}\.\d{4,5})", eprint) or re.search(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})", fields.get("url", ""))
    if arxiv:
        links["arxiv"] = arxiv.group(1)
    if fields.get("doi", "").strip():
        links["doi"] = fields["doi"].strip()
    url = fields.get("url", "").strip()
    if url and not (links.get("arxiv") and url == f"https://arxiv.org/abs/{links['arxiv']}"):
        links["url"] = url
    for link_name, field_name in LINK_FIELDS.items():
        if fields.get(field_name, "").strip():
            links[link_name] = fields[field_name].strip()
    if links:
        paper["links"] = links
    for item in (k.strip() for k in fields.get("keywords", "").split(",")):
        label, _, value = item.partition(":")
        if label in LABEL_FIELDS and value:
            if label == "contribution":
                paper["contribution"] = value
            else:
                paper.setdefault(label, []).append(value)
    if fields.get("abstract", "").strip():
        paper["summary"] = " ".join(fields["abstract"].split())
    for name in CUSTOM_FIELDS:
        value = raw.get(CUSTOM_PREFIX + name)
        if value is None:
            continue
        if name in TEXT_CUSTOM_FIELDS:
            paper[name] = _unescape(value)
            continue
        try:
            paper[name] = json.loads(_unescape(value))
        except json.JSONDecodeError as exc:
            problem(CUSTOM_PREFIX + name, f"is not JSON ({exc.msg})",
                    f"write the value as JSON, as `export --format bib` does, or remove {CUSTOM_PREFIX + name}")
    for required in ("title", "year", "venue", "links", "contribution", "modality", "summary"):
        if required not in paper:
            missing.append(required)
    return paper, missing, problems


_MONTH_NAMES = {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
                "november", "december", "sept"}


def read_bib(path: Path) -> tuple[list[BibEntry], list[Problem]]:
    """The entries of a BibTeX file and the problems of its blocks: blocks that do not parse, keys used twice,
    fields given twice, a file without any entry. Raises BibImportError when the file cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BibImportError(f"{path}: not UTF-8 (offset {exc.start}); save the file as UTF-8") from None
    except IsADirectoryError:
        raise BibImportError(f"{path}: is a folder, not a BibTeX file; give the .bib file") from None
    except OSError as exc:
        raise BibImportError(f"{path}: cannot read the file: {exc.strerror}; check the path") from None
    shown = display_path(path)
    library = bibtexparser.parse_string(text)
    problems: list[Problem] = []
    for block in library.failed_blocks:
        line = (getattr(block, "start_line", None) or 0) + 1
        if isinstance(block, DuplicateBlockKeyBlock):
            first = getattr(block.previous_block, "start_line", None)
            where = f" (first at line {first + 1})" if first is not None else ""
            problems.append(Problem(shown, line, "key", f"the key '{block.key}' is used by two entries{where}",
                                    "give each entry its own key, or remove the repeated entry"))
        elif isinstance(block, DuplicateFieldKeyBlock):
            names = ", ".join(sorted(getattr(block, "duplicate_keys", []) or [])) or "a field"
            problems.append(Problem(shown, line, "(entry)", f"{names} given twice in one entry", "keep one of them"))
        else:
            problems.append(Problem(shown, line, "(block)", "could not parse this BibTeX block",
                                    "check its braces, quotes and commas"))
    entries = list(library.entries)
    seen: dict[str, BibEntry] = {}
    for entry in entries:  # keys that differ only in case name the same file
        earlier = seen.setdefault(entry.key.strip().lower(), entry)
        if earlier is not entry:
            problems.append(Problem(shown, entry.start_line + 1, "key",
                                    f"the key '{entry.key}' names the same catalog id as '{earlier.key}' "
                                    f"(line {earlier.start_line + 1}); ids are lower case",
                                    "give each entry its own key"))
    if not entries and not problems:
        problems.append(Problem(shown, 1, "(file)", "no BibTeX entries found",
                                "give a .bib file with entries such as @inproceedings{key, title = {...}, ...}"))
    return entries, problems


def parse_bib_file(path: Path) -> list[BibEntry]:
    """The entries of a BibTeX file; raises BibImportError with the first problem when there is any."""
    entries, problems = read_bib(path)
    if problems:
        raise BibImportError(str(problems[0]))
    return entries
