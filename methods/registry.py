"""The explicit method registry: name -> how to run it, its config and its catalog entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import ca, esd, sld, uce


@dataclass(frozen=True)
class MethodSpec:
    name: str
    catalog_id: str  # id of the paper in catalog/papers/
    title: str
    config_class: type  # dataclass of defaults (official values) with `for_minicanvas(scale)`
    erase: Callable  # erase(components, request, config, seed) -> ErasureResult
    changes_weights: bool


REGISTRY = {
    "esd": MethodSpec(
        name="esd",
        catalog_id="gandikota2023erasing",
        title="ESD: Erasing Concepts from Diffusion Models (variant x or u)",
        config_class=esd.ESDConfig,
        erase=esd.erase,
        changes_weights=True,
    ),
    "uce": MethodSpec(
        name="uce",
        catalog_id="gandikota2023unified",
        title="UCE: Unified Concept Editing (closed-form cross-attention K/V edit)",
        config_class=uce.UCEConfig,
        erase=uce.erase,
        changes_weights=True,
    ),
    "ca": MethodSpec(
        name="ca",
        catalog_id="kumari2023ablating",
        title="Concept Ablation (model-based, cross-attention K/V)",
        config_class=ca.CAConfig,
        erase=ca.erase,
        changes_weights=True,
    ),
    "sld": MethodSpec(
        name="sld",
        catalog_id="schramowski2022safe",
        title="Safe Latent Diffusion (inference-time safety guidance)",
        config_class=sld.SLDConfig,
        erase=sld.erase,
        changes_weights=False,
    ),
}


def get_method(name: str) -> MethodSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}; choose one of: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def default_config(name: str, testbed: str | None = "minicanvas", scale: str = "ci"):
    """The method's defaults: testbed-adapted for a testbed, the official Stable Diffusion values otherwise."""
    config_class = get_method(name).config_class
    return config_class.for_minicanvas(scale) if testbed == "minicanvas" else config_class()
