"""The on-disk cache both testbeds train into: one folder per config hash, built once, atomically.

A testbed trains its models on first use and keeps them under `$MMU_ATLAS_CACHE` (default `~/.cache/mmu-atlas`)
in a folder named by a hash of the full config, so any change of config trains afresh and nothing else does.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


def config_hash(payload) -> str:
    blob = json.dumps(payload, sort_keys=True, default=list).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_root() -> Path:
    """`$MMU_ATLAS_CACHE` if set, else `~/.cache/mmu-atlas`."""
    return Path(os.environ.get("MMU_ATLAS_CACHE", Path.home() / ".cache" / "mmu-atlas")).expanduser()


@contextlib.contextmanager
def exclusive(path: Path):
    """A file lock so that concurrent processes (parallel notebooks) train a cache entry only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached(directory: Path, build: Callable[[Path], None], marker: str) -> Path:
    """Run `build(tmp_dir)` once per directory (done when `marker` exists); files appear atomically (tmp + rename)."""
    if (directory / marker).exists():
        return directory
    with exclusive(directory):
        if (directory / marker).exists():
            return directory
        tmp = Path(tempfile.mkdtemp(prefix=directory.name + ".tmp", dir=directory.parent))
        try:
            build(tmp)
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(tmp, directory)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return directory
