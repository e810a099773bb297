"""Fixtures for the MLLM method tests: a micro MiniProfiles (8 people, 1-layer towers) built from configs in seconds.

Tests that train the real ci testbed are marked `@pytest.mark.slow` (deselected by default; `pytest -m slow`).
"""

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from methods.testbeds import miniprofiles as mp  # noqa: E402

from mllm_micro import MICRO  # noqa: E402


@pytest.fixture(scope="session")
def micro_config():
    import dataclasses

    return dataclasses.replace(mp.config_for("ci"), **MICRO)


@pytest.fixture(scope="session")
def micro_bundle(micro_config):
    """(config, data, encoder, random tiny model) without any training."""
    torch.set_num_threads(1)
    data = mp.build_data(micro_config)
    encoder = mp.Encoder(mp.build_processor(micro_config), data.images, torch.device("cpu"))
    return micro_config, data, encoder


@pytest.fixture
def micro_model(micro_bundle):
    config, _, encoder = micro_bundle
    return mp.build_tiny_llava(config, encoder.tokenizer, seed=0).eval().requires_grad_(False)


@pytest.fixture
def micro_task(micro_bundle):
    _, data, encoder = micro_bundle
    forget_ids = data.fictitious_ids[:2]
    retain_ids = data.fictitious_ids[2:]
    return mp.UnlearningTask(
        forget=encoder.encode(data.profile_items(forget_ids)),
        retain=encoder.encode(data.profile_items(retain_ids)),
        encoder=encoder,
        train_views=data.train_views,
        seed=3,
        harmless=encoder.encode(data.harmless_training_items(forget_ids)),
        refusals=mp.REFUSALS,
    )


@pytest.fixture
def micro_cache(tmp_path_factory, monkeypatch):
    """A private cache root, shared by the tests of a session (the micro vanilla model trains once)."""
    root = tmp_path_factory.getbasetemp() / "mmu-cache"
    monkeypatch.setenv("MMU_ATLAS_CACHE", str(root))
    return root
