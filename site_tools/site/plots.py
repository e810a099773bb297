"""Statistics figures drawn with matplotlib (Agg) at build time, as SVG bytes.

Text stays text in the SVG (smaller, searchable) and mathtext is off so a '$' in a venue name is drawn as a dollar
sign rather than parsed. The figures have a white background so they read in the light and the dark theme.
"""

from __future__ import annotations

import io
from collections import Counter

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from .atlas import Atlas, labels_of, venue_series  # noqa: E402

STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "mmu-atlas",  # stable element ids: the same catalog gives the same files
    "text.parse_math": False,
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.facecolor": "white",
    "axes.facecolor": "white",
}
# Colour-blind-safe palette (Okabe-Ito), one colour per value in vocabulary order.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#F0E442", "#000000"]
NO_VALUE_COLOUR = "#BBBBBB"
TOP_VENUES = 15


def _svg(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    return buffer.getvalue()


def year_by_stage(atlas: Atlas) -> bytes:
    """Stacked bars: papers per year, one segment per intervention stage, plus the entries without a stage."""
    stages = atlas.vocabularies["stage"].values
    years = list(range(min(p["year"] for p in atlas.papers), max(p["year"] for p in atlas.papers) + 1)) if atlas.papers else []
    counts: Counter = Counter()
    for paper in atlas.papers:
        for stage in labels_of(paper, "stage") or ["(no stage)"]:
            counts[(stage, paper["year"])] += 1
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(8, 4))
        bottom = [0] * len(years)
        for index, stage in enumerate(list(stages) + ["(no stage)"]):
            heights = [counts[(stage, year)] for year in years]
            colour = NO_VALUE_COLOUR if stage == "(no stage)" else PALETTE[index % len(PALETTE)]
            axes.bar([str(y) for y in years], heights, bottom=bottom, label=stage, color=colour, width=0.7)
            bottom = [b + h for b, h in zip(bottom, heights)]
        axes.set_xlabel("year of first appearance")
        axes.set_ylabel("papers (once per stage)")
        axes.legend(frameon=False, loc="upper left", fontsize=9)
        return _svg(figure)


def by_modality(atlas: Atlas) -> bytes:
    """Horizontal bars: papers per modality, in vocabulary order."""
    modalities = atlas.vocabularies["modality"].values
    counts = atlas.label_counts("modality")
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(8, 0.45 * len(modalities) + 0.8))
        values = [counts.get(m, 0) for m in modalities]
        axes.barh(list(modalities), values, color=PALETTE[0])
        axes.invert_yaxis()
        for y, value in enumerate(values):
            axes.annotate(str(value), (value, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=9)
        axes.set_xlabel("papers")
        return _svg(figure)


def top_venues(atlas: Atlas, limit: int = TOP_VENUES) -> bytes:
    """Horizontal bars: the venues with most papers, years stripped ('CVPR 2024' -> 'CVPR')."""
    counts = Counter(venue_series(p["venue"]) for p in atlas.papers)
    top = counts.most_common(limit)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(8, 0.4 * len(top) + 0.8))
        axes.barh([name for name, _ in top], [count for _, count in top], color=PALETTE[2])
        axes.invert_yaxis()
        for y, (_, count) in enumerate(top):
            axes.annotate(str(count), (count, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=9)
        axes.set_xlabel("papers")
        return _svg(figure)


FIGURES = {"year_by_stage": year_by_stage, "modality": by_modality, "venues": top_venues}
