"""Fixtures of the card contract tests: a private cache for the whole session (the smoke testbeds train once)."""

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("mmu-cache")
    previous = os.environ.get("MMU_ATLAS_CACHE")
    os.environ["MMU_ATLAS_CACHE"] = str(root)
    yield root
    if previous is None:
        os.environ.pop("MMU_ATLAS_CACHE", None)
    else:
        os.environ["MMU_ATLAS_CACHE"] = previous
