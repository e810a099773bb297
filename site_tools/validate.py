"""Validate catalog entries: schema and vocabularies, ids, duplicates, cross-references, URLs.

Every problem is collected (never only the first) and reported as ``path:line: field: message (fix hint)``.
"""

from __future__ import annotations

import difflib
import os
import re
import unicodedata
from pathlib import Path
from typing import Iterable

import fastjsonschema
import jsonschema

from .catalog import PAPERS_DIR, Entry, Problem, card_names, display_path, load_entries, load_schema

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


ATTACK_STAGE_HINT = ("remove `stage:`: it records where the paper's own unlearning intervention acts, and an attack "
                     "does not intervene; name the stages of the attacked defences in the summary")


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
        if error.validator == "pattern" and dotted == "venue":
            continue  # reported with a suggested fix by venue_problem
        if error.validator == "not" and error.validator_value == {"required": ["stage"]}:
            problems.append(Problem(shown, entry.line_of("stage"), "stage", "attack entries carry no stage",
                                    ATTACK_STAGE_HINT))
            continue
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


# --- Venue format: a preprint server alone, or '<NAME> <YEAR>' with an optional track (names in the schema) -------

VENUE_FORM = ("the form is `<NAME> <YEAR>` plus an optional track ({tracks}), or a preprint server alone ({servers}), "
              "or {unpublished}; the names are in the venue description of catalog/schema/paper.schema.json")

# Spellings seen in lists and bibliographies -> the vocabulary's name (keys: lower case, single spaces).
VENUE_ALIASES = {
    "acm ccs": "CCS", "acm sigsac ccs": "CCS", "sigsac ccs": "CCS",
    "acm conference on computer and communications security": "CCS",
    "nips": "NeurIPS", "neural information processing systems": "NeurIPS",
    "tpami": "IEEE TPAMI", "ieee transactions on pattern analysis and machine intelligence": "IEEE TPAMI",
    "tifs": "IEEE TIFS", "ieee transactions on information forensics and security": "IEEE TIFS",
    "s&p": "IEEE S&P", "sp": "IEEE S&P", "ieee sp": "IEEE S&P", "oakland": "IEEE S&P",
    "ieee symposium on security and privacy": "IEEE S&P",
    "usenix": "USENIX Security", "usenix security symposium": "USENIX Security",
    "acm multimedia": "ACM MM", "mm": "ACM MM", "acmmm": "ACM MM",
    "tog": "ACM Transactions on Graphics", "acm tog": "ACM Transactions on Graphics",
    "tnnls": "IEEE Transactions on Neural Networks and Learning Systems",
    "ieee tnnls": "IEEE Transactions on Neural Networks and Learning Systems",
    "tai": "IEEE Transactions on Artificial Intelligence", "ieee tai": "IEEE Transactions on Artificial Intelligence",
    "ojcs": "IEEE Open Journal of the Computer Society", "ieee ojcs": "IEEE Open Journal of the Computer Society",
    "jair": "Journal of Artificial Intelligence Research", "ijcv": "International Journal of Computer Vision",
    "csur": "ACM Computing Surveys", "acm csur": "ACM Computing Surveys",
    "transactions on machine learning research": "TMLR",
    "sigkdd": "KDD", "acm sigkdd": "KDD", "the web conference": "WWW", "thewebconf": "WWW",
    "acm siggraph": "SIGGRAPH", "acm siggraph asia": "SIGGRAPH Asia",
    # Full names, after the filler words are dropped ("Proceedings of the IEEE/CVF Conference on ...").
    "computer vision and pattern recognition": "CVPR", "computer vision": "ICCV", "european computer vision": "ECCV",
    "learning representations": "ICLR", "machine learning": "ICML", "neural information processing systems": "NeurIPS",
    "association for computational linguistics": "ACL", "empirical methods in natural language processing": "EMNLP",
    "aaai artificial intelligence": "AAAI", "applications of computer vision": "WACV",
}
# Workshop acronyms: the conference plus the Workshop track.
WORKSHOP_ACRONYMS = {"cvprw": "CVPR", "iccvw": "ICCV", "eccvw": "ECCV", "wacvw": "WACV", "spw": "IEEE S&P",
                     "ieee spw": "IEEE S&P"}
# Track spellings -> the vocabulary's track (matched as whole words, case-insensitive).
TRACK_ALIASES = [
    (r"\bfindings(?: of(?: the)?)?\b", "Findings"),
    (r"\bworkshops?\b", "Workshop"),
    (r"\b(?:datasets? (?:and|&) benchmarks?|d&b)(?: track)?\b", "Datasets and Benchmarks Track"),
    (r"\bcreative ai(?: track)?\b", "Creative AI Track"),
    (r"\bdemo(?:s|nstrations?)?(?: track)?\b", "Demo"),
    (r"\bshort(?: papers?)?(?: track)?\b", "Short Papers"),
]
FILLER_WORDS = {"proceedings", "proc", "of", "the", "in", "conference", "conf", "on", "accepted", "at", "to",
                "main", "track", "annual", "international", "ieee/cvf", "ieee", "acm", "cvf"}


def venue_vocabulary() -> dict[str, list[str]]:
    """The venue vocabulary of the schema: preprint servers, conference and journal names, track suffixes."""
    spec = load_schema()["properties"]["venue"]
    keys = ("preprint-servers", "venue-unpublished", "venue-conferences", "venue-journals", "venue-tracks")
    return {key: list(spec.get(f"x-{key}", [])) for key in keys}


def _regex_escape(name: str) -> str:
    """Escape regex metacharacters only (re.escape also escapes spaces and '&', which ECMA regexes reject)."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", name)


def venue_pattern(vocabulary: dict[str, list[str]] | None = None) -> str:
    """The regular expression of the venue format, built from the vocabulary (the schema's `pattern` must equal it)."""
    vocab = vocabulary or venue_vocabulary()
    names = "|".join(map(_regex_escape, vocab["venue-conferences"] + vocab["venue-journals"]))
    alone = vocab["preprint-servers"] + vocab["venue-unpublished"]
    return ("^(?:" + "|".join(map(_regex_escape, alone)) + "|(?:" + names + ") (?:19|20)[0-9]{2}"
            "(?: (?:" + "|".join(map(_regex_escape, vocab["venue-tracks"])) + "))?)$")


def _known_name(text: str, names: list[str]) -> str | None:
    """The vocabulary name `text` stands for: the same name in any case, a known alias, or a close spelling."""
    key = re.sub(r"\s+", " ", text.strip(" ,.;:-")).lower()
    if not key:
        return None
    by_lower = {name.lower(): name for name in names}
    for candidate in (key, " ".join(w for w in key.split() if w not in FILLER_WORDS)):
        if candidate in by_lower:
            return by_lower[candidate]
        if candidate in VENUE_ALIASES:
            return VENUE_ALIASES[candidate]
    close = difflib.get_close_matches(key, list(by_lower), n=1, cutoff=0.85)
    return by_lower[close[0]] if close else None


def suggest_venue(venue: str) -> str | None:
    """The venue in the catalog's format when `venue` is recognisably a known venue written another way."""
    vocab = venue_vocabulary()
    flat = re.sub(r"\s+", " ", re.sub(r"[()\[\],]", " ", venue)).strip()
    servers = {s.lower(): s for s in vocab["preprint-servers"] + vocab["venue-unpublished"]}
    if flat.split(" ")[0].lower() in servers:  # 'arXiv 2024', 'arxiv preprint'
        return servers[flat.split(" ")[0].lower()]
    year_match = re.search(r"\b((?:19|20)[0-9]{2})\b", flat)
    year = year_match.group(1) if year_match else "<YEAR>"
    track = next((name for pattern, name in TRACK_ALIASES if re.search(pattern, flat, re.I)), None)

    def name_in(text: str) -> tuple[str | None, str | None]:
        text = re.sub(r"\b(?:19|20)[0-9]{2}\b|'[0-9]{2}\b", " ", text)
        for pattern, _ in TRACK_ALIASES:
            text = re.sub(pattern, " ", text, flags=re.I)
        key = re.sub(r"\s+", " ", re.sub(r"[()\[\],]", " ", text)).strip().lower()
        if key in WORKSHOP_ACRONYMS:
            return WORKSHOP_ACRONYMS[key], "Workshop"
        return _known_name(key, vocab["venue-conferences"] + vocab["venue-journals"]), None

    # 'ACM Transactions on Graphics (SIGGRAPH Asia 2023)': the name outside the parentheses, year and track anywhere.
    name, implied_track = name_in(re.sub(r"\([^)]*\)", " ", venue)) if "(" in venue else (None, None)
    if name is None:
        name, implied_track = name_in(venue)
    if name is None:
        return None
    track = track or implied_track
    return f"{name} {year}" + (f" {track}" if track else "")


def venue_problem(venue: object, year: object) -> tuple[str, str] | None:
    """(message, hint) when `venue` breaks the venue format or names a year before the entry's `year`; else None."""
    if not isinstance(venue, str):
        return None  # a type problem, reported by the schema
    vocab = venue_vocabulary()
    form = VENUE_FORM.format(tracks=", ".join(vocab["venue-tracks"]), servers=", ".join(vocab["preprint-servers"]),
                             unpublished=" or ".join(f"`{word}`" for word in vocab["venue-unpublished"]))
    if not re.search(venue_pattern(vocab), venue):
        if venue.strip().lower() == "openreview":
            return ("'OpenReview' is not a venue", "write the venue that accepted the paper, else `arXiv` if it has an "
                    "arXiv version, else `Unpublished`; describe the OpenReview submission in notes")
        suggestion = suggest_venue(venue)
        message = f"'{venue}' is not in the venue format"
        if suggestion and "<YEAR>" in suggestion:
            message = f"'{venue}' lacks the year"
        elif suggestion is None:
            message = f"'{venue}' is not a known venue"
        fix = f"write `{suggestion}`; " if suggestion else ""
        return message, fix + form
    match = re.search(r" ((?:19|20)[0-9]{2})(?: |$)", venue)
    if match and isinstance(year, int) and not isinstance(year, bool) and int(match.group(1)) < year:
        return (f"the venue year {match.group(1)} is earlier than year {year}",
                "`year` is the first public appearance and the venue's year that of its volume or conference, which "
                "cannot come before it: correct one of the two")
    return None


def validate_entries(entries: list[Entry], reference: Iterable[Entry] = (), papers_dir: Path = PAPERS_DIR,
                     registry=None) -> list[Problem]:
    """Problems of `entries`; `reference` are further entries they must not duplicate and may refer to."""
    registry, problems_of_registry = _registry() if registry is None else (registry, [])
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
        venue = venue_problem(data.get("venue"), data.get("year"))
        if venue:
            problems.append(Problem(shown, entry.line_of("venue"), "venue", *venue))
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
        if isinstance(card, (str, list)) and registry is not None:  # one name or a list; other types: schema
            for index, name in enumerate(card_names(card)):
                field = "method_card" if isinstance(card, str) else f"method_card.{index}"
                if name not in registry.cards:
                    problems.append(Problem(shown, entry.line_of(field), field,
                                            f"no registered card '{name}' in {display_path(registry.source)}",
                                            f"use one of: {', '.join(registry.cards)}; or remove it"))
                elif entry_id not in registry.cards[name].catalog:
                    problems.append(Problem(shown, entry.line_of(field), field,
                                            f"card '{name}' does not list '{entry_id}' among its catalog ids",
                                            f"add it to cards.{name}.catalog in {display_path(registry.source)}, or "
                                            "remove the card here"))
    return problems_of_registry + problems


def _registry():
    """The card registry (methods/registry.yaml or $MMU_ATLAS_REGISTRY) and the problem of reading it, if any."""
    from methods.registry import RegistryError, load_registry, registry_path

    try:
        return load_registry(), []
    except RegistryError as error:
        return None, [Problem(display_path(registry_path()), 1, "cards", str(error), "fix the registry file")]


def _registry_applies(papers_dir: Path) -> bool:
    """The repository's registry describes the repository's catalog; another catalog (a fork's, a test's) is checked
    against a registry only when one is named ($MMU_ATLAS_REGISTRY)."""
    from methods.registry import REGISTRY_VARIABLE

    return papers_dir.resolve() == PAPERS_DIR.resolve() or bool(os.environ.get(REGISTRY_VARIABLE))


def registry_problems(entries: list[Entry]) -> list[Problem]:
    """The other direction of the method_card cross-check: every catalog id a registered card gives exists and names
    the card in its method_card."""
    registry, problems = _registry()
    if registry is None:
        return problems
    by_id = {entry.data.get("id"): entry for entry in entries}
    where = display_path(registry.source)
    lines = registry.source.read_text(encoding="utf-8").splitlines()
    for card in registry.cards.values():
        line = next((number for number, text in enumerate(lines, 1) if text.strip() == f"{card.name}:"), 1)
        for index, paper_id in enumerate(card.catalog):
            field = f"cards.{card.name}.catalog.{index}"
            entry = by_id.get(paper_id)
            if entry is None:
                problems.append(Problem(where, line, field, f"no catalog entry has id '{paper_id}'",
                                        "use the id of the card's paper (catalog/papers/<id>.yaml)"))
            elif card.name not in card_names(entry.data.get("method_card")):
                problems.append(Problem(where, line, field, f"{display_path(entry.path)} does not name the card "
                                        f"'{card.name}' in method_card", f"add method_card: {card.name} to the entry"))
    return problems


def validate_paths(paths: list[Path] | None, papers_dir: Path = PAPERS_DIR) -> tuple[int, list[Problem]]:
    """Validate the files under `paths` (default: the whole catalog) against the rest of the catalog."""
    targets = paths or [papers_dir]
    entries, problems = load_entries(targets)
    reference: list[Entry] = []
    if paths and papers_dir.exists():
        reference, _ = load_entries([papers_dir])  # duplicates and cross-references span the whole catalog
    problems += validate_entries(entries, reference, papers_dir=papers_dir)
    if not paths and _registry_applies(papers_dir):  # the whole catalog: the registry's side of the cross-check
        problems += registry_problems(entries)
    return len(entries), problems
