"""Markdown summaries of a results record for the notebooks, generic over the testbed declaration (no torch)."""

from __future__ import annotations

import json

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
