"""The MiniProfiles pipeline for one method: vanilla model, forget splits, oracle, unlearning, evaluation, report.

`run_miniprofiles(method, seed, scale, out_dir, model, device)` writes `out_dir/metrics.json` and
`out_dir/tradeoff.png` and returns the metrics dict. Steps:
  1. check the arguments (ValueError naming the argument);
  2. load the testbed (fine-tunes and caches the vanilla model on first use) and evaluate the vanilla model;
  3. for each random forget split: train (or load) the retain-only oracle and evaluate it; unlearn a copy of the
     vanilla model with the method, recording a forget / retain trade-off curve; evaluate it;
  4. pool the splits (mean +- std), compute the gap to the oracle, and write the report and the plot.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import resource
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from ..common import git_commit, package_versions, resolve_device, seed_everything
from ..testbeds import miniprofiles as mp
from . import ga, graddiff, kl, mmunlearner, npo

# name -> (config dataclass, unlearn function, catalog id of the card)
METHOD_MODULES = {"ga": ga, "graddiff": graddiff, "kl": kl, "npo": npo, "mmunlearner": mmunlearner}
MLLM_METHODS = {
    "ga": (ga.GAConfig, ga.unlearn),
    "graddiff": (graddiff.GradDiffConfig, graddiff.unlearn),
    "kl": (kl.KLConfig, kl.unlearn),
    "npo": (npo.NPOConfig, npo.unlearn),
    "mmunlearner": (mmunlearner.MMUnlearnerConfig, mmunlearner.unlearn),
}
HEADLINE = ("forget_acc", "forget_paraphrase_acc", "retain_acc", "real_world_acc", "utility_acc")
FORGET_SPLITS = ("forget", "forget_paraphrase")


# ----------------------------------------------------------------------------------------------------------
# 1. Arguments
# ----------------------------------------------------------------------------------------------------------
def method_config(method: str, overrides: Optional[dict] = None, pretrained: bool = False):
    """The method's default config (the official learning rate on a real checkpoint), with overrides applied."""
    if method not in MLLM_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(MLLM_METHODS)}")
    config_class = MLLM_METHODS[method][0]
    config = config_class()
    if pretrained:
        config = dataclasses.replace(config, learning_rate=config.pretrained_learning_rate)
    if overrides:
        fields = {f.name for f in dataclasses.fields(config_class)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(
                f"unknown {method} config field(s) {', '.join(unknown)}; fields: {', '.join(sorted(fields))}"
            )
        config = dataclasses.replace(config, **overrides)
    return config


def _check_arguments(method, seed, scale, model) -> None:
    if not isinstance(method, str) or method not in MLLM_METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(MLLM_METHODS)}")
    if not isinstance(scale, str) or scale not in mp.SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of: {', '.join(mp.SCALES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if model is not None and (not isinstance(model, (str, Path)) or not str(model).strip()):
        raise ValueError(f"model must be None, a LLaVA checkpoint directory or a hub id, got {model!r}")


# ----------------------------------------------------------------------------------------------------------
# 4. Pooling and reporting
# ----------------------------------------------------------------------------------------------------------
def _mean_std(values) -> dict:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def pool_tables(tables: list) -> dict:
    """split -> modality -> metric -> {mean, std} over forget splits."""
    first = tables[0]
    return {split: {modality: {metric: _mean_std([t[split][modality][metric] for t in tables])
                               for metric in first[split][modality]}
                    for modality in first[split]}
            for split in first}  # fmt: skip


def forget_quality_gap(table: dict, oracle_table: dict) -> float:
    """Mean |method - oracle| over every forget-side metric (forget and forget-paraphrase, visual and text)."""
    gaps = []
    for split in FORGET_SPLITS:
        for modality in ("visual", "text"):
            for metric, value in table[split][modality].items():
                reference = oracle_table[split][modality][metric]
                if not (math.isnan(value) or math.isnan(reference)):
                    gaps.append(abs(value - reference))
    return float(np.mean(gaps))


def peak_memory_mb(device: torch.device) -> dict:
    """Peak resident memory of this process (ru_maxrss, the whole process lifetime) and peak CUDA allocation."""
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss = rss_kb / 1024 if sys.platform != "darwin" else rss_kb / 1024**2
    out = {"peak_rss_mb": float(rss)}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 1024**2
    return out


def plot_tradeoff(metrics: dict, path: Path) -> None:
    """Forget vs retain MC accuracy along each split's unlearning run, with the vanilla model and the oracles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    colors = plt.cm.tab10.colors
    for k, split in enumerate(metrics["splits"]):
        curve = split["curve"]
        xs, ys = [p["forget_acc"] for p in curve], [p["retain_acc"] for p in curve]
        ax.plot(xs, ys, "-", color=colors[k % 10], alpha=0.8, lw=1.2, label=f"split {k}: {metrics['method']} run")
        ax.plot(xs[-1:], ys[-1:], "o", color=colors[k % 10], ms=7)
        oracle = split["oracle_quick"]
        ax.plot([oracle["forget_acc"]], [oracle["retain_acc"]], "^", color=colors[k % 10], ms=9, mec="black",
                label=f"split {k}: retrain oracle")  # fmt: skip
        if k == 0:
            ax.plot([xs[0]], [ys[0]], "*", color="black", ms=13, label="fine-tuned (vanilla)")
    chance = 1.0 / metrics["testbed_config"]["mc_options"]
    ax.axvline(chance, color="grey", ls=":", lw=1)
    ax.text(chance, 0.02, " chance", color="grey", fontsize=8)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("forget accuracy (MC, lower is better)")
    ax.set_ylabel("retain accuracy (MC, higher is better)")
    ax.set_title(f"MiniProfiles ({metrics['scale']}): {metrics['method']}, seed {metrics['seed']}")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------------------
def run_miniprofiles(
    method: str,
    seed: int = 0,
    scale: str = "ci",
    out_dir: Path | str | None = None,
    model: str | None = None,
    device: str = "auto",
    *,
    config_overrides: Optional[dict] = None,
    curve_every: Optional[int] = None,
    log: Callable[[str], None] = print,
    testbed_overrides: Optional[dict] = None,
) -> dict:
    """Run one MLLM unlearning method on MiniProfiles (all forget splits) and write metrics.json + tradeoff.png.

    `model=None` uses the tiny LLaVA trained locally; a LLaVA checkpoint path or hub id is fine-tuned on the
    profiles first. `config_overrides` replaces fields of the method's config; `testbed_overrides` replaces fields
    of the testbed config (tests use tiny sizes). Returns the metrics dict.
    """
    # 1. arguments
    _check_arguments(method, seed, scale, model)
    torch_device = resolve_device(device)
    config = method_config(method, config_overrides, pretrained=model is not None)
    out_dir = Path(out_dir) if out_dir is not None else Path("results") / "miniprofiles" / method
    start = time.perf_counter()
    seed = int(seed)

    # 2. testbed and the vanilla model's evaluation (cached beside its weights)
    testbed = mp.load_miniprofiles(scale, torch_device, model=model, log=log, **(testbed_overrides or {}))
    seed_everything(seed)
    base_records = testbed.cached_records(testbed.model, testbed.model_dir)
    splits = testbed.forget_splits(seed)
    curve_every = curve_every or max(1, config.steps // 10)
    unlearn = MLLM_METHODS[method][1]

    # 3. per split: oracle, unlearning, evaluation
    per_split = []
    for k, forget_ids in enumerate(splits):
        log(f"[{method}] split {k + 1}/{len(splits)}: forgetting {', '.join(forget_ids)}")
        oracle_model, oracle_dir = testbed.oracle(forget_ids)
        oracle_result = testbed.summarise(testbed.cached_records(oracle_model, oracle_dir), forget_ids)
        oracle_quick = testbed.quick_eval(oracle_model, forget_ids)
        del oracle_model

        edited = copy.deepcopy(testbed.model)
        task = testbed.unlearning_task(forget_ids, seed=seed * 1000 + k)
        curve = [{"step": 0, **testbed.quick_eval(edited, forget_ids)}]

        def record_curve(step, current, forget_ids=forget_ids, curve=curve):
            if step % curve_every == 0 or step == config.steps:
                curve.append({"step": step, **testbed.quick_eval(current, forget_ids)})

        info = unlearn(edited, task, config, record_curve)
        result = testbed.evaluate(edited, forget_ids)
        base_result = testbed.summarise(base_records, forget_ids)
        gap = {name: result["headline"][name] - oracle_result["headline"][name] for name in HEADLINE}
        per_split.append({
            "forget_ids": list(forget_ids),
            "headline": result["headline"],
            "table": result["table"],
            "base_headline": base_result["headline"],
            "base_table": base_result["table"],
            "oracle_headline": oracle_result["headline"],
            "oracle_table": oracle_result["table"],
            "oracle_gap": gap,
            "forget_quality_gap": forget_quality_gap(result["table"], oracle_result["table"]),
            "oracle_sha256": mp.sha256_of_checkpoint(oracle_dir),
            "oracle_quick": oracle_quick,
            "curve": curve,
            "unlearn": {k_: v for k_, v in info.items() if k_ != "loss_history"},
            "loss_history": info.get("loss_history", []),
        })  # fmt: skip
        log(f"[{method}]   forget {result['headline']['forget_acc']:.3f}  retain {result['headline']['retain_acc']:.3f}"
            f"  real-world {result['headline']['real_world_acc']:.3f}  utility {result['headline']['utility_acc']:.3f}"
            f"  (oracle forget {oracle_result['headline']['forget_acc']:.3f}, "
            f"retain {oracle_result['headline']['retain_acc']:.3f}); {info['unlearn_time_s']:.1f} s")  # fmt: skip
        del edited

    # 4. pool, report, plot
    pooled = {name: _mean_std([s["headline"][name] for s in per_split]) for name in HEADLINE}
    module = METHOD_MODULES[method]
    metrics = {
        "method": method,
        "catalog_id": module.CATALOG_ID,
        "testbed": "miniprofiles",
        "scale": scale,
        "seed": seed,
        "device": str(torch_device),
        "git_commit": git_commit(),
        **{name: pooled[name]["mean"] for name in HEADLINE},
        "headline_std": {name: pooled[name]["std"] for name in HEADLINE},
        "forget_quality_gap": _mean_std([s["forget_quality_gap"] for s in per_split]),
        "oracle_gap": {name: _mean_std([s["oracle_gap"][name] for s in per_split]) for name in HEADLINE},
        "base": {name: _mean_std([s["base_headline"][name] for s in per_split]) for name in HEADLINE},
        "oracle": {name: _mean_std([s["oracle_headline"][name] for s in per_split]) for name in HEADLINE},
        "table": pool_tables([s["table"] for s in per_split]),
        "base_table": pool_tables([s["base_table"] for s in per_split]),
        "oracle_table": pool_tables([s["oracle_table"] for s in per_split]),
        "splits": per_split,
        "unlearn_time_s": _mean_std([s["unlearn"]["unlearn_time_s"] for s in per_split]),
        "wall_time_s": time.perf_counter() - start,
        **peak_memory_mb(torch_device),
        "config": dataclasses.asdict(config),
        "testbed_config": dataclasses.asdict(testbed.config),
        "checkpoint": {"source": testbed.source, "path": str(testbed.model_dir),
                       "sha256": testbed.checkpoint_sha256,
                       "vanilla_memorised_em": testbed.model_info.get("memorised_em")},  # fmt: skip
        "versions": package_versions(),
        "torch_threads": torch.get_num_threads(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(_nan_to_none(metrics), indent=2, allow_nan=False))
    plot_tradeoff(metrics, out_dir / "tradeoff.png")
    log(f"[{method}] wrote {out_dir / 'metrics.json'} and tradeoff.png in {metrics['wall_time_s']:.0f} s")
    return metrics


def _nan_to_none(value):
    """JSON has no NaN: metrics that do not apply (a text cloze on visual utility...) become null."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


# ----------------------------------------------------------------------------------------------------------
# Markdown summaries (notebooks)
# ----------------------------------------------------------------------------------------------------------
def _pm(stat: dict) -> str:
    if stat is None or stat.get("mean") is None:
        return "–"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def summary_markdown(metrics: dict) -> str:
    """Headline table: vanilla model, the method and the retrain oracle (mean ± std over forget splits)."""
    names = {"forget_acc": "forget ↓", "forget_paraphrase_acc": "forget paraphrase ↓", "retain_acc": "retain ↑",
             "real_world_acc": "real world ↑", "utility_acc": "visual utility ↑"}  # fmt: skip
    method_row = {name: {"mean": metrics[name], "std": metrics["headline_std"][name]} for name in HEADLINE}
    lines = ["| model | " + " | ".join(names[n] for n in HEADLINE) + " | forget-quality gap |",
             "|---" * (len(HEADLINE) + 2) + "|"]  # fmt: skip
    for label, row, gap in (("fine-tuned (vanilla)", metrics["base"], None),
                            (f"**{metrics['method']}**", method_row, metrics["forget_quality_gap"]),
                            ("retrain oracle", metrics["oracle"], None)):  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(_pm(row[n]) for n in HEADLINE) + f" | {_pm(gap) if gap else '–'} |")
    return "\n".join(lines)


def table_markdown(metrics: dict, which: str = "table") -> str:
    """The detailed table (split x question type x metric), mean ± std; `which` = table | base_table | oracle_table."""
    table = metrics[which]
    metric_names = list(next(iter(next(iter(table.values())).values())))
    lines = ["| split | questions | " + " | ".join(metric_names) + " |", "|---" * (len(metric_names) + 2) + "|"]
    for split, modalities in table.items():
        for modality in ("visual", "text"):
            row = modalities[modality]
            if all(row[m]["mean"] is None for m in metric_names):
                continue
            lines.append(f"| {split} | {modality} | " + " | ".join(_pm(row[m]) for m in metric_names) + " |")
    return "\n".join(lines)
