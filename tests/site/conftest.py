"""Fixtures of the site tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from site_build_helpers import HOSTILE_PAPERS, build_site, write_catalog


@pytest.fixture(scope="session")
def hostile_site(tmp_path_factory) -> Path:
    """The site built from a small catalog whose strings try to inject HTML, script and Markdown."""
    folder = tmp_path_factory.mktemp("hostile")
    return build_site(folder / "site", write_catalog(folder, HOSTILE_PAPERS))
