"""Safe writes and identifier checks shared by every command that creates files.

Two rules hold for every entry point of the catalog tools:

- an identifier that becomes part of a path (a paper id from ``new --id``, a BibTeX key from ``import-bib``) is
  checked against the schema's id pattern *before* any path is built from it (:func:`id_problem`);
- every write goes through :func:`write_inside`, which refuses a name that would land outside its folder (``..``,
  a separator, an absolute path, a symbolic link pointing elsewhere), writes through a temporary file so that a
  failure never leaves half a file, and by default never replaces an existing file. :func:`write_all_inside` writes
  several files all-or-nothing.
"""

from __future__ import annotations

import os
import re
import tempfile
from functools import lru_cache
from pathlib import Path

from .catalog import load_schema

ID_EXAMPLE = "gandikota2023erasing"


class UnsafeWriteError(Exception):
    """A write was refused (a name outside its folder, an existing file) or failed; the message says which and why."""


@lru_cache(maxsize=1)
def _id_rule() -> tuple[re.Pattern[str], int]:
    spec = load_schema()["properties"]["id"]
    return re.compile(spec["pattern"]), int(spec.get("maxLength", 80))


ID_RULE = ("lower-case letters and digits only: the first author's surname, a 4-digit year and a title word, e.g. "
           + ID_EXAMPLE)


def id_problem(value: object) -> str | None:
    """Why `value` is not a valid catalog id (None when it is one), ending with the rule. Checked before any path is
    made from it."""
    pattern, max_length = _id_rule()
    if not isinstance(value, str) or not value:
        return f"is empty; a catalog id is {ID_RULE}"
    if len(value) > max_length:
        return (f"'{_shown(value)}' is {len(value)} characters long, over the {max_length}-character limit; a catalog id "
                f"is {ID_RULE}")
    if not pattern.fullmatch(value):
        return f"'{_shown(value)}' is not a catalog id: {ID_RULE}"
    return None


def _shown(value: str, limit: int = 60) -> str:
    printable = value.encode("unicode_escape").decode("ascii")
    return printable if len(printable) <= limit else printable[: limit - 1] + "…"


def target_inside(folder: Path, relative_name: str) -> Path:
    """The path of `relative_name` inside `folder`, or UnsafeWriteError when it would be anywhere else.

    `relative_name` must be a plain file name: no separator, not ``..``, not absolute; an existing entry of
    that name must be a regular file (not a link), and the folder itself must resolve to where it says.
    """
    name = str(relative_name)
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name
            or os.path.isabs(name)):
        raise UnsafeWriteError(f"refused to write '{_shown(name)}': not a plain file name inside {folder}")
    base = Path(os.path.abspath(folder))
    target = base / name
    if target.is_symlink():
        raise UnsafeWriteError(f"refused to write {target}: it is a symbolic link")
    if base.exists() and not base.is_dir():
        raise UnsafeWriteError(f"refused to write {target}: {base} is not a folder")
    if base.exists() and target.resolve().parent != base.resolve():
        raise UnsafeWriteError(f"refused to write {target}: it resolves outside {base}")
    return target


def write_inside(folder: Path, relative_name: str, data: str | bytes, *, overwrite: bool = False) -> Path:
    """Write `data` (text is UTF-8) to `folder/relative_name` and return that path.

    Refuses a name outside `folder` (see :func:`target_inside`) and, unless `overwrite`, an existing file. The data
    goes to a temporary file in the same folder that is then renamed over the target, so a reader never sees half a
    file and a failure leaves nothing behind. `folder` is created when missing. Raises UnsafeWriteError.
    """
    target = target_inside(folder, relative_name)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    reserved = False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not overwrite:  # reserve the name: fails if the file exists, so nothing is ever replaced
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            reserved = True
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(payload)
            os.chmod(temporary, 0o644)
            os.replace(temporary, target)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
    except FileExistsError:
        raise UnsafeWriteError(f"refused to write {target}: the file already exists") from None
    except BaseException as exc:
        if reserved:
            target.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise UnsafeWriteError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise
    return target


def write_all_inside(folder: Path, files: dict[str, str | bytes]) -> list[Path]:
    """Write several new files into `folder`, all or nothing: every name is checked first, and if one write fails the
    files already written by this call are removed again. Raises UnsafeWriteError."""
    for name in files:
        target = target_inside(folder, name)
        if target.exists():
            raise UnsafeWriteError(f"refused to write {target}: the file already exists")
    written: list[Path] = []
    try:
        for name, data in files.items():
            written.append(write_inside(folder, name, data))
    except UnsafeWriteError:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written
