"""Fixtures of the CLIP card tests: a private cache (the micro MiniCLIP trains in seconds) and a tiny CLIPModel."""

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MACHINE_CACHE = os.environ.get("MMU_ATLAS_CACHE")  # the machine's cache, for the slow tests of the real testbed
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("miniclip-cache")
    previous = os.environ.get("MMU_ATLAS_CACHE")
    os.environ["MMU_ATLAS_CACHE"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("MMU_ATLAS_CACHE", None)
    else:
        os.environ["MMU_ATLAS_CACHE"] = previous


@pytest.fixture
def machine_cache(monkeypatch):
    """Point the cache back at the machine's (for tests of the real ci testbed, trained there by the notebooks)."""
    if MACHINE_CACHE is None:
        monkeypatch.delenv("MMU_ATLAS_CACHE", raising=False)
    else:
        monkeypatch.setenv("MMU_ATLAS_CACHE", MACHINE_CACHE)


@pytest.fixture(scope="session")
def micro():
    """The MiniCLIP testbed at its smoke sizes (trains in seconds)."""
    from methods.registry import load_registry
    from methods.testbeds.miniclip.testbed import MiniCLIPTestbed

    return MiniCLIPTestbed.load("ci", "cpu", log=lambda _: None, **load_registry().testbed("miniclip").smoke)
