"""mkdocs hooks (registered under ``hooks:`` in mkdocs.yml) that render the catalog into the site at build time.

- ``on_config``: load and validate the catalog (``ATLAS_PAPERS_DIR`` points the build at another papers folder,
  e.g. a synthetic catalog for benchmarks or a hostile one for tests), find the executable cards (notebooks beside
  the catalog, results under ``ATLAS_RESULTS_DIR`` or results/; see :mod:`.cards`), and add the per-stage and
  per-modality pages to the Taxonomy section of the nav and the card pages to the Method cards section.
- ``on_files``, in two steps: first (before mkdocs-jupyter's own ``on_files``) add each card's notebook as
  ``cards/<name>.ipynb``, which mkdocs-jupyter turns into the page ``cards/<name>/`` showing the saved outputs;
  then (after every plugin) add the generated pages and files: papers/<id>.md, taxonomy, benchmarks, statistics
  with SVG figures, the cards index, the leaderboards with their plot, each card's metrics.json and figure, the
  explorer's JSON and the downloads. A paper links its card only when the card page is part of the build.
- ``on_page_markdown``: fill the ``<!-- atlas:NAME -->`` markers of hand-written pages with generated sections, and
  give paper pages an HTML-escaped title (the theme prints ``page.title | striptags``, which would turn an escaped
  ``&lt;/title&gt;`` back into markup).
- ``on_page_content``: put the header of a card page (its catalog entries, testbed, latest results and the command
  that reproduces them) above the rendered notebook.
- the robustness pages: one per testbed with robustness-matrix results (``results/<testbed>/matrix/``; see
  :mod:`.robustness`), in the nav beside the leaderboards, with each cell's results file for download.
- ``on_serve``: rebuild when the catalog, its schema, the notebooks or the results change during ``mkdocs serve``.

Nothing generated is written to docs/: every page exists only in the build.
"""

from __future__ import annotations

import html
import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from markdown import Markdown
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import CombinedEvent, event_priority
from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.structure.pages import Page

# mkdocs loads this file by its path; import `site_tools` from the checkout this file is in, not from whichever
# checkout the environment has installed (worktrees may share one virtual environment).
_CHECKOUT = str(Path(__file__).resolve().parents[2])
if _CHECKOUT not in sys.path:
    sys.path.insert(0, _CHECKOUT)

from site_tools.bibtex import catalog_to_bibtex  # noqa: E402
from site_tools.catalog import (NOTEBOOKS_DIR, PAPERS_DIR, RESULTS_DIR, SCHEMA_PATH, CatalogError, card_names,
                                load_catalog, notebooks_dir_for)
from site_tools.export import to_csv, to_json
from site_tools.site import cards, explorer, pages, plots, robustness
from site_tools.site.atlas import Atlas

log = logging.getLogger("mkdocs.hooks.atlas")

PAPERS_DIR_VARIABLE = "ATLAS_PAPERS_DIR"
# Where an executable card's page is expected, relative to the site root; mkdocs.yml's extra.atlas.card_url overrides.
DEFAULT_CARD_URL = "cards/{name}/"
REQUIRED_EXTENSION = "pymdownx.escapeall"  # site_tools.site.markup relies on it to render catalog strings literally
MARKER = re.compile(r"<!--\s*atlas:([a-z-]+)\s*-->")
JUPYTER_PLUGIN = "mkdocs-jupyter"  # renders the card notebooks; without it, cards are named but have no page
EMPTY_MATHJAX = '<script src=""> </script>'
# Search weight of a card page (Material's per-page `search.boost`; paper pages have 2, see pages.PAPER_FRONT_MATTER).
# A card's notebook repeats the names and terms of the methods it implements, attacks or compares with (an attack
# card's names every erasure method it circumvents), so without this a phrase of a paper's summary found card pages
# before the paper; a card's own name or title still finds its page, which is the only page about it.
CARD_SEARCH_BOOST = 0.5


class _State:
    """What one build knows: the catalog, the titles of the paper pages it generated, and the executable cards."""

    atlas: Atlas | None = None
    papers_dir: Path = PAPERS_DIR
    card_url: str = DEFAULT_CARD_URL
    paper_titles: dict[str, str] = {}
    notebooks_dir: Path = NOTEBOOKS_DIR
    results_dir: Path = RESULTS_DIR
    cards: list[cards.Card] = []
    card_pages: dict[str, str] = {}  # name -> source path of the card's page, for the cards whose page is built


state = _State()


def papers_dir() -> Path:
    configured = os.environ.get(PAPERS_DIR_VARIABLE)
    return Path(configured).resolve() if configured else PAPERS_DIR


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    if REQUIRED_EXTENSION not in config.markdown_extensions:
        raise PluginError(f"the atlas pages need the {REQUIRED_EXTENSION} Markdown extension (see mkdocs.yml); "
                          "without it catalog strings could be read as Markdown")
    state.papers_dir = papers_dir()
    state.card_url = (config.extra.get("atlas") or {}).get("card_url", DEFAULT_CARD_URL)
    try:
        state.atlas = Atlas(load_catalog(state.papers_dir))
    except CatalogError as exc:
        raise PluginError(f"cannot build the site from {state.papers_dir}: {exc}") from None
    state.paper_titles = {}
    state.notebooks_dir = notebooks_dir_for(state.papers_dir)
    state.results_dir = cards.results_dir()
    try:
        state.cards = cards.discover(state.notebooks_dir, state.results_dir, state.atlas)
    except cards.CardError as exc:
        raise PluginError(f"cannot build the card pages: {exc}") from None
    state.card_pages = {}
    _add_taxonomy_to_nav(config)
    if _renders_notebooks(config):
        _add_cards_to_nav(config)
    return config


def _renders_notebooks(config: MkDocsConfig) -> bool:
    return JUPYTER_PLUGIN in config.plugins


def _add_taxonomy_to_nav(config: MkDocsConfig) -> None:
    """Append 'Stages' and 'Modalities' subsections (one page per vocabulary value) to the section holding
    the taxonomy overview, so the nav follows the schema's vocabularies without listing them in mkdocs.yml."""
    assert state.atlas is not None
    for item in config.nav or []:
        if not isinstance(item, dict):
            continue
        for children in item.values():
            if isinstance(children, list) and pages.TAXONOMY in children:
                for field, title in (("stage", "Stages"), ("modality", "Modalities")):
                    values = state.atlas.vocabularies[field].values
                    children.append({title: [{value: pages.taxonomy_src(field, value)} for value in values]})
                return


def _add_cards_to_nav(config: MkDocsConfig) -> None:
    """Append the robustness pages (one per testbed with matrix results) and one subsection per testbed, listing its
    card pages, to the section holding the cards index."""
    for item in config.nav or []:
        if not isinstance(item, dict):
            continue
        for children in item.values():
            if isinstance(children, list) and cards.CARDS_INDEX in children:
                matrices = cards.matrices(state.cards)
                if matrices:
                    children.append({"Robustness": [{matrix.testbed.title: robustness.robustness_src(name)}
                                                    for name, matrix in matrices.items()]})
                for group in cards.by_testbed(state.cards).values():
                    children.append({group[0].testbed.title: [{card.label: cards.card_src(card.name)}
                                                               for card in group]})
                return


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def _add_notebooks(files: Files, config: MkDocsConfig) -> Files:
    """Each card's notebook, read where it is (nothing is copied into docs/), as cards/<name>.ipynb."""
    if not _renders_notebooks(config):
        return files
    for card in state.cards:
        src_uri = cards.card_src(card.name)
        if files.get_file_from_path(src_uri) is not None:
            raise PluginError(f"docs/{src_uri} exists, but the card pages come from notebooks/; remove the file")
        files.append(File.generated(config, src_uri, abs_src_path=str(card.notebook)))
    return files


@event_priority(-100)  # after other plugins' on_files, so that the card pages made by mkdocs-jupyter are in `files`
def _add_generated(files: Files, config: MkDocsConfig) -> Files:
    atlas = state.atlas
    assert atlas is not None, "on_config did not run"
    started = time.perf_counter()

    def add(src_uri: str, content: str | bytes, inclusion: InclusionLevel = InclusionLevel.UNDEFINED) -> None:
        if files.get_file_from_path(src_uri) is not None:
            raise PluginError(f"docs/{src_uri} exists, but the atlas generates that page; remove the file")
        files.append(File.generated(config, src_uri, content=content, inclusion=inclusion))

    _restore_notebook_paths(files)
    names = {card.name for card in state.cards} | {name for p in atlas.papers for name in card_names(p.get("method_card"))}
    card_pages, card_urls = _published_cards(names, files)
    state.card_pages = card_pages
    by_name = {card.name: card for card in state.cards}
    for paper in atlas.papers:
        add(pages.paper_src(paper["id"]), pages.paper_page(atlas, paper, card_pages, by_name), InclusionLevel.NOT_IN_NAV)
        state.paper_titles[pages.paper_src(paper["id"])] = paper["title"]
    add(pages.TAXONOMY, pages.taxonomy_index(atlas))
    for field in pages.TAXONOMY_FIELDS:
        for value in atlas.vocabularies[field].values:
            add(pages.taxonomy_src(field, value), pages.taxonomy_page(atlas, field, value))
    add(pages.BENCHMARKS, pages.benchmarks_page(atlas))
    add(pages.STATS, pages.stats_page(atlas))
    for name, src_uri in pages.PLOTS.items():
        add(src_uri, plots.FIGURES[name](atlas))
    add(cards.CARDS_INDEX, cards.cards_index(state.cards, card_pages))
    add(cards.LEADERBOARDS, cards.leaderboards_page(state.cards, card_pages))
    for src_uri, svg in cards.plots(state.cards).items():
        add(src_uri, svg)
    for name, matrix in cards.matrices(state.cards).items():  # the robustness pages and their cell files
        add(robustness.robustness_src(name), robustness.robustness_page(matrix, card_pages))
        for cell in matrix.cells.values():
            files.append(File.generated(config, robustness.cell_src(name, cell.attack, cell.target),
                                        abs_src_path=str(cell.path)))
    for card in state.cards:  # the files behind the results a card page shows, for download
        if card.name in card_pages and card.results is not None:
            for path in (card.results.path, card.results.figure, *(item[0] for item in card.results.media)):
                if path is not None:
                    files.append(File.generated(config, cards.card_file_src(card.name, path.name),
                                                abs_src_path=str(path)))
    paper_url = "papers/{id}/" if config.use_directory_urls else "papers/{id}.html"
    wanted = {name for p in atlas.papers for name in card_names(p.get("method_card"))}
    card_urls = {name: url for name, url in card_urls.items() if name in wanted}
    add(pages.EXPLORER_DATA, explorer.to_json(explorer.explorer_data(atlas, paper_url, card_urls)))
    add(pages.DOWNLOADS["json"], to_json(atlas.papers))
    add(pages.DOWNLOADS["bib"], catalog_to_bibtex(atlas.papers))
    add(pages.DOWNLOADS["csv"], to_csv(atlas.papers))
    log.info("atlas: generated the pages of %d papers from %s in %.1f s", len(atlas.papers), state.papers_dir,
             time.perf_counter() - started)
    return files


on_files = CombinedEvent(_add_notebooks, _add_generated)


def _restore_notebook_paths(files: Files) -> None:
    """mkdocs-jupyter wraps each notebook File in its own File subclass, which recomputes `abs_src_path` from
    `src_dir` and so loses the path of a generated file (it has no src_dir); give the wrapper the notebook's path
    back, or the plugin would not recognise the page as a notebook when it renders it."""
    for card in state.cards:
        file = files.get_file_from_path(cards.card_src(card.name))
        if file is not None and file.abs_src_path is None:
            file.abs_src_path = str(card.notebook)


def _published_cards(names: Iterable[str], files: Files) -> tuple[dict[str, str], dict[str, str]]:
    """For each card name whose page is in the build: name -> source path, and name -> URL from the site root."""
    by_url = {file.url: file for file in files.documentation_pages()}
    sources, urls = {}, {}
    for name in sorted(names):
        file = by_url.get(state.card_url.format(name=name))
        if file is not None:
            sources[name], urls[name] = file.src_uri, file.url
    return sources, urls


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri.endswith(".ipynb"):
        return markdown  # a notebook's JSON, rendered by mkdocs-jupyter
    title = state.paper_titles.get(page.file.src_uri)
    if title is not None:
        page.meta["title"] = html.escape(" ".join(title.split()))
    return MARKER.sub(lambda match: _section(match.group(1), page), markdown)


def on_page_content(content: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """A card page: the header generated from the catalog and the results, above the notebook."""
    card = next((c for c in state.cards if state.card_pages.get(c.name) == page.file.src_uri), None)
    if card is None:
        return content
    page.meta.setdefault("search", {}).setdefault("boost", CARD_SEARCH_BOOST)  # read by the search plugin later

    def url(src_uri: str) -> str:
        target = files.get_file_from_path(src_uri)
        if target is None:
            raise PluginError(f"the header of {page.file.src_uri} links {src_uri}, which is not part of the build")
        return target.url_relative_to(page.file)

    renderer = Markdown(extensions=config.markdown_extensions, extension_configs=config.mdx_configs)
    # Without a MathJax URL (mkdocs.yml) nbconvert's template still writes an empty <script src="">: drop it.
    return renderer.convert(cards.card_header(card, url, state.card_pages)) + content.replace(EMPTY_MATHJAX, "")


def _section(name: str, page: Page) -> str:
    generator = pages.SECTIONS.get(name)
    if generator is None:
        raise PluginError(f"{page.file.src_uri}: unknown marker <!-- atlas:{name} -->; known: {', '.join(pages.SECTIONS)}")
    assert state.atlas is not None
    return generator(state.atlas, page.file.src_uri)


def on_serve(server: Any, config: MkDocsConfig, builder: Any) -> Any:
    server.watch(str(state.papers_dir))
    server.watch(str(SCHEMA_PATH))
    for folder in (state.notebooks_dir, state.results_dir):  # `make notebooks` rewrites both
        if folder.is_dir():
            server.watch(str(folder))
    return server
