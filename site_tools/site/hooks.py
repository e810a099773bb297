"""mkdocs hooks (registered under ``hooks:`` in mkdocs.yml) that render the catalog into the site at build time.

- ``on_config``: load and validate the catalog (``ATLAS_PAPERS_DIR`` points the build at another papers folder,
  e.g. a synthetic catalog for benchmarks or a hostile one for tests), and add the per-stage and per-modality
  pages to the Taxonomy section of the nav.
- ``on_files``: add the generated pages and files (papers/<id>.md, taxonomy, benchmarks, statistics with SVG
  figures, the explorer's JSON and the downloads). It runs after other plugins' ``on_files`` so that executable
  card pages added by them are seen: a paper links its card only when the card page is part of the build.
- ``on_page_markdown``: fill the ``<!-- atlas:NAME -->`` markers of hand-written pages with generated sections, and
  give paper pages an HTML-escaped title (the theme prints ``page.title | striptags``, which would turn an escaped
  ``&lt;/title&gt;`` back into markup).
- ``on_serve``: rebuild when the catalog or its schema changes during ``mkdocs serve``.

Nothing generated is written to docs/: every page exists only in the build.
"""

from __future__ import annotations

import html
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.structure.pages import Page

from site_tools.bibtex import catalog_to_bibtex
from site_tools.catalog import PAPERS_DIR, SCHEMA_PATH, CatalogError, load_catalog
from site_tools.export import to_csv, to_json
from site_tools.site import explorer, pages, plots
from site_tools.site.atlas import Atlas

log = logging.getLogger("mkdocs.hooks.atlas")

PAPERS_DIR_VARIABLE = "ATLAS_PAPERS_DIR"
# Where an executable card's page is expected, relative to the site root; mkdocs.yml's extra.atlas.card_url overrides.
DEFAULT_CARD_URL = "cards/{name}/"
REQUIRED_EXTENSION = "pymdownx.escapeall"  # site_tools.site.markup relies on it to render catalog strings literally
MARKER = re.compile(r"<!--\s*atlas:([a-z-]+)\s*-->")


class _State:
    """What one build knows: the catalog and the titles of the paper pages it generated."""

    atlas: Atlas | None = None
    papers_dir: Path = PAPERS_DIR
    card_url: str = DEFAULT_CARD_URL
    paper_titles: dict[str, str] = {}


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
    _add_taxonomy_to_nav(config)
    return config


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


@event_priority(-100)  # after other plugins' on_files, so that their card pages are already in `files`
def on_files(files: Files, config: MkDocsConfig) -> Files:
    atlas = state.atlas
    assert atlas is not None, "on_config did not run"
    started = time.perf_counter()

    def add(src_uri: str, content: str | bytes, inclusion: InclusionLevel = InclusionLevel.UNDEFINED) -> None:
        if files.get_file_from_path(src_uri) is not None:
            raise PluginError(f"docs/{src_uri} exists, but the atlas generates that page; remove the file")
        files.append(File.generated(config, src_uri, content=content, inclusion=inclusion))

    card_pages, card_urls = _published_cards(atlas, files)
    for paper in atlas.papers:
        add(pages.paper_src(paper["id"]), pages.paper_page(atlas, paper, card_pages), InclusionLevel.NOT_IN_NAV)
        state.paper_titles[pages.paper_src(paper["id"])] = paper["title"]
    add(pages.TAXONOMY, pages.taxonomy_index(atlas))
    for field in pages.TAXONOMY_FIELDS:
        for value in atlas.vocabularies[field].values:
            add(pages.taxonomy_src(field, value), pages.taxonomy_page(atlas, field, value))
    add(pages.BENCHMARKS, pages.benchmarks_page(atlas))
    add(pages.STATS, pages.stats_page(atlas))
    for name, src_uri in pages.PLOTS.items():
        add(src_uri, plots.FIGURES[name](atlas))
    paper_url = "papers/{id}/" if config.use_directory_urls else "papers/{id}.html"
    add(pages.EXPLORER_DATA, explorer.to_json(explorer.explorer_data(atlas, paper_url, card_urls)))
    add(pages.DOWNLOADS["json"], to_json(atlas.papers))
    add(pages.DOWNLOADS["bib"], catalog_to_bibtex(atlas.papers))
    add(pages.DOWNLOADS["csv"], to_csv(atlas.papers))
    log.info("atlas: generated the pages of %d papers from %s in %.1f s", len(atlas.papers), state.papers_dir,
             time.perf_counter() - started)
    return files


def _published_cards(atlas: Atlas, files: Files) -> tuple[dict[str, str], dict[str, str]]:
    """For each method_card whose page is in the build: name -> source path, and name -> URL from the site root."""
    wanted = {paper["method_card"] for paper in atlas.papers if paper.get("method_card")}
    by_url = {file.url: file for file in files.documentation_pages()}
    sources, urls = {}, {}
    for name in sorted(wanted):
        file = by_url.get(state.card_url.format(name=name))
        if file is not None:
            sources[name], urls[name] = file.src_uri, file.url
    return sources, urls


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    title = state.paper_titles.get(page.file.src_uri)
    if title is not None:
        page.meta["title"] = html.escape(" ".join(title.split()))
    return MARKER.sub(lambda match: _section(match.group(1), page), markdown)


def _section(name: str, page: Page) -> str:
    generator = pages.SECTIONS.get(name)
    if generator is None:
        raise PluginError(f"{page.file.src_uri}: unknown marker <!-- atlas:{name} -->; known: {', '.join(pages.SECTIONS)}")
    assert state.atlas is not None
    return generator(state.atlas, page.file.src_uri)


def on_serve(server: Any, config: MkDocsConfig, builder: Any) -> Any:
    server.watch(str(state.papers_dir))
    server.watch(str(SCHEMA_PATH))
    return server
