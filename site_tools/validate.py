"""Validate catalog entries: schema and vocabularies, ids, duplicates, cross-references, URLs.

Every problem is collected (never only the first) and reported as ``path:line: field: message (fix hint)``.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path
from typing import Iterable

import fastjsonschema
import jsonschema

from .catalog import PAPERS_DIR, Entry, Problem, card_names, display_path, load_entries, load_schema, notebooks_dir_for

_fast_check = None
CONTRIBUTED = "contributed"  # the `sources` value of an entry added beyond the three source lists


def _fast_validator():
    """A compiled validator: ~50x faster than jsonschema, used to skip the detailed pass for valid entries."""
    global _fast_check
    if _fast_check is None:
        _fast_check = fastjsonschema.compile(load_schema())
    return _fast_check


def normalise_title(title: str) -> str:
    """Lower-case ASCII letters and digits only, so 'Get What You Want, Not What You Don’t' matches its variants."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "", text)


def _field_of(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(entry)"


def _hint(error: jsonschema.ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator
    if kind == "enum":
        return "use one of: " + ", ".join(map(str, error.validator_value))
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "the field"
        return f"add `{missing}:`; see catalog/schema/paper.schema.json for what it holds"
    if kind == "additionalProperties":
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"remove it or fix its spelling; allowed here: {allowed}"
    if kind == "pattern":
        return schema.get("description") or f"must match {error.validator_value}"
    if kind == "type":
        return f"write a value of type {error.validator_value}"
    if kind == "minLength":
        return f"write at least {error.validator_value} characters"
    if kind == "maxLength":
        return f"shorten it to at most {error.validator_value:,} characters"
    if kind == "maxItems":
        return f"keep at most {error.validator_value} items"
    if kind in ("minItems", "minProperties"):
        return "the field may not be empty"
    if kind == "uniqueItems":
        return "remove the repeated item"
    if kind in ("minimum", "maximum"):
        if "minimum" in schema and "maximum" in schema:
            return f"use a value from {schema['minimum']} to {schema['maximum']}"
        return schema.get("description", "")
    return schema.get("description", "")


def _shorten(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "…" + text[-4:]


def _message(error: jsonschema.ValidationError) -> str:
    """The validator's message, with a long value shortened in the middle so the message keeps its end (the limit
    of a length error, the allowed values of an enum)."""
    if error.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)'", error.message)
        return f"unknown field(s) {', '.join(extra)}" if extra else error.message
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    if error.validator in ("maxLength", "minLength") and isinstance(error.instance, str):
        limit = error.validator_value
        relation = "over the" if error.validator == "maxLength" else "under the"
        bound = "maximum" if error.validator == "maxLength" else "minimum"
        return (f"{_shorten(error.instance)} is too {'long' if error.validator == 'maxLength' else 'short'}: "
                f"{len(error.instance):,} character{'s' if len(error.instance) != 1 else ''}, {relation} {bound} of "
                f"{limit:,}")
    message = error.message
    if len(message) >= 200:
        whole = repr(error.instance)
        if whole in message:
            message = message.replace(whole, _shorten(error.instance), 1)
    return message if len(message) < 300 else message[:299] + "…"


def schema_problems(entry: Entry) -> list[Problem]:
    try:
        _fast_validator()(entry.data)
        return []
    except fastjsonschema.JsonSchemaException:
        pass
    shown = display_path(entry.path)
    validator = jsonschema.Draft202012Validator(load_schema())
    problems = []
    for error in sorted(validator.iter_errors(entry.data), key=lambda e: list(map(str, e.absolute_path))):
        if error.validator in ("if", "allOf"):
            continue  # reported through their sub-errors
        dotted = _field_of(error)
        if error.validator == "required" and error.schema_path and "then" in error.schema_path:
            problems.append(Problem(shown, entry.line_of("contribution"), "stage",
                                    "is required for method and defense entries",
                                    "add `stage: [training-time]` (or the stages the work uses)"))
            continue
        if error.validator == "required":
            missing = error.message.split("'")[1]
            key = f"{dotted}.{missing}" if dotted != "(entry)" else missing
            problems.append(Problem(shown, entry.line_of(dotted) if dotted != "(entry)" else 1, key, "is required",
                                    f"add `{missing}:`; {_property_description(missing)}"))
            continue
        if _is_url_error(error):
            problems.append(Problem(shown, entry.line_of(dotted), dotted, *_url_message(error)))
            continue
        if error.validator == "additionalProperties":
            for extra in re.findall(r"'([^']+)'", error.message):
                key = f"{dotted}.{extra}" if dotted != "(entry)" else extra
                problems.append(Problem(shown, entry.line_of(key), key, "unknown field", _hint(error)))
            continue
        problems.append(Problem(shown, entry.line_of(dotted), dotted, _message(error), _hint(error)))
    return problems


def _is_url_error(error: jsonschema.ValidationError) -> bool:
    dotted = _field_of(error)
    return (error.validator == "pattern" and dotted.startswith("links.")
            and dotted.split(".")[1] not in ("arxiv", "openreview", "doi"))


def _url_message(error: jsonschema.ValidationError) -> tuple[str, str]:
    return f"'{str(error.instance)[:80]}' is not an http(s) URL", "only https:// or http:// links are allowed"


def value_problems(data: dict) -> list[tuple[str, str, str]]:
    """(field, message, hint) for each value of a partial entry that breaks the schema; missing fields are not
    problems here (`new` checks its arguments with it before it writes a scaffold)."""
    validator = jsonschema.Draft202012Validator(load_schema())
    found = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        if error.validator in ("if", "allOf", "required", "then"):
            continue
        message, hint = _url_message(error) if _is_url_error(error) else (_message(error), _hint(error))
        found.append((_field_of(error), message, hint))
    return found


# Text fields that are shown as they are written: LaTeX markup there is an import left undecoded.
PLAIN_TEXT_FIELDS = ("title", "aliases", "authors", "venue")
LATEX_COMMAND = re.compile(r"\\(?:[\"'`^~=.]|[a-zA-Z]+)")


def _latex_problems(entry: Entry, shown: str) -> list[Problem]:
    problems = []
    for field in PLAIN_TEXT_FIELDS:
        value = entry.data.get(field)
        items = [(field, value)] if isinstance(value, str) else [(f"{field}.{i}", v) for i, v in enumerate(value or [])
                                                                   if isinstance(value, list)]
        for dotted, text in items:
            match = LATEX_COMMAND.search(text) if isinstance(text, str) else None
            if match:
                problems.append(Problem(shown, entry.line_of(dotted), dotted,
                                        f"contains LaTeX markup ({match.group(0)})",
                                        "write the characters themselves, e.g. Müller rather than M\\\"uller"))
    return problems


def _property_description(name: str) -> str:
    return load_schema()["properties"].get(name, {}).get("description", "see catalog/schema/paper.schema.json")


def _url_problems(entry: Entry, shown: str) -> list[Problem]:
    """Beyond the schema's http(s) pattern: links must not carry trackers copied from aggregator sites."""
    problems = []
    links = entry.data.get("links")
    if not isinstance(links, dict):
        return problems
    for name, value in links.items():
        if isinstance(value, str) and "utm_source" in value.lower():
            problems.append(Problem(shown, entry.line_of(f"links.{name}"), f"links.{name}",
                                    "link carries a tracking parameter", "remove the ?utm_source=... part"))
    return problems


def validate_entries(entries: list[Entry], reference: Iterable[Entry] = (), papers_dir: Path = PAPERS_DIR,
                     notebooks_dir: Path | None = None) -> list[Problem]:
    """Problems of `entries`; `reference` are further entries they must not duplicate and may refer to."""
    notebooks_dir = notebooks_dir if notebooks_dir is not None else notebooks_dir_for(papers_dir)
    problems: list[Problem] = []
    checked_paths = {os.path.abspath(e.path) for e in entries}
    everyone = list(entries) + [e for e in reference if os.path.abspath(e.path) not in checked_paths]
    known_ids = {e.id for e in everyone if e.id}

    # Who claims each arXiv id, OpenReview id and normalised title: the first claimant (by path) keeps it.
    # Established entries (the reference) claim before the entries being checked, so a new file is the duplicate.
    ordered = [e for e in everyone if os.path.abspath(e.path) not in checked_paths] + sorted(entries, key=lambda e: str(e.path))
    claims: dict[tuple[str, str], Entry] = {}
    for entry in ordered:
        links = entry.data.get("links") if isinstance(entry.data.get("links"), dict) else {}
        keys = [("arXiv id", str(links.get("arxiv"))) if links.get("arxiv") else None,
                ("OpenReview id", str(links.get("openreview"))) if links.get("openreview") else None]
        titles = [entry.data.get("title")] + list(entry.data.get("aliases") or [])
        keys += [("title", normalise_title(t)) for t in titles if isinstance(t, str) and normalise_title(t)]
        for key in filter(None, keys):
            claims.setdefault(key, entry)

    ids_seen: dict[str, Entry] = {}
    for entry in ordered:
        ids_seen.setdefault(entry.id, entry)

    for entry in entries:
        shown = display_path(entry.path)
        data = entry.data
        problems += schema_problems(entry)
        problems += _url_problems(entry, shown)
        problems += _latex_problems(entry, shown)

        entry_id = data.get("id")
        if isinstance(entry_id, str) and entry.path.stem != entry_id:
            problems.append(Problem(shown, entry.line_of("id"), "id", f"'{entry_id}' differs from the file name",
                                    f"rename the file to {entry_id}.yaml or set id: {entry.path.stem}"))
        if isinstance(entry_id, str) and ids_seen.get(entry_id) is not entry:
            problems.append(Problem(shown, entry.line_of("id"), "id", f"'{entry_id}' is already used by "
                                    f"{display_path(ids_seen[entry_id].path)}", "choose another id, e.g. add a letter suffix"))

        sources = data.get("sources")
        if isinstance(sources, list) and CONTRIBUTED in sources and len(sources) > 1:
            problems.append(Problem(shown, entry.line_of("sources"), "sources",
                                    f"'{CONTRIBUTED}' marks an entry added beyond the source lists, so it cannot be "
                                    "combined with a list", f"keep the list name(s) and remove '{CONTRIBUTED}'"))

        links = data.get("links") if isinstance(data.get("links"), dict) else {}
        for label, field, value in (("arXiv id", "links.arxiv", links.get("arxiv")),
                                    ("OpenReview id", "links.openreview", links.get("openreview"))):
            owner = claims.get((label, str(value))) if value else None
            if owner is not None and owner is not entry:
                problems.append(Problem(shown, entry.line_of(field), field, f"duplicate: {label} {value} is also in "
                                        f"{display_path(owner.path)}", "merge the two entries; keep other titles under aliases"))
        reported_titles = set()
        for field, title in [("title", data.get("title"))] + [(f"aliases.{i}", a) for i, a in enumerate(data.get("aliases") or [])]:
            if not isinstance(title, str):
                continue
            key = normalise_title(title)
            owner = claims.get(("title", key))
            if owner is not None and owner is not entry and key not in reported_titles:
                reported_titles.add(key)
                problems.append(Problem(shown, entry.line_of(field), field, f"duplicate: the same title is in "
                                        f"{display_path(owner.path)}", "merge the two entries; keep other titles under aliases"))

        for index, ref in enumerate(data.get("benchmarks") or []):
            if isinstance(ref, str) and ref not in known_ids:
                problems.append(Problem(shown, entry.line_of(f"benchmarks.{index}"), f"benchmarks.{index}",
                                        f"no catalog entry has id '{ref}'", "use the id of the benchmark's or dataset's entry"))
            elif ref == entry_id:
                problems.append(Problem(shown, entry.line_of(f"benchmarks.{index}"), f"benchmarks.{index}",
                                        "an entry cannot list itself as a benchmark it evaluates on", "remove it"))
        card = data.get("method_card")
        if isinstance(card, (str, list)):  # one name or a list of names; other types are schema problems
            for index, name in enumerate(card_names(card)):
                field = "method_card" if isinstance(card, str) else f"method_card.{index}"
                if not (notebooks_dir / f"{name}.ipynb").is_file():
                    problems.append(Problem(shown, entry.line_of(field), field,
                                            f"no executable card '{name}' (expected notebooks/{name}.ipynb)",
                                            "use the name of an existing card, or remove it"))
    return problems


def validate_paths(paths: list[Path] | None, papers_dir: Path = PAPERS_DIR) -> tuple[int, list[Problem]]:
    """Validate the files under `paths` (default: the whole catalog) against the rest of the catalog."""
    targets = paths or [papers_dir]
    entries, problems = load_entries(targets)
    reference: list[Entry] = []
    if paths and papers_dir.exists():
        reference, _ = load_entries([papers_dir])  # duplicates and cross-references span the whole catalog
    problems += validate_entries(entries, reference, papers_dir=papers_dir)
    return len(entries), problems
