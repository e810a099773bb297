"""Load catalog entries from YAML, keeping the line of every field for error messages.

Loading is defensive because entries come from pull requests: a file that is too large, not UTF-8,
uses YAML aliases (the "billion laughs" bomb), repeats a key, or is not a mapping becomes a
:class:`Problem` naming the file, line and fix — never an exception.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml

try:  # libyaml is ~10x faster; the pure-Python loader is the fallback
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

REPO_ROOT = Path(__file__).resolve().parent.parent
CATALOG_DIR = REPO_ROOT / "catalog"
PAPERS_DIR = CATALOG_DIR / "papers"
SCHEMA_PATH = CATALOG_DIR / "schema" / "paper.schema.json"
RESOURCES_PATH = CATALOG_DIR / "resources.yaml"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
RESULTS_DIR = REPO_ROOT / "results"

# An entry is a few hundred bytes; anything this large is a mistake or an attack.
MAX_FILE_BYTES = 256 * 1024


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    field: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.path}:{self.line}: {self.field}: {self.message}{hint}"


@dataclass
class Entry:
    """One parsed paper file: its data plus the line where each field (dotted path) starts."""

    path: Path
    data: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.data.get("id", ""))

    def line_of(self, dotted: str) -> int:
        while dotted:
            if dotted in self.lines:
                return self.lines[dotted]
            dotted = dotted.rpartition(".")[0]
        return 1


def notebooks_dir_for(papers_dir: Path) -> Path:
    """Where the executable cards (notebooks/<name>.ipynb) of a papers folder live: the repository's notebooks/ for
    the repository's catalog, else <root>/notebooks beside <root>/catalog/papers (a test's or a fork's catalog)."""
    return NOTEBOOKS_DIR if papers_dir.resolve() == PAPERS_DIR.resolve() else papers_dir.parent.parent / "notebooks"


def card_names(value: Any) -> list[str]:
    """The executable card names of a `method_card` value: one name, or a list of names."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else [name for name in value if isinstance(name, str)]


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def display_path(path: Path) -> str:
    """The path relative to the working folder when inside it (cheap: no symlink resolution)."""
    text = os.path.abspath(path)
    cwd = os.getcwd() + os.sep
    return text[len(cwd):] if text.startswith(cwd) else text


class _AliasFound(Exception):
    """Raised where an aliased node is met; the enclosing collection fills in the alias's line."""

    line: int | None = None


def _node_to_python(node: yaml.Node, prefix: str, lines: dict[str, int], problems: list[str], seen: set[int]) -> Any:
    """Convert a composed YAML node to Python, recording line numbers and refusing duplicate keys.

    The composer shares one node object between an anchor and its aliases without expanding anything; meeting a
    node twice therefore means an alias, which is refused before an alias bomb can expand.
    """
    if id(node) in seen:
        raise _AliasFound()
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            dotted = f"{prefix}.{key}" if prefix else key
            if key in out:
                problems.append(f"{key_node.start_mark.line + 1}\t{dotted}\tkey appears twice\tkeep one")
            lines[dotted] = key_node.start_mark.line + 1
            try:
                out[key] = _node_to_python(value_node, dotted, lines, problems, seen)
            except _AliasFound as alias:
                alias.line = alias.line or key_node.start_mark.line + 1
                raise
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[f"{prefix}.{index}"] = item.start_mark.line + 1
            try:
                items.append(_node_to_python(item, f"{prefix}.{index}", lines, problems, seen))
            except _AliasFound as alias:
                alias.line = alias.line or node.start_mark.line + 1
                raise
        return items
    return _scalar(node)


def _scalar(node: yaml.ScalarNode) -> Any:
    """Resolve a scalar the way safe_load would; strings and small ints (nearly all values) take a fast path."""
    if node.tag == "tag:yaml.org,2002:str":
        return node.value
    if node.tag == "tag:yaml.org,2002:int" and node.value.isdigit():
        return int(node.value)
    return yaml.load(yaml.serialize(node), Loader=_Loader)  # bools, nulls, floats, dates, other ints


def parse_text(path: Path, text: str) -> tuple[Entry | None, list[Problem]]:
    shown = display_path(path)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [Problem(shown, line, "(file)", f"not valid YAML: {reason}",
                              "check indentation and quote strings that contain ': ' or start with a special character")]
    if node is None:
        return None, [Problem(shown, 1, "(file)", "the file is empty", "start from `python -m site_tools new`")]
    if not isinstance(node, yaml.MappingNode):
        kind = "a list" if isinstance(node, yaml.SequenceNode) else "a single value"
        return None, [Problem(shown, node.start_mark.line + 1, "(file)", f"the top level is {kind}, not a mapping of fields",
                              "write one paper per file as `field: value` lines")]
    lines: dict[str, int] = {}
    raw_problems: list[str] = []
    try:
        data = _node_to_python(node, "", lines, raw_problems, set())
    except _AliasFound as alias:
        return None, [Problem(shown, alias.line or 1, "(file)", "YAML aliases (*name) are not allowed",
                              "write the value out in full instead of referring to an anchor")]
    problems = []
    for raw in raw_problems:
        line, dotted, message, hint = raw.split("\t")
        problems.append(Problem(shown, int(line), dotted, message, hint))
    return Entry(path, data, lines), problems


def load_file(path: Path) -> tuple[Entry | None, list[Problem]]:
    shown = display_path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, [Problem(shown, 1, "(file)", f"file is {size:,} bytes, over the {MAX_FILE_BYTES:,}-byte limit",
                                  "an entry needs only a few hundred bytes; remove pasted content")]
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Problem(shown, 1, "(file)", f"cannot read the file: {exc.strerror}", "check the path")]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [Problem(shown, line, "(file)", f"not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                              "save the file as UTF-8")]
    return parse_text(path, text)


def iter_paper_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.glob("*.yaml")))
            files.extend(sorted(p for p in path.glob("*.yml")))
        else:
            files.append(path)
    return files


def load_entries(paths: Iterable[Path] | None = None) -> tuple[list[Entry], list[Problem]]:
    entries: list[Entry] = []
    problems: list[Problem] = []
    for path in iter_paper_files(paths or [PAPERS_DIR]):
        entry, found = load_file(path)
        problems.extend(found)
        if entry is not None:
            entries.append(entry)
    return entries, problems


def load_catalog(papers_dir: Path = PAPERS_DIR) -> list[dict[str, Any]]:
    """The catalog as plain dicts sorted by id, for renderers. Raises if the catalog is invalid."""
    from .validate import validate_entries

    entries, problems = load_entries([papers_dir])
    problems += validate_entries(entries, papers_dir=papers_dir)
    if problems:
        listing = "\n".join(str(p) for p in problems[:20])
        raise CatalogError(f"the catalog has {len(problems)} problem(s); run `python -m site_tools validate`:\n{listing}")
    return sorted((e.data for e in entries), key=lambda d: d["id"])


def load_resources(path: Path = RESOURCES_PATH) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or []


class CatalogError(Exception):
    """The catalog cannot be used as it is; the message lists the problems."""
