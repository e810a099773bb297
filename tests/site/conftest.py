"""Fixtures of the site tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from site_build_helpers import (HOSTILE_PAPERS, MINICANVAS_RESULTS, MINIPROFILES_RESULTS, build_site, write_catalog,
                                write_results)


@pytest.fixture(scope="session")
def hostile_site(tmp_path_factory) -> Path:
    """The site built from a small catalog whose strings try to inject HTML, script and Markdown, with three cards:
    plain_card (MiniCanvas, executed, misses its bar), canvas_todo (MiniCanvas, not yet executed) and profile_card
    (MiniProfiles, executed), read from a temporary results folder."""
    folder = tmp_path_factory.mktemp("hostile")
    papers_dir = write_catalog(folder, HOSTILE_PAPERS)
    results_dir = write_results(folder / "results", {("minicanvas", "plain_card"): MINICANVAS_RESULTS,
                                                     ("miniprofiles", "profile_card"): MINIPROFILES_RESULTS})
    return build_site(folder / "site", papers_dir, results_dir)


@pytest.fixture(scope="session")
def robust_site(tmp_path_factory) -> Path:
    """The hostile site plus two attack cards on MiniCanvas and a robustness matrix with missing cells (see
    site_build_helpers.MATRIX_CELLS)."""
    from site_build_helpers import write_robust_catalog

    folder = tmp_path_factory.mktemp("robust")
    papers_dir, results_dir = write_robust_catalog(folder)
    return build_site(folder / "site", papers_dir, results_dir)
