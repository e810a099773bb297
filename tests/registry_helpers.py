"""Temporary registries for tests: a registry file with a few cards, pointed at by MMU_ATLAS_REGISTRY."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

BARS = {
    "minicanvas": {"all": [{"metric": "UA", "op": ">=", "value": 0.85},
                           {"metric": "IRA", "op": ">=", "reference": "base", "offset": -0.1},
                           {"metric": "CRA", "op": ">=", "reference": "base", "offset": -0.1}]},
    "miniprofiles": {"all": [{"metric": "forget_acc", "op": "<", "value": 0.2}]},
}
MODALITY = {"minicanvas": "t2i", "miniprofiles": "mllm"}
ENTRY = {"minicanvas": ("methods.t2i.uce:erase", "methods.t2i.uce:UCEConfig"),
         "miniprofiles": ("methods.mllm.ga:unlearn", "methods.mllm.ga:GAConfig")}


def card_entry(testbed: str, catalog: list, title: str = "A test card", entry=None, config=None, **extra) -> dict:
    default_entry, default_config = ENTRY[testbed]
    return {
        "kind": "unlearn", "modality": MODALITY[testbed], "title": title, "entry": entry or default_entry,
        "config": config or default_config, "edits": "weights", "catalog": list(catalog),
        "claim": {"text": "The paper reports 42% on its benchmark.", "source": "Table 1", "status": "verified"},
        "fidelity": {"follows": "owner/repo@0123456, train.py", "deviations": []},
        "testbeds": {testbed: {"adaptations": {}, "bar": copy.deepcopy(BARS[testbed])}},
        **extra,
    }


def write_registry(path: Path, cards: dict) -> Path:
    """A registry file with `cards` (name -> card_entry(...)); returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"cards": cards}, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
