"""Registry: the four methods, each with a config dataclass of defaults, a catalog id and an erase function."""

import dataclasses
import re

import pytest

from minicanvas_dummies import REPO_ROOT
from methods.registry import REGISTRY, default_config, get_method


def test_registry_lists_the_four_methods():
    assert list(REGISTRY) == ["esd", "uce", "ca", "sld"]
    assert {spec.catalog_id for spec in REGISTRY.values()} == {
        "gandikota2023erasing", "gandikota2023unified", "kumari2023ablating", "schramowski2022safe",
    }


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_method_has_config_defaults_for_sd_and_minicanvas(name):
    spec = get_method(name)
    assert dataclasses.is_dataclass(spec.config_class)
    sd_defaults, testbed_defaults = default_config(name, testbed=None), default_config(name, "minicanvas")
    assert isinstance(sd_defaults, spec.config_class) and isinstance(testbed_defaults, spec.config_class)
    assert callable(spec.erase)
    assert re.fullmatch(r"[a-z]+\d{4}[a-z]+", spec.catalog_id)
    # the catalog id names a paper of the catalog, and the paper (if it names a card) names this one
    paper = REPO_ROOT / "catalog" / "papers" / f"{spec.catalog_id}.yaml"
    assert paper.exists(), f"{spec.catalog_id} is not in catalog/papers"
    text = paper.read_text()
    assert f"id: {spec.catalog_id}" in text
    card = re.search(r"^method_card:\s*(.+)$", text, re.MULTILINE)
    if card:
        assert name in card.group(1)


def test_official_defaults_are_kept_where_the_testbed_does_not_need_changes():
    assert default_config("esd", None).learning_rate == 1e-5 and default_config("esd", None).iterations == 1000
    assert default_config("uce", None).lamb == 0.5
    assert default_config("ca", None).parameter_group == "cross-attn"
    assert default_config("sld", None).sld_guidance_scale == 1000.0  # diffusers pipeline default (MEDIUM)
    assert default_config("esd", "minicanvas").variant == "x"


def test_unknown_method_raises_a_clear_error():
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        get_method("nope")


@pytest.mark.parametrize(
    "name,bad",
    [("esd", {"variant": "z"}), ("ca", {"loss": "other"}), ("ca", {"parameter_group": "lora"}),
     ("esd", {"iterations": "many"}), ("uce", {"lamb": -1.0})],
)
def test_invalid_config_values_are_rejected(name, bad):
    with pytest.raises(ValueError):
        dataclasses.replace(default_config(name), **bad)
