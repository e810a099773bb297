"""Markdown summaries of a results record for the notebooks, generic over the testbed declaration (no torch)."""

from __future__ import annotations

import json
import re

from .registry import load_registry


def _stat(value, digits: int = 3) -> str:
    if not isinstance(value, dict) or value.get("mean") is None:
        return "–"
    mean, std = value["mean"], value.get("std")
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def summary_markdown(record: dict) -> str:
    """The card's metrics beside the testbed's references, the quality bar and the card's time and memory."""
    registry = load_registry()
    spec = registry.testbed(record["testbed"])
    references = [ref for ref in spec.references if ref.key in record["references"]]
    header = "| metric | " + record["card"] + " | " + " | ".join(ref.label for ref in references) + " |"
    lines = [header, "|---" * (len(references) + 2) + "|"]
    for metric in spec.metrics:
        cells = [_stat(record["metrics"].get(metric.key), metric.digits)]
        cells += [_stat(record["references"][ref.key].get(metric.key), metric.digits) for ref in references]
        lines.append(f"| {metric.label} {metric.arrow} | " + " | ".join(cells) + " |")
    bar = record["bar"]
    verdict = {True: "**met**", False: "**missed**", None: "not measurable from these results"}[bar["met"]]
    lines += ["", f"Quality bar on {spec.title}: {bar['text']} — {verdict}.",
              f"Card time {_stat(record['timings']['method_s'], 2)} s per request; whole run "
              f"{_stat(record['timings']['total_s'], 1)} s; peak RSS {record['memory']['peak_rss_mb']:.0f} MB."]
    return "\n".join(lines)


def adaptations_markdown(record: dict) -> str:
    """The config fields this run set away from the official defaults, and why."""
    if not record["adaptations"]:
        return "This run used the official defaults."
    lines = ["| field | official | this run | why |", "|---|---|---|---|"]
    for name, adaptation in record["adaptations"].items():
        official = json.dumps(record["config_defaults"].get(name))
        lines.append(f"| `{name}` | `{official}` | `{json.dumps(adaptation['value'])}` | {adaptation['why']} |")
    return "\n".join(lines)


def column_markdown(records: list) -> str:
    """An attack card's column of the robustness matrix: per target, the testbed's attack reference (pre-attack)
    and metrics (post-attack, queries) as mean ± std over the sampling seeds, the attack's time and its bar there."""
    if not records:
        return "No target was attacked."
    spec = load_registry().testbed(records[0]["testbed"])
    attacks = spec.attacks
    references = [ref for ref in attacks.references if any(ref.key in r["references"] for r in records)]
    cell = spec.metric(attacks.cell)
    others = [metric for metric in attacks.metrics if metric.key != attacks.cell]
    header = (["target"] + [f"{ref.label}" for ref in references] + [f"{cell.label} {cell.arrow}"]
              + [f"{metric.label} {metric.arrow}" for metric in others] + ["attack time", "bar here"])
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for record in records:
        target = (record.get("details") or {}).get("target", "?")
        bar = record["bar"]
        verdict = ("no condition on this target" if not bar.get("conditions")
                   else {True: "**met**", False: "**missed**", None: "not measurable"}[bar["met"]])
        cells = ([_stat(record["references"].get(ref.key, {}).get(cell.key), cell.digits) for ref in references]
                 + [_stat(record["metrics"].get(cell.key), cell.digits)]
                 + [_stat(record["metrics"].get(metric.key), metric.digits) for metric in others]
                 + [f"{_stat(record['timings']['method_s'], 1)} s",
                    verdict + (f" ({bar['text']})" if bar.get("conditions") else "")])
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def prompts_markdown(records: list, limit: int = 24) -> str:
    """The adversarial prompts the attack saved against each target (`details.prompts`), to copy and reuse."""
    parts = []
    for record in records:
        details = record.get("details") or {}
        prompts = details.get("prompts")
        target = details.get("target", "?")
        if prompts is None:
            parts.append(f"**Against {target}:** no text prompts (the attack returned embeddings; "
                         f"the cell file keeps what it recorded in `details.attack`).")
            continue
        more = f", the first {limit} shown" if len(prompts) > limit else ""
        lines = [" ".join(str(prompt).split()) for prompt in prompts[:limit]]
        fence = "`" * max(3, 1 + max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0))
        parts.append("\n".join([f"**Against {target}** ({len(prompts)} prompts{more}):", "", f"{fence}text", *lines,
                                fence]))
    return "\n\n".join(parts)
