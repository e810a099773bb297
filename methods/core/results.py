"""Results schema v1: the file every card run writes (`results/<testbed>/<card>/metrics.json`).

`write_results` validates a record against `methods/schemas/results-v1.schema.json` and refuses absolute paths of
the machine before writing it atomically; `read_results` validates a file (the site calls it when it builds). No torch
here: the site imports this module.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Optional

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "results-v1.schema.json"
SCHEMA_VERSION = 1
# A string that looks like an absolute path of a machine (POSIX home/tmp/work folders or a Windows drive).
ABSOLUTE_PATH = re.compile(r"(^|[\s'\"=(])(/(home|root|tmp|work|Users|var|opt|mnt|private)/|[A-Za-z]:\\)")


class ResultsError(ValueError):
    """A results file or record that breaks schema v1; the message names the file and the field."""


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def stat(values: Iterable[Optional[float]]) -> Optional[dict]:
    """{"mean", "std", "n"} over the requests; NaN and None are left out; None when nothing is left."""
    kept = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not kept:
        return None
    mean = sum(kept) / len(kept)
    std = (sum((v - mean) ** 2 for v in kept) / len(kept)) ** 0.5 if len(kept) > 1 else None
    return {"mean": mean, "std": std, "n": len(kept)}


def json_ready(value: Any) -> Any:
    """NaN becomes null (JSON has none), numpy scalars plain numbers, tuples lists, paths strings."""
    import numbers

    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return None if math.isnan(value) else value
    if isinstance(value, Path):
        return str(value)
    return value


def absolute_paths(value: Any, where: str = "") -> list:
    """Dotted locations of strings in a record that contain an absolute path of the machine."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += absolute_paths(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += absolute_paths(item, f"{where}.{index}")
    elif isinstance(value, str) and ABSOLUTE_PATH.search(value):
        found.append(where)
    return found


def check_record(record: dict, source: str = "results") -> None:
    """Raise ResultsError naming the first schema problem (or an absolute path) of a record."""
    errors = sorted(_validator().iter_errors(record), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise ResultsError(f"{source}: {where}: {error.message[:300]} (see {SCHEMA_PATH.name})")
    paths = absolute_paths(record)
    if paths:
        raise ResultsError(f"{source}: {paths[0]}: holds an absolute path of this machine; record paths relative to "
                           "the repository (or a checkpoint's name) instead")


def write_results(record: dict, path: Path) -> Path:
    """Validate and write a record atomically (a temporary file renamed into place)."""
    record = json_ready(record)
    check_record(record, str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(json.dumps(record, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def read_results(path: Path) -> dict:
    """A results file, validated; ResultsError names the file and what is wrong."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ResultsError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(record, dict):
        raise ResultsError(f"{path}: the top level is not a JSON object")
    if record.get("schema_version") != SCHEMA_VERSION:
        raise ResultsError(f"{path}: schema_version is {record.get('schema_version')!r}, expected {SCHEMA_VERSION}; "
                           "re-run the card to rewrite it")
    check_record(record, str(path))
    return record
