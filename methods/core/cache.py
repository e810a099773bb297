"""The on-disk cache every testbed trains into: one folder per config hash, built once, atomically, and verified.

A testbed trains its models on first use and keeps them under `$MMU_ATLAS_CACHE` (default `~/.cache/mmu-atlas`) in
a folder named by a hash of the full config, so any change of config trains afresh and nothing else does.

A finished folder holds its marker file and `manifest.json` (every file's size and sha256, written at build time;
files over 256 MB are checked by size only, so a real 7B checkpoint is not hashed on every load).
Each use checks the files against the manifest: a truncated or altered file, a missing file or a broken manifest
makes the folder be rebuilt, with one line saying which file was wrong. Temporary folders left by a killed build are
removed; an unwritable cache folder is one clear error naming it and the variable that moves it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

MANIFEST = "manifest.json"
STALE_TMP_S = 24 * 3600  # a temporary build folder older than this belongs to a killed build
HASH_LIMIT = 256 * 2**20


class CacheError(OSError):
    """The cache folder cannot be used (not writable); the message names it and the fix."""


def config_hash(payload) -> str:
    blob = json.dumps(payload, sort_keys=True, default=list).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_root() -> Path:
    """`$MMU_ATLAS_CACHE` if set, else `~/.cache/mmu-atlas`."""
    return Path(os.environ.get("MMU_ATLAS_CACHE", Path.home() / ".cache" / "mmu-atlas")).expanduser()


def _ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".probe", delete=True)
        probe.close()
    except OSError as error:
        raise CacheError(f"the cache folder {folder} is not writable ({error.strerror or error}); set MMU_ATLAS_CACHE "
                         "to a writable folder") from None


@contextlib.contextmanager
def exclusive(path: Path):
    """A file lock so that concurrent processes (parallel notebooks) build a cache entry only once."""
    _ensure_writable(path.parent)
    with open(str(path) + ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path) -> None:
    """Record every file's size and sha256 (by size only above HASH_LIMIT)."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            size = path.stat().st_size
            files[path.relative_to(directory).as_posix()] = {
                "bytes": size, "sha256": sha256_file(path) if size <= HASH_LIMIT else None}
    (directory / MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def problem(directory: Path, marker: str) -> Optional[str]:
    """Why a finished cache folder cannot be trusted, or None. A folder from before manifests (marker, no manifest)
    is adopted: its manifest is written now."""
    if not (directory / marker).is_file():
        return None if not directory.exists() else f"{marker} is missing"
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        write_manifest(directory)
        return None
    try:
        files = json.loads(manifest_path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, {expected['bytes']} were written"
        if expected.get("sha256") and sha256_file(path) != expected["sha256"]:
            return f"{name} differs from what was written (sha256)"
    return None


def remove_stale_builds(parent: Path, name: str) -> None:
    """Temporary folders of builds that were killed (older than a day: a build in progress is never that old)."""
    now = time.time()
    for tmp in parent.glob(name + ".tmp*"):
        try:
            if tmp.is_dir() and now - tmp.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            continue


def cached(directory: Path, build: Callable[[Path], None], marker: str, log: Callable[[str], None] = print) -> Path:
    """Run `build(tmp_dir)` once per directory; files appear atomically (tmp + rename) with a manifest, and a
    corrupt folder is rebuilt."""
    if (directory / marker).exists() and problem(directory, marker) is None:
        return directory
    with exclusive(directory):
        remove_stale_builds(directory.parent, directory.name)
        if directory.exists():
            reason = problem(directory, marker)
            if reason is None:
                return directory
            log(f"[cache] {directory.name}: {reason}; rebuilding it (the folder was {directory})")
        tmp = Path(tempfile.mkdtemp(prefix=directory.name + ".tmp", dir=directory.parent))
        try:
            build(tmp)
            if not (tmp / marker).exists():
                raise RuntimeError(f"the cache build of {directory.name} wrote no {marker}")
            write_manifest(tmp)
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(tmp, directory)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return directory
