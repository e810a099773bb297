"""Run a registered method end to end (used by the CLI, the notebooks and the benchmark).

- `run_minicanvas`: erase a concept on the MiniCanvas testbed, evaluate before and after with the judge.
- `run_stable_diffusion`: erase a concept from Stable Diffusion 1.x (local path or hub id); samples only.
- `write_outputs`: `metrics.json` and `samples.png` in an output directory.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import torch

from .common import (
    git_commit,
    package_versions,
    DiffusionComponents,
    EraseRequest,
    SamplingSettings,
    make_generator,
    resolve_device,
    seed_everything,
    standard_sampler,
)
from .registry import default_config, get_method

REPO_ROOT = Path(__file__).resolve().parent.parent
MEMORY_MEASURE = "resource.getrusage(RUSAGE_SELF).ru_maxrss (process peak RSS) and its increase during the method"


@dataclass
class RunResult:
    metrics: dict  # everything written to metrics.json
    before: Optional[torch.Tensor] = None  # sample grid images before erasure, (N, C, H, W) in [-1, 1]
    after: Optional[torch.Tensor] = None
    grid_labels: list = field(default_factory=list)  # one label per grid row


# ----------------------------------------------------------------------------------------------------------
# Provenance
# ----------------------------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """ru_maxrss is in KiB on Linux and in bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _public(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith("_")}


# ----------------------------------------------------------------------------------------------------------
# MiniCanvas
# ----------------------------------------------------------------------------------------------------------
def run_minicanvas(
    method: str,
    forget: str = "three",
    seed: int = 0,
    scale: str = "ci",
    device: str = "auto",
    anchor: Optional[str] = None,
    config_overrides: Optional[dict] = None,
    log=print,
) -> RunResult:
    """Erase `forget` on MiniCanvas with a registered method and measure UA / IRA / CRA / FD before and after."""
    from .testbeds import minicanvas

    spec = get_method(method)
    minicanvas.concept_axis(forget)  # validates the concept before any heavy work
    config = default_config(method, "minicanvas", scale)
    if config_overrides:
        config = dataclasses.replace(config, **config_overrides)
    torch_device = resolve_device(device)
    total_start = time.perf_counter()

    # 1. Testbed (trained once per machine, then loaded from the safetensors cache).
    testbed = minicanvas.load_minicanvas(scale, device=torch_device, log=log)
    request = testbed.erase_request(forget, anchor)

    # 2. The method, measured first so that its memory increase is not hidden by the evaluations' peak.
    seed_everything(seed)
    rss_before = peak_rss_mb()
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    method_start = time.perf_counter()
    result = spec.erase(testbed.components, request, config, seed=seed)
    method_time = time.perf_counter() - method_start
    rss_after = peak_rss_mb()
    memory = {
        "measure": MEMORY_MEASURE,
        "method_peak_rss_increase_mb": rss_after - rss_before,
        "peak_rss_mb": rss_after,
    }
    if torch_device.type == "cuda":
        memory["method_cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20

    # 3. Evaluate the base model and the erased model on the same prompts and the same noise (paired).
    eval_seed = 10_000 + seed
    base = testbed.evaluate(testbed.default_sample_fn(), forget, seed=eval_seed)
    after = testbed.evaluate(result.sample_fn, forget, seed=eval_seed)
    memory["peak_rss_mb"] = peak_rss_mb()

    # 4. Sample grid: 4 samples for each forget prompt and for a few retained prompts.
    n = testbed.config.samples_per_prompt
    prompts = testbed.evaluation_prompts()[0][::n]
    forget_rows = [i for i, p in enumerate(prompts) if f" {forget} " in f" {p} "]
    retain_rows = [i for i in range(len(prompts)) if i not in forget_rows]
    retain_rows = retain_rows[:: len(retain_rows) // 4][:4]
    rows = forget_rows + retain_rows
    per_row = 4
    before_grid = torch.cat([base["_images"][r * n : r * n + per_row] for r in rows])
    after_grid = torch.cat([after["_images"][r * n : r * n + per_row] for r in rows])

    metrics = {
        "method": method,
        "catalog_id": spec.catalog_id,
        "testbed": "minicanvas",
        "scale": scale,
        "forget": forget,
        "anchor": (anchor or minicanvas.default_anchor(forget)) if spec.name in ("uce", "ca") else None,
        "seed": seed,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(torch_device),
        "metrics": _public(after),
        "base_metrics": _public(base),
        "method_wall_time_s": method_time,
        "total_wall_time_s": time.perf_counter() - total_start,
        "memory": memory,
        "method_info": result.info,
        "config": dataclasses.asdict(config),
        "testbed_config": dataclasses.asdict(testbed.config),
        "base_model": {
            "cache_dir": str(testbed.model_dir),
            "train_time_s": testbed.model_info.get("train_time_s"),
            "final_loss": testbed.model_info.get("final_loss"),
        },
        "judge": {
            "object_accuracy": testbed.judge_info["object_accuracy"],
            "style_accuracy": testbed.judge_info["style_accuracy"],
            "sha256": testbed.judge_info["sha256"],
            "cache_dir": str(testbed.judge_dir),
        },
        "versions": package_versions(),
        "git_commit": git_commit(),
        "threads": torch.get_num_threads(),
    }
    log(
        f"[{method}] forget={forget}: UA {after['UA']:.3f} IRA {after['IRA']:.3f} CRA {after['CRA']:.3f} "
        f"FD {after['FD']:.2f} (base UA {base['UA']:.3f} IRA {base['IRA']:.3f} CRA {base['CRA']:.3f} "
        f"FD {base['FD']:.2f}); method {method_time:.2f} s"
    )
    return RunResult(metrics, before_grid, after_grid, [prompts[r] for r in rows])


# ----------------------------------------------------------------------------------------------------------
# Stable Diffusion 1.x (samples only: the MiniCanvas judges do not apply)
# ----------------------------------------------------------------------------------------------------------
SD_RETAIN_PROMPTS = ["a photo of a dog", "a painting of a lighthouse by the sea"]


class ModelLoadError(ValueError):
    """The --model path or hub id could not be loaded (reported by the CLI as one line, exit code 2)."""


def load_stable_diffusion(model: str, device: torch.device) -> DiffusionComponents:
    """Components of a Stable Diffusion 1.x pipeline (local path or hub id) with a DDIM sampler."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    dtype = torch.float32  # training methods (ESD, CA) need fp32 weights
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            model, dtype=dtype, safety_checker=None, requires_safety_checker=False
        )
    except (OSError, ValueError) as error:  # missing path, no network for a hub id, not a diffusers folder
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"cannot load Stable Diffusion from {model!r}: {first_line}") from error
    pipe.to(device)
    pipe.text_encoder.requires_grad_(False)
    pipe.vae.requires_grad_(False)
    pipe.unet.requires_grad_(False)
    height = pipe.unet.config.sample_size  # 64 latents = 512 px for SD 1.x
    return DiffusionComponents(
        unet=pipe.unet,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        scheduler=DDIMScheduler.from_config(pipe.scheduler.config),
        sample_shape=(pipe.unet.config.in_channels, height, height),
        sampling=SamplingSettings(num_inference_steps=50, guidance_scale=7.5, eta=0.0),
        vae=pipe.vae,
        device=device,
        max_batch=4,
    )


@torch.no_grad()
def decode_latents(components: DiffusionComponents, latents: torch.Tensor) -> torch.Tensor:
    """VAE-decode SD latents to images in [-1, 1] (CPU)."""
    images = []
    for chunk in latents.split(4):
        images.append(components.vae.decode(chunk / components.vae.config.scaling_factor).sample.float().cpu())
    return torch.cat(images).clamp(-1, 1)


def run_stable_diffusion(
    method: str,
    model: str,
    forget: str,
    seed: int = 0,
    device: str = "auto",
    anchor: Optional[str] = None,
    samples_per_prompt: int = 2,
    config_overrides: Optional[dict] = None,
    log=print,
) -> RunResult:
    """Erase free-text `forget` (e.g. "Van Gogh") from Stable Diffusion 1.x with the official defaults."""
    spec = get_method(method)
    config = default_config(method, testbed=None)
    if config_overrides:
        config = dataclasses.replace(config, **config_overrides)
    torch_device = resolve_device(device)
    total_start = time.perf_counter()
    seed_everything(seed)
    components = load_stable_diffusion(model, torch_device)
    # ESD: unconditional "" as the neutral prompt (paper); UCE/CA: anchor "" unless given; SLD: the forget text
    request = EraseRequest(
        forget_prompts=[forget],
        neutral_prompts=[""],
        anchor_prompts=[anchor or ""],
        preserve_prompts=list(SD_RETAIN_PROMPTS),
        concept_prompt=forget,
    )
    if torch_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    method_start = time.perf_counter()
    result = spec.erase(components, request, config, seed=seed)
    method_time = time.perf_counter() - method_start

    prompts = [forget] + SD_RETAIN_PROMPTS
    grid_prompts = [p for p in prompts for _ in range(samples_per_prompt)]
    before = decode_latents(components, standard_sampler(components)(grid_prompts, make_generator(10_000 + seed)))
    after = decode_latents(components, result.sample_fn(grid_prompts, make_generator(10_000 + seed)))
    metrics = {
        "method": method,
        "catalog_id": spec.catalog_id,
        "testbed": None,
        "model": model,
        "forget": forget,
        "anchor": anchor or "",
        "seed": seed,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": str(torch_device),
        "metrics": None,  # no judge for Stable Diffusion here: samples only
        "method_wall_time_s": method_time,
        "total_wall_time_s": time.perf_counter() - total_start,
        "memory": {
            "measure": MEMORY_MEASURE,
            "peak_rss_mb": peak_rss_mb(),
            **(
                {"cuda_max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20}
                if torch_device.type == "cuda"
                else {}
            ),
        },
        "method_info": result.info,
        "config": dataclasses.asdict(config),
        "versions": package_versions(),
        "git_commit": git_commit(),
    }
    return RunResult(metrics, before, after, prompts)


# ----------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------
def plot_sample_grid(result: RunResult, title: str = ""):
    """Before | after figure: one row per prompt, the same noise on both sides."""
    import matplotlib.pyplot as plt

    rows = len(result.grid_labels)
    per_row = len(result.before) // rows
    fig, axes = plt.subplots(rows, 2, figsize=(2 * max(2.0, 0.9 * per_row), 0.9 * rows + 0.8), squeeze=False)
    for column, (name, images) in enumerate((("before", result.before), ("after", result.after))):
        for row in range(rows):
            chunk = images[row * per_row : (row + 1) * per_row]
            strip = torch.cat([img.permute(1, 2, 0) for img in chunk], dim=1)  # H x (per_row W) x C
            strip = ((strip + 1) / 2).clamp(0, 1).numpy()
            ax = axes[row, column]
            ax.imshow(strip.squeeze(-1) if strip.shape[-1] == 1 else strip, cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel(result.grid_labels[row].replace("a digit ", ""), rotation=0, ha="right", va="center", fontsize=8)
            if row == 0:
                ax.set_title(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_metrics(result: RunResult, title: str = ""):
    """Bar plot of UA / IRA / CRA before and after (MiniCanvas runs)."""
    import matplotlib.pyplot as plt
    import numpy as np

    names = ["UA", "IRA", "CRA"]
    base = [result.metrics["base_metrics"][k] for k in names]
    after = [result.metrics["metrics"][k] for k in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.bar(x - 0.2, base, 0.4, label="base model")
    ax.bar(x + 0.2, after, 0.4, label=result.metrics["method"])
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right")
    ax.set_title(title or f"forget {result.metrics['forget']!r}")
    fig.tight_layout()
    return fig


def write_outputs(result: RunResult, out_dir: str | Path) -> Path:
    """Write `metrics.json` and `samples.png` to `out_dir` (created if missing)."""
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2, default=str) + "\n")
    if result.before is not None:
        fig = plot_sample_grid(result, f"{result.metrics['method']}: forget {result.metrics['forget']!r}")
        fig.savefig(out / "samples.png", dpi=120)
        plt.close(fig)
    return out
