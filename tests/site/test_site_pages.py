"""The site generator without a browser: a page per paper, escaping of hostile strings, the explorer's data, related
entries, card links, figures. One small strict build (the hostile catalog) keeps this under ~10 s."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import markdown
import pytest
from mkdocs.config import load_config
from mkdocs.structure.files import File, Files

from site_build_helpers import HOSTILE_PAPERS, SCRIPT_TITLE, TITLE_BREAKOUT
from site_tools.bibtex import paper_to_bibtex
from site_tools.catalog import REPO_ROOT, card_names, load_catalog, load_schema
from site_tools.site import hooks, markup, pages
from site_tools.site.atlas import Atlas, venue_series
from site_tools.site.explorer import explorer_data
from site_tools.site.plots import top_venues


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def generated(catalog):
    """The files the hook adds for the real catalog: src_uri -> content (nothing rendered, no theme)."""
    config = load_config(str(REPO_ROOT / "mkdocs.yml"))
    config = config.plugins.on_config(config)  # runs the site's hook as mkdocs does (and the search plugin's)
    files = config.plugins.on_files(Files([]), config=config)
    return {file.src_uri: file.content_bytes for file in files}


def markdown_to_html(text: str) -> str:
    """Render generated Markdown with the site's extension list, as mkdocs does."""
    config = load_config(str(REPO_ROOT / "mkdocs.yml"))
    return markdown.Markdown(extensions=config.markdown_extensions,
                             extension_configs=config.mdx_configs).convert(text)


def test_every_paper_has_a_page_with_its_title_bibtex_and_labels(catalog, generated):
    paper_pages = {uri for uri in generated if uri.startswith("papers/")}
    assert paper_pages == {f"papers/{paper['id']}.md" for paper in catalog}
    for paper in catalog:
        text = generated[f"papers/{paper['id']}.md"].decode()
        # front matter first: paper pages rank above the card pages that repeat their words in the site search
        assert text.startswith(pages.PAPER_FRONT_MATTER + f"\n# {markup.text(paper['title'])}\n")
        assert paper_to_bibtex(paper).rstrip() in text, "the BibTeX entry, verbatim in a code block"
        assert f"?contribution={paper['contribution']})" in text, "contribution badge links to the explorer"
        for stage in paper.get("stage", []):
            assert f"?stage={stage})" in text
        for source in paper["sources"]:  # each source list links to the explorer filtered by it
            assert f"?sources={source})" in text


def test_site_pages_cover_the_vocabularies_and_downloads(catalog, generated):
    schema = load_schema()["properties"]
    for field in ("stage", "modality"):
        for value in schema[field]["items"]["enum"]:
            assert f"taxonomy/{field}/{value}.md" in generated
    for uri in ("taxonomy/index.md", "benchmarks.md", "stats.md", "explorer/papers.json", "catalog.json",
                "catalog.bib", "catalog.csv", *pages.PLOTS.values()):
        assert uri in generated, uri
    assert len(json.loads(generated["catalog.json"])) == len(catalog)
    assert generated["catalog.bib"].decode().count("\n@") + 1 == len(catalog)


def test_explorer_json_matches_the_catalog(catalog, generated):
    data = json.loads(generated["explorer/papers.json"])
    rows = {row["id"]: row for row in data["papers"]}
    assert set(rows) == {paper["id"] for paper in catalog}
    for paper in catalog:
        row = rows[paper["id"]]
        assert (row["title"], row["year"], row["venue"]) == (paper["title"], paper["year"], paper["venue"])
        assert row.get("month") == paper.get("month")
        assert row.get("aliases", []) == paper.get("aliases", [])
        assert row.get("authors", []) == paper.get("authors", [])
        assert row["contribution"] == paper["contribution"]
        for field in ("stage", "modality", "model_family", "target"):
            assert row.get(field, []) == paper.get(field, []), (paper["id"], field)
        assert row.get("code") == paper["links"].get("code")
        assert row.get("card") == (card_names(paper.get("method_card")) or None), "always a list of names"
        assert row.get("venue_series", row["venue"]) == venue_series(paper["venue"])
        assert row["sources"] == paper["sources"], "the source-list filter reads it"
        assert "summary" not in row and "notes" not in row, "only what the table needs"
    schema = load_schema()["properties"]
    facets = {facet["key"]: [value for value, _ in facet["values"]] for facet in data["facets"]}
    for field in ("stage", "modality", "model_family", "target"):
        assert facets[field] == schema[field]["items"]["enum"]
    assert facets["contribution"] == schema["contribution"]["enum"]
    assert facets["sources"] == schema["sources"]["items"]["enum"]  # the three lists, then contributed
    meanings = {facet["key"]: dict(facet["values"]) for facet in data["facets"]}["sources"]
    assert all(meanings.values()) and "beyond the three source lists" in meanings["contributed"]
    assert set(facets["year"]) == {str(paper["year"]) for paper in catalog}
    assert data["paper_url"] == "papers/{id}/"


def test_explorer_json_stays_compact():
    # 1,000 papers must stay under 1 MB; long titles and ten authors each are a pessimistic entry.
    paper = {"id": "someone2024long", "title": "T" * 150, "aliases": ["A" * 40], "authors": ["Firstname Lastname"] * 10,
             "year": 2024, "month": 5, "venue": "NeurIPS 2024 Workshop", "contribution": "method",
             "stage": ["training-time", "architecture-constrained"], "modality": ["image", "text"],
             "model_family": ["stable-diffusion"], "target": ["nsfw", "style"], "summary": "S" * 1200,
             "links": {"code": "https://github.com/someone/some-repository"}, "sources": ["contributed"]}
    papers = [dict(paper, id=f"someone2024long{i}") for i in range(1000)]
    size = len(json.dumps(explorer_data(Atlas(papers), "papers/{id}/", {}), separators=(",", ":")).encode())
    assert size < 1_000_000, size


@pytest.mark.parametrize("hostile", [
    SCRIPT_TITLE, TITLE_BREAKOUT, "*em* __strong__ [link](javascript:alert(1)) ![img](x) `code`",
    "<!-- c --> &lt; &amp; {#anchor} | cell | $math$ :emoji: ~~del~~ \\ trailing", "# heading\n\n    indented\n- item",
])
def test_markup_text_renders_literally(hostile):
    rendered = markdown_to_html(f"# {markup.text(hostile)}\n\n{markup.text(hostile)}\n\n"
                                + markup.table(["a"], [[markup.text(hostile)]]))
    expected = html.escape(" ".join(hostile.split()), quote=False)
    assert rendered.count(expected) == 3, rendered
    for markup_tag in ("<script", 'href="javascript', "<img", "<em>", "<strong>", "<code>", "<del>", "<li>", "<pre>"):
        assert markup_tag not in rendered


def test_markup_refuses_non_http_links_and_fences_cannot_be_closed():
    with pytest.raises(ValueError):
        markup.url("javascript:alert(1)")
    assert markup.url("https://example.org/a b(c)") == "https://example.org/a%20b%28c%29"
    block = markup.code_block("x ``` y ```` z")
    assert block.startswith("`````\n") and block.endswith("\n`````")


def test_hostile_catalog_renders_as_text(hostile_site: Path):
    page = (hostile_site / "papers" / "evil2024script" / "index.html").read_text()
    assert "<h1 id=" in page and "&lt;script&gt;alert(1)&lt;/script&gt; Unlearning" in page
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; Unlearning - " in page
    assert "IEEE S&amp;P 2024 Workshop" in page
    raw = re.compile(r"<(script>alert|/title><script|img src=x|iframe|svg onload|style>body)")
    scanned = 0
    for path in hostile_site.rglob("*"):
        if path.suffix in (".html", ".xml", ".svg") or path.name == "search_index.json":
            scanned += 1
            text = path.read_text(encoding="utf-8")
            assert not raw.search(text), f"unescaped catalog markup in {path}"
            assert path.suffix == ".json" or "S&P 2024" not in text, f"unescaped '&' of the venue in {path}"
    assert scanned > 20
    search = json.loads((hostile_site / "search" / "search_index.json").read_text())
    docs = [doc for doc in search["docs"] if doc["location"].startswith("papers/evil2024script/")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Unlearning" in [doc["title"] for doc in docs]
    # Title, other names, authors and summary are page text, so Material's search finds the paper by any of them.
    indexed = " ".join(doc["title"] + " " + doc["text"] for doc in docs)
    for words in ("&lt;/title&gt;&lt;script&gt;alert(2)&lt;/script&gt; Erasure", "Ann O'Hara &amp;",
                  "&lt;img src=x onerror=alert(4)&gt;", "not code, **not bold**"):
        assert words in indexed, words
    explorer = json.loads((hostile_site / "explorer" / "papers.json").read_text())
    assert {row["title"] for row in explorer["papers"]} == {paper["title"] for paper in HOSTILE_PAPERS}


def test_hostile_benchmark_is_listed_with_its_users(hostile_site: Path):
    page = (hostile_site / "benchmarks" / "index.html").read_text()
    heading = re.search(r'<h2 id="bench-evil2024script">(.*?)<a class="headerlink"', page).group(1)
    assert heading == "&lt;script&gt;alert(1)&lt;/script&gt; Unlearning"
    assert "Evaluated on by 2 papers" in page
    method = (hostile_site / "papers" / "plain2024method" / "index.html").read_text()
    assert "Attacks on the same model family and target" in method and 'href="../plain2024attack/"' in method
    # Its executable card's page is built from notebooks/plain_card.ipynb beside the catalog, and linked.
    assert 'href="../../cards/plain_card/"' in method and "its page is not part of this build" not in method
    explorer = json.loads((hostile_site / "explorer" / "papers.json").read_text())
    assert explorer["cards"] == {name: f"cards/{name}/" for name in ("canvas_todo", "plain_card", "profile_card")}
    rows = {r["id"]: r.get("card") for r in explorer["papers"]}
    assert rows["plain2024method"] == ["plain_card"] and rows["evil2024script"] == ["canvas_todo", "profile_card"]


def test_related_entries():
    base = {"year": 2024, "venue": "arXiv", "modality": ["image"], "summary": "s", "sources": ["contributed"]}
    papers = [
        dict(base, id="m2024a", title="Method A", contribution="method", model_family=["stable-diffusion"],
             target=["nsfw", "style"], benchmarks=["b2024x"]),
        dict(base, id="m2024b", title="Method B", contribution="method", model_family=["clip"], target=["nsfw"],
             benchmarks=["b2024x"]),
        dict(base, id="a2024hit", title="Attack Hit", contribution="attack", model_family=["stable-diffusion"],
             target=["nsfw"]),
        dict(base, id="a2024miss", title="Attack Miss", contribution="attack", model_family=["stable-diffusion"],
             target=["copyright"]),
        dict(base, id="b2024x", title="Bench X", contribution="benchmark"),
    ]
    atlas = Atlas(papers)
    by_id = atlas.by_id
    assert [p["id"] for p in atlas.counterparts(by_id["m2024a"])] == ["a2024hit"]
    assert atlas.counterparts(by_id["m2024b"]) == []
    assert [p["id"] for p in atlas.counterparts(by_id["a2024hit"])] == ["m2024a"]
    assert [(b["id"], [p["id"] for p in others]) for b, others in atlas.same_benchmark(by_id["m2024a"])] == \
        [("b2024x", ["m2024b"])]
    assert [p["id"] for p in atlas.evaluated_on["b2024x"]] == ["m2024a", "m2024b"]
    assert [p["id"] for p in atlas.benchmarks] == ["b2024x"]
    # Beyond the listed ones, a page points to the explorer view holding most counterparts.
    assert pages._main_counterpart_view(by_id["m2024a"], [by_id["a2024hit"]]) == ("attack", "stable-diffusion", "nsfw")
    assert pages._main_counterpart_view(by_id["a2024hit"], [by_id["m2024a"]]) == ("method", "stable-diffusion", "nsfw")


def test_card_is_linked_only_when_its_page_is_in_the_build():
    paper = {"id": "m2024card", "title": "Carded Method", "year": 2024, "venue": "arXiv", "links": {"arxiv": "2401.00001"},
             "contribution": "method", "stage": ["training-time"], "modality": ["image"], "method_card": "esd",
             "summary": "s", "sources": ["contributed"]}
    atlas = Atlas([paper])
    unlinked = pages.paper_page(atlas, paper, {})
    assert "](../cards/esd.md)" not in unlinked and "its page is not part of this build" in unlinked
    assert "open the esd card](../cards/esd.md)" in pages.paper_page(atlas, paper, {"esd": "cards/esd.md"})
    # A list of cards (the baselines of a benchmark): each is linked.
    several = dict(paper, method_card=["ga", "npo"])
    text = pages.paper_page(Atlas([several]), several, {"ga": "cards/ga.ipynb", "npo": "cards/npo.ipynb"})
    assert "## Executable cards" in text and "](../cards/ga.ipynb)" in text and "](../cards/npo.ipynb)" in text

    hooks.state.card_url = "cards/{name}/"
    assert hooks._published_cards(["esd"], Files([])) == ({}, {})
    card = File("cards/esd.md", src_dir=str(REPO_ROOT / "docs"), dest_dir="/tmp/site", use_directory_urls=True)
    assert hooks._published_cards(["esd", "uce"], Files([card])) == ({"esd": "cards/esd.md"}, {"esd": "cards/esd/"})


def test_venue_series_and_top_venues_figure():
    assert venue_series("CVPR 2024") == "CVPR"
    assert venue_series("NeurIPS 2023 Workshop") == "NeurIPS Workshop"
    assert venue_series("arXiv") == "arXiv"
    base = {"year": 2024, "contribution": "analysis", "modality": ["image"], "summary": "s", "sources": ["contributed"]}
    venues = ["CVPR 2023", "CVPR 2024", "ICLR 2024", "Costs $5 2024"]
    atlas = Atlas([dict(base, id=f"x2024p{i}", title=f"Paper {i}", venue=v) for i, v in enumerate(venues)])
    svg = top_venues(atlas).decode()
    assert svg.startswith("<?xml") and "<svg" in svg
    assert ">CVPR<" in svg and "CVPR 2024" not in svg and "Costs $5" in svg


@pytest.mark.parametrize("venue, series", [
    ("ACM Transactions on Graphics (SIGGRAPH Asia 2023)", "ACM Transactions on Graphics (SIGGRAPH Asia)"),
    ("Proceedings of Something (2024)", "Proceedings of Something"),
    ("Journal X (Asia, 2023)", "Journal X (Asia)"),
    ("ICML, 2024", "ICML"),
    ("IEEE S&P 2024 Workshop", "IEEE S&P Workshop"),
])
def test_venue_series_keeps_brackets_tidy(venue, series):
    """A year inside brackets used to leave '(SIGGRAPH Asia )' in the venue facet."""
    assert venue_series(venue) == series
    atlas = Atlas([{"id": "x2024p", "title": "Paper", "year": 2024, "venue": venue, "contribution": "analysis",
                    "modality": ["image"], "summary": "s", "sources": ["contributed"]}])
    facet = next(f for f in explorer_data(atlas, "papers/{id}/", {})["facets"] if f["key"] == "venue")
    assert facet["values"] == [[series, ""]]


def test_home_page_counts_entries_from_the_lists_and_beyond():
    """Issue 16: how many entries come from the source lists and how many were added beyond them, from the data."""
    base = {"year": 2024, "venue": "arXiv", "contribution": "analysis", "modality": ["image"], "summary": "s"}
    sources = [["awesome-vgm-vlm-unlearning"], ["awesome-vgm-vlm-unlearning", "multimodal-unlearning-survey"],
               ["multimodal-unlearning-survey"], ["contributed"], ["contributed"], ["contributed"]]
    atlas = Atlas([dict(base, id=f"x2024p{i}", title=f"Paper {i}", sources=s) for i, s in enumerate(sources)])
    text = pages.home_counts(atlas, "index.md")
    assert "**3 from the 3 source lists**" in text
    assert "[awesome\\-vgm\\-vlm\\-unlearning](explorer.md?sources=awesome-vgm-vlm-unlearning) 2" in text
    assert "[multimodal\\-unlearning\\-survey](explorer.md?sources=multimodal-unlearning-survey) 2" in text
    assert "(explorer.md?sources=awesome-generative-image-unlearning) 0" in text
    assert "**[3 added beyond them](explorer.md?sources=contributed)**" in text
    real = Atlas(load_catalog())
    beyond = sum(1 for p in real.papers if p["sources"] == ["contributed"])
    assert f"**{len(real.papers) - beyond} from the 3 source lists**" in pages.home_counts(real, "index.md")
