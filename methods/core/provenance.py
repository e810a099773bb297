"""Provenance written into every results file: which code, which packages, when, and how much memory."""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

# The checkout this package runs from (git is asked about HEAD and the working tree here).
REPO_ROOT = Path(__file__).resolve().parents[2]

PACKAGES = ("torch", "diffusers", "transformers", "tokenizers", "safetensors", "accelerate", "scikit-learn", "numpy",
            "scipy")
MEMORY_MEASURE = "resource.getrusage(RUSAGE_SELF).ru_maxrss (process peak RSS) and its increase during the method"


def package_versions() -> dict:
    import importlib.metadata as metadata

    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _git(*args: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True)
        return out.stdout
    except (OSError, subprocess.SubprocessError):
        return None


def git_state() -> dict:
    """{"commit": HEAD or None, "dirty": whether tracked files differ from HEAD (None outside a checkout)}.

    Results and notebooks are outputs, so their own changes do not make the tree dirty."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!notebooks/*.ipynb")
    return {"commit": (commit.strip() or None) if commit else None,
            "dirty": None if status is None else bool(status.strip())}


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def peak_rss_mb() -> float:
    """ru_maxrss is in KiB on Linux and in bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
