"""Markdown of the generated pages: one per paper, the taxonomy views, benchmarks, statistics, and the generated
sections of the hand-written pages (home counts, contributing field tables).

Pages are addressed by their source path inside the docs folder (``papers/<id>.md``); links between them are
relative Markdown links to those paths, so mkdocs checks every one of them in a strict build. Catalog strings go
through :mod:`.markup` (``md.text``) before they reach Markdown.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from typing import Any, Callable
from urllib.parse import urlencode

from site_tools.bibtex import paper_to_bibtex
from site_tools.catalog import card_names, load_schema
from site_tools.entries import FIELD_ORDER, render_yaml
from site_tools.export import stats

from . import markup as md
from .atlas import (CONTRIBUTED, LABEL_FIELDS, SOURCE_FIELD, Atlas, labels_of, month_year, sort_key_recent,
                    venue_and_year)
from .cards import LEADERBOARDS, Card, headline, provenance

# Source paths of the site's pages (inside the docs folder); URLs follow from them (papers/<id>.md -> papers/<id>/).
EXPLORER = "explorer.md"
EXPLORER_DATA = "explorer/papers.json"
TAXONOMY = "taxonomy/index.md"
BENCHMARKS = "benchmarks.md"
STATS = "stats.md"
DOWNLOADS = {"json": "catalog.json", "bib": "catalog.bib", "csv": "catalog.csv"}
TAXONOMY_FIELDS = ("stage", "modality")  # fields with a page per value
PLOTS = {
    "year_by_stage": "stats/papers-per-year-by-stage.svg",
    "modality": "stats/papers-by-modality.svg",
    "venues": "stats/top-venues.svg",
}

# Front matter of generated pages that have no useful table of contents; the content takes its width.
HIDE_TOC = "---\nhide:\n  - toc\n---\n"

# Attribute list of headings whose section stays out of the search index: the BibTeX repeats the page, and related
# lists name other papers, which would make a title search return every page that mentions it.
NOT_SEARCHED = "{ data-search-exclude }"

# A paper's page is where its own words (title, aliases, summary) are the subject, so Material's search ranks it above
# pages that only mention them: card pages repeat a paper's method names and terms throughout their notebooks (an
# attack card's notebook names every method it attacks), and without the boost a search for a phrase of a paper's
# summary listed several card pages before the paper.
PAPER_FRONT_MATTER = "---\nsearch:\n  boost: 2\n---\n"

# How many entries a "related" list shows before pointing to the page or explorer view that has them all.
RELATED_LIMIT = 12


def paper_src(paper_id: str) -> str:
    return f"papers/{paper_id}.md"


def taxonomy_src(field: str, value: str) -> str:
    return f"taxonomy/{field}/{value}.md"


def relative(from_src: str, to_src: str) -> str:
    """The Markdown link from one docs source file to another (mkdocs turns it into the right URL)."""
    return posixpath.relpath(to_src, posixpath.dirname(from_src) or ".")


def explorer_link(from_src: str, **filters: Any) -> str:
    """A link to the explorer with filters preset (the explorer reads its state from the query string)."""
    query = urlencode({key: value for key, value in filters.items() if value not in (None, "")})
    return relative(from_src, EXPLORER) + (f"?{query}" if query else "")


def badge(from_src: str, atlas: Atlas, field: str, value: str) -> str:
    """A label value linking to the explorer filtered by it; the value's meaning from the schema is its tooltip."""
    meaning = atlas.vocabularies[field].meanings.get(value, "")
    tooltip = f' title="{md.attribute_value(meaning)}"' if meaning else ""
    return md.link(value, explorer_link(from_src, **{field: value}), f"{{ .atlas-badge .atlas-badge--{field}{tooltip} }}")


def paper_reference(from_src: str, paper: dict[str, Any]) -> str:
    """'Title · Venue Year' with the title linking to the paper's page."""
    return f"{md.link(paper['title'], relative(from_src, paper_src(paper['id'])))} · {md.text(venue_and_year(paper))}"


def paper_list(from_src: str, papers: list[dict[str, Any]], limit: int | None = None) -> str:
    shown = papers if limit is None else papers[:limit]
    return "\n".join(f"- {paper_reference(from_src, p)}" for p in shown)


# --- paper pages ------------------------------------------------------------------------------------------------------

def paper_links(paper: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, address) of every way to read or run the paper, most direct first."""
    links = paper.get("links", {})
    out: list[tuple[str, str]] = []
    if links.get("arxiv"):
        out.append(("arXiv", f"https://arxiv.org/abs/{links['arxiv']}"))
    if links.get("pdf"):
        out.append(("PDF", links["pdf"]))
    elif links.get("arxiv"):
        out.append(("PDF", f"https://arxiv.org/pdf/{links['arxiv']}"))
    elif links.get("openreview"):
        out.append(("PDF", f"https://openreview.net/pdf?id={links['openreview']}"))
    if links.get("openreview"):
        out.append(("OpenReview", f"https://openreview.net/forum?id={links['openreview']}"))
    if links.get("url"):
        out.append(("Publisher page", links["url"]))
    if links.get("doi"):
        out.append(("DOI", f"https://doi.org/{links['doi']}"))
    if links.get("code"):
        out.append(("Code", links["code"]))
    if links.get("project"):
        out.append(("Project page", links["project"]))
    return out


def paper_page(atlas: Atlas, paper: dict[str, Any], card_pages: dict[str, str],
               cards: dict[str, Card] | None = None) -> str:
    """The page of one paper. `card_pages` maps executable card names to the source path of their page; `cards`
    gives what is known of each card (testbed, latest results)."""
    src = paper_src(paper["id"])
    parts = [PAPER_FRONT_MATTER, f"# {md.text(paper['title'])}", ""]
    if paper.get("authors"):
        parts += [md.text(", ".join(paper["authors"])), ""]
    parts += [f"**{md.text(paper['venue'])}** · first appeared {md.text(month_year(paper))}", ""]
    buttons = [md.link(label, md.url(address), "{ .md-button .atlas-link }") for label, address in paper_links(paper)]
    parts += [" ".join(buttons), ""]

    rows = []
    for field in LABEL_FIELDS:
        values = labels_of(paper, field)
        if values:
            rows.append([md.text(atlas.vocabularies[field].title), " ".join(badge(src, atlas, field, v) for v in values)])
    if paper.get("background"):
        rows.append(["Background", "cited as background work, not as unlearning work"])
    parts += [md.table(["Label", "Values"], rows), ""]

    if paper.get("aliases"):
        parts += ["Also known as: " + "; ".join(f"*{md.text(alias)}*" for alias in paper["aliases"]), ""]
    parts += ["## Summary", "", md.text(paper["summary"]), ""]

    benchmarks = [atlas.by_id[b] for b in paper.get("benchmarks") or [] if b in atlas.by_id]
    if benchmarks:
        parts += ["## Benchmarks used", "", paper_list(src, benchmarks), ""]

    names = card_names(paper.get("method_card"))
    if names:
        parts += card_section(src, names, card_pages, cards or {})

    # No syntax highlighting: its per-token spans made up most of a paper page's markup and search-indexing time.
    parts += [f"## BibTeX {NOT_SEARCHED}", "", md.code_block(paper_to_bibtex(paper)), ""]
    parts += related_section(atlas, paper, src)
    if paper.get("notes"):
        parts += ["## Notes", "", md.text(paper["notes"]), ""]
    sources = ", ".join(f"[{md.text(name)}]({explorer_link(src, **{SOURCE_FIELD: name})})"
                        for name in paper[SOURCE_FIELD])
    parts += [f"<small>Catalog entry: {md.code('catalog/papers/' + paper['id'] + '.yaml')} · "
              f"sources: {sources}</small>", ""]
    return "\n".join(parts)


def card_section(src: str, names: list[str], card_pages: dict[str, str], cards: dict[str, Card]) -> list[str]:
    """The executable card(s) of a paper: a link to each card's page with its testbed and latest headline results."""
    several = len(names) > 1
    parts = ["## Executable cards" if several else "## Executable card", "",
             ("This entry has executable cards: reference implementations with notebooks that run on a small testbed "
              "(the latest results are on each card's page and on the leaderboards)." if several else
              "This entry has an executable card: a reference implementation with a notebook that runs on a small "
              "testbed (the latest results are on the card's page and on the leaderboards)."), ""]
    for name in names:
        card = cards.get(name)
        if name in card_pages:
            label = f"open the {name} card" if card is None else f"{card.label} ({name})"
            item = md.link(label, relative(src, card_pages[name]))
        else:
            item = f"{md.code(name)} (notebooks/{md.text(name)}.ipynb); its page is not part of this build"
        if card is not None:
            item += f" · {md.text(card.testbed.title)}"
            item += f": {headline(card)} ({provenance(card)})" if card.executed else f": {provenance(card)}"
        parts.append(f"- {item}")
    return parts + ["", f"The [leaderboards]({relative(src, LEADERBOARDS)}) compare every card of a testbed.", ""]


def related_section(atlas: Atlas, paper: dict[str, Any], src: str) -> list[str]:
    parts: list[str] = []
    for benchmark, others in atlas.same_benchmark(paper):
        title = f"Other papers evaluated on {md.link(benchmark['title'], relative(src, paper_src(benchmark['id'])))}"
        parts += [f"### {title} {NOT_SEARCHED}", "", paper_list(src, others, RELATED_LIMIT), ""]
        if len(others) > RELATED_LIMIT:
            more = relative(src, BENCHMARKS) + f"#{benchmark_anchor(benchmark['id'])}"
            parts += [f"{len(others) - RELATED_LIMIT} more on the [benchmarks page]({more}).", ""]
    counterparts = atlas.counterparts(paper)
    if counterparts:
        heading = ("Attacks on the same model family and target" if paper["contribution"] != "attack"
                   else "Methods and defences for the same model family and target")
        parts += [f"### {heading} {NOT_SEARCHED}", "", paper_list(src, counterparts, RELATED_LIMIT), ""]
        if len(counterparts) > RELATED_LIMIT:
            contribution, family, target = _main_counterpart_view(paper, counterparts)
            view = explorer_link(src, contribution=contribution, model_family=family, target=target)
            parts += [f"{len(counterparts) - RELATED_LIMIT} more; the explorer lists every {md.text(contribution)} "
                      f"on {md.text(family)} targeting {md.text(target)} [here]({view}).", ""]
    users = atlas.evaluated_on.get(paper["id"], [])
    if users:
        parts += [f"### Evaluated on this entry {NOT_SEARCHED}", "", paper_list(src, users, RELATED_LIMIT), ""]
        if len(users) > RELATED_LIMIT:
            more = relative(src, BENCHMARKS) + f"#{benchmark_anchor(paper['id'])}"
            parts += [f"All {len(users)} are on the [benchmarks page]({more}).", ""]
    return ([f"## Related {NOT_SEARCHED}", ""] + parts) if parts else []


def _main_counterpart_view(paper: dict[str, Any], counterparts: list[dict[str, Any]]) -> tuple[str, str, str]:
    """The contribution, model family and target of the explorer view that holds most of a paper's counterparts
    (the explorer filters one value per field, so the family and target most of them share with the paper)."""
    families, targets = set(labels_of(paper, "model_family")), set(labels_of(paper, "target"))
    pairs = Counter((family, target) for other in counterparts
                    for family in sorted(families & set(labels_of(other, "model_family")))
                    for target in sorted(targets & set(labels_of(other, "target"))))
    (family, target), _ = pairs.most_common(1)[0]
    return ("attack" if paper["contribution"] != "attack" else "method"), family, target


# --- taxonomy ---------------------------------------------------------------------------------------------------------

def taxonomy_page(atlas: Atlas, field: str, value: str) -> str:
    src = taxonomy_src(field, value)
    vocabulary = atlas.vocabularies[field]
    papers = atlas.with_label(field, value)
    other = "modality" if field == "stage" else "stage"
    rows = [[md.link(p["title"], relative(src, paper_src(p["id"]))), str(p["year"]), md.text(p["venue"]),
             md.text(p["contribution"]), md.text(", ".join(labels_of(p, other))),
             md.text(", ".join(labels_of(p, "model_family")))] for p in papers]
    parts = [f"# {md.text(vocabulary.title)}: {md.text(value)}", "",
             md.text(vocabulary.meanings.get(value, "")), "",
             f"{len(papers)} paper{'s' if len(papers) != 1 else ''}, newest first · "
             f"[open in the explorer]({explorer_link(src, **{field: value})}) · "
             f"[all {md.text(vocabulary.title.lower())} values]({relative(src, TAXONOMY)})", ""]
    if rows:
        parts += ['<div class="atlas-papers" markdown>', "",
                  md.table(["Paper", "Year", "Venue", "Contribution", md.text(atlas.vocabularies[other].title),
                            "Model family"], rows), "", "</div>"]
    return "\n".join([HIDE_TOC] + parts) + "\n"


def taxonomy_index(atlas: Atlas) -> str:
    src = TAXONOMY
    parts = ["# Taxonomy", "",
             "Entries are labelled with the five intervention stages of the multimodal unlearning survey and with the "
             "modalities their models handle. A paper can carry several values of each.", ""]
    for field in TAXONOMY_FIELDS:
        vocabulary = atlas.vocabularies[field]
        counts = atlas.label_counts(field)
        rows = [[md.link(v, relative(src, taxonomy_src(field, v))), str(counts.get(v, 0)),
                 md.text(vocabulary.meanings.get(v, ""))] for v in vocabulary.values]
        parts += [f"## {md.text(vocabulary.title)}", "", md.text(vocabulary.description), "",
                  md.table(["Value", "Papers", "Meaning"], rows), ""]
    stages, modalities = atlas.vocabularies["stage"].values, atlas.vocabularies["modality"].values
    counts = atlas.matrix("stage", "modality")
    header = [md.text("Stage \\ modality")] + [md.link(m, relative(src, taxonomy_src("modality", m))) for m in modalities]
    rows = []
    for stage in stages:
        cells = [md.link(stage, relative(src, taxonomy_src("stage", stage)))]
        for modality in modalities:
            count = counts.get((stage, modality), 0)
            cells.append(f"[{count}]({explorer_link(src, stage=stage, modality=modality)})" if count else "·")
        rows.append(cells)
    parts += ["## Stage × modality", "",
              "Papers with both labels; each count opens the explorer filtered to them. Entries without a stage "
              "(attacks, benchmarks, surveys, analyses and background work) are not counted.", "",
              '<div class="atlas-matrix" markdown>', "", md.table(header, rows), "", "</div>", ""]
    return "\n".join(parts)


# --- benchmarks -------------------------------------------------------------------------------------------------------

def benchmark_anchor(paper_id: str) -> str:
    return f"bench-{paper_id}"


def benchmarks_page(atlas: Atlas) -> str:
    src = BENCHMARKS
    parts = ["# Benchmarks and datasets", "",
             "Every benchmark or dataset entry of the catalog, and every entry that some paper lists under "
             "`benchmarks`, with the papers that evaluate on it. Most used first.", ""]
    for entry in atlas.benchmarks:
        users = atlas.evaluated_on.get(entry["id"], [])
        parts += [f"## {md.text(entry['title'])} {{ #{benchmark_anchor(entry['id'])} }}", "",
                  f"{md.link('Entry page', relative(src, paper_src(entry['id'])))} · {md.text(entry['contribution'])} · "
                  f"{md.text(venue_and_year(entry))}", "",
                  md.text(entry["summary"]), ""]
        if users:
            parts += [f"Evaluated on by {len(users)} paper{'s' if len(users) != 1 else ''}:", "", paper_list(src, users), ""]
        else:
            parts += ["No catalog entry lists it under `benchmarks` yet.", ""]
    return "\n".join(parts)


# --- statistics -------------------------------------------------------------------------------------------------------

def stats_page(atlas: Atlas) -> str:
    src = STATS
    counts = stats(atlas.papers)
    parts = ["# Statistics", "",
             f"{len(atlas.papers)} papers. A paper with two values of a label (two stages, say) counts once for each. "
             "The figures are drawn from the catalog when the site is built.", "",
             "## Papers per year by intervention stage", "",
             f"![Papers per year, stacked by intervention stage]({relative(src, PLOTS['year_by_stage'])}){{ .atlas-plot }}", "",
             "## Papers by modality", "",
             f"![Papers by modality]({relative(src, PLOTS['modality'])}){{ .atlas-plot }}", "",
             "## Top venues", "",
             "Venues without their year: CVPR 2023 and CVPR 2024 both count as CVPR.", "",
             f"![Papers per venue]({relative(src, PLOTS['venues'])}){{ .atlas-plot }}", "",
             "## Counts", ""]
    parts += ['<div class="atlas-counts" markdown>', ""]
    for field in ("contribution", "stage", "modality", "model_family"):
        rows = []
        for value, count in counts[field].most_common():
            label = md.text(value) if value == "(none)" else f"[{md.text(value)}]({explorer_link(src, **{field: value})})"
            rows.append([label, str(count)])
        parts += [md.table([md.text(atlas.vocabularies[field].title), "Papers"], rows), ""]
    rows = [[f"[{year}]({explorer_link(src, year=year)})", str(count)] for year, count in sorted(counts["year"].items())]
    parts += [md.table(["Year", "Papers"], rows), "", "</div>", ""]
    return "\n".join(parts)


# --- generated sections of hand-written pages -------------------------------------------------------------------------

def home_counts(atlas: Atlas, src: str) -> str:
    contributions = atlas.label_counts("contribution")
    with_code = sum(1 for p in atlas.papers if p.get("links", {}).get("code"))
    with_card = sum(1 for p in atlas.papers if p.get("method_card"))
    years = [p["year"] for p in atlas.papers]
    vocabulary = atlas.vocabularies["contribution"]
    rows = [[f"[{md.text(value)}]({explorer_link(src, contribution=value)})", str(contributions[value]),
             md.text(vocabulary.meanings.get(value, ""))] for value in vocabulary.values if contributions.get(value)]
    span = f", {min(years)}–{max(years)}" if years else ""
    cards = (f"[{with_card} with an executable card]({explorer_link(src, card=1)})" if with_card
             else "executable cards to come")
    return "\n".join([
        f"**{len(atlas.papers)} papers**{span} · {with_code} with official code · {cards} · "
        f"{len(atlas.benchmarks)} [benchmarks and datasets]({relative(src, BENCHMARKS)})", "",
        source_counts(atlas, src), "",
        md.table(["Contribution", "Papers", "Meaning"], rows)])


def source_counts(atlas: Atlas, src: str) -> str:
    """How many entries come from the curated source lists (and from each list), and how many were added beyond
    them; each count opens the explorer filtered by that source."""
    lists = atlas.source_lists
    counts = Counter(value for paper in atlas.papers for value in paper.get(SOURCE_FIELD) or [])
    from_lists, beyond = len(atlas.from_source_lists()), len(atlas.beyond_source_lists())
    per_list = ", ".join(f"[{md.text(name)}]({explorer_link(src, **{SOURCE_FIELD: name})}) {counts[name]}"
                         for name in lists)
    added = f"{beyond} added beyond them"
    if beyond:
        added = f"[{added}]({explorer_link(src, **{SOURCE_FIELD: CONTRIBUTED})})"
    return (f"**{from_lists} from the {len(lists)} source lists** ({per_list}; a paper can be in several) · "
            f"**{added}**")


def recent_papers(atlas: Atlas, src: str, count: int = 8) -> str:
    return paper_list(src, sorted(atlas.papers, key=sort_key_recent), count)


def schema_fields(atlas: Atlas, src: str) -> str:
    """The schema's fields as a table: name, requirement, title and description, type, allowed values."""
    schema = load_schema()
    required = set(schema.get("required", []))
    conditional = {name for rule in schema.get("allOf", []) for name in rule.get("then", {}).get("required", [])}
    properties = schema["properties"]
    order = [name for name in FIELD_ORDER if name in properties] + [n for n in properties if n not in FIELD_ORDER]
    rows = []
    for name in order:
        spec = properties[name]
        need = "yes" if name in required else ("for some entries" if name in conditional else "no")
        rows.append([md.code(name), need, f"**{md.text(spec.get('title', ''))}**: {md.text(spec.get('description', ''))}",
                     _type_summary(spec)])
        for sub_name, sub_spec in (spec.get("properties") or {}).items():
            rows.append([md.code(f"{name}.{sub_name}"), "no", f"**{md.text(sub_spec.get('title', ''))}**: "
                         f"{md.text(sub_spec.get('description', ''))}", _type_summary(sub_spec)])
    return md.table(["Field", "Required", "Meaning", "Type"], rows)


def _type_summary(spec: dict[str, Any]) -> str:
    kind = spec.get("type", "")
    items = spec.get("items", {})
    if isinstance(kind, list):  # e.g. method_card: one name or a list of names
        return " or ".join(_type_summary({**spec, "type": one}) for one in kind)
    if kind == "array":
        inner = "one of the values below" if "enum" in items else items.get("type", "value")
        return md.text(f"list of {inner}")
    if "enum" in spec:
        return md.text("one of the values below")
    if spec.get("pattern") and len(spec["pattern"]) > 80:  # e.g. the venue: its vocabulary is in the description
        return md.text(f"{kind} in the format of the description")
    if spec.get("pattern"):
        return md.text(kind) + f" matching {md.code(spec['pattern'])}"
    return md.text(kind)


def schema_vocabularies(atlas: Atlas, src: str) -> str:
    """Every controlled vocabulary of the schema with the meaning of each value (x-enum-descriptions)."""
    properties = load_schema()["properties"]
    parts = []
    for name, spec in properties.items():
        values_spec = spec.get("items", spec)
        if "enum" not in values_spec:
            continue
        meanings = values_spec.get("x-enum-descriptions", {})
        rows = [[md.code(value), md.text(meanings.get(value, ""))] for value in values_spec["enum"]]
        parts += [f"### {md.code(name)}: {md.text(spec.get('title', ''))}", "", md.table(["Value", "Meaning"], rows), ""]
    return "\n".join(parts)


def example_entry(atlas: Atlas, src: str) -> str:
    """A real entry as it is written on disk: the most complete method entry (ties: the oldest id)."""
    candidates = [p for p in atlas.papers if p["contribution"] == "method"] or atlas.papers
    if not candidates:
        return "The catalog is empty."
    # Most fields first, then one with code; max() keeps the first (lowest id) of equals.
    example = max(candidates, key=lambda p: (len(p), "code" in p.get("links", {})))
    return (f"For instance {md.code('catalog/papers/' + example['id'] + '.yaml')}:\n\n"
            + md.code_block(render_yaml(example), "yaml"))


# Markers a hand-written page can contain, as <!-- atlas:NAME -->, and the generator that replaces each.
SECTIONS: dict[str, Callable[[Atlas, str], str]] = {
    "counts": home_counts,
    "recent": recent_papers,
    "schema-fields": schema_fields,
    "schema-vocabularies": schema_vocabularies,
    "example-entry": example_entry,
}
