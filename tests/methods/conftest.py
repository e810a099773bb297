"""Fixtures for the method tests: tiny random components built from configs (like diffusers' get_dummy_components).

Slow tests (full MiniCanvas training and evaluation) are marked `@pytest.mark.slow`; they run with `-m slow`.
"""

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from methods.testbeds import minicanvas  # noqa: E402
from minicanvas_dummies import get_dummy_components  # noqa: E402


def pytest_collection_modifyitems(config, items):
    # pyproject's addopts already deselect `slow`; this keeps them skipped if run without any -m expression
    if os.environ.get("MMU_RUN_SLOW") == "1" or config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="slow: select with `-m slow` or MMU_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def components():
    torch.set_num_threads(1)
    return get_dummy_components()


@pytest.fixture
def request_three():
    return minicanvas.build_erase_request("three")
