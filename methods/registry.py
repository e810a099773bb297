"""The explicit method registry: name -> how to run it, its config, its catalog entry and its testbed.

Two families share one name space: concept-erasure methods for text-to-image diffusion (`REGISTRY`, testbed
MiniCanvas or a real Stable Diffusion) and unlearning methods for multimodal LLMs (`MLLM_REGISTRY`, testbed
MiniProfiles or a real LLaVA checkpoint). `ALL_METHODS` is both, in listing order.
"""

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


@dataclass(frozen=True)
class MLLMMethodSpec:
    name: str
    catalog_id: str  # the paper whose card this is (the MLLMU-Bench baselines point at MLLMU-Bench)
    title: str
    config_class: type  # dataclass of defaults, each commented with its source
    unlearn: Callable  # unlearn(model, task, config, callback) edits a LlavaForConditionalGeneration in place
    testbed: str = "miniprofiles"


def _mllm_spec(name: str, title: str) -> MLLMMethodSpec:
    from .mllm import pipeline

    config_class, unlearn = pipeline.MLLM_METHODS[name]
    return MLLMMethodSpec(name, pipeline.METHOD_MODULES[name].CATALOG_ID, title, config_class, unlearn)


MLLM_REGISTRY = {
    "ga": _mllm_spec("ga", "Gradient Ascent on the forget set (MLLMU-Bench baseline)"),
    "graddiff": _mllm_spec("graddiff", "Gradient Difference: ascent on forget, descent on retain"),
    "kl": _mllm_spec("kl", "KL minimisation: ascent on forget, KL to the original model on retain"),
    "npo": _mllm_spec("npo", "NPO: Negative Preference Optimization against the fine-tuned reference"),
    "mmunlearner": _mllm_spec("mmunlearner", "MMUnlearner: saliency-masked, geometry-constrained unlearning"),
}

ALL_METHODS = {**REGISTRY, **MLLM_REGISTRY}
TESTBED_OF = {**{name: "minicanvas" for name in REGISTRY}, **{name: "miniprofiles" for name in MLLM_REGISTRY}}


def get_method(name: str) -> MethodSpec:
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}; choose one of: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def default_config(name: str, testbed: str | None = "minicanvas", scale: str = "ci"):
    """The method's defaults: testbed-adapted for a testbed, the official Stable Diffusion values otherwise."""
    config_class = get_method(name).config_class
    return config_class.for_minicanvas(scale) if testbed == "minicanvas" else config_class()
