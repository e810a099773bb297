"""The catalog itself: every entry is valid and every paper of the three source lists is in it exactly once."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from site_tools.catalog import PAPERS_DIR, REPO_ROOT, load_catalog, load_entries, load_resources
from site_tools.seeds import load_seeds
from site_tools.validate import normalise_title, validate_paths

SEED_DIR = REPO_ROOT.parent / "shared" / "seeds"


@pytest.fixture(scope="module")
def papers():
    return load_catalog()


def test_whole_catalog_validates():
    count, problems = validate_paths(None)
    assert count >= 263, f"only {count} entries (the three lists and at least 100 beyond them)"
    assert not problems, "\n".join(map(str, problems))


def _index(papers):
    by_key: dict[str, set[str]] = defaultdict(set)
    for paper in papers:
        links = paper["links"]
        for name in ("arxiv", "openreview", "doi"):
            if links.get(name):
                by_key[f"{name}:{links[name]}"].add(paper["id"])
        for title in [paper["title"]] + paper.get("aliases", []):
            by_key[f"title:{normalise_title(title)}"].add(paper["id"])
    return by_key


@pytest.mark.skipif(not SEED_DIR.exists(), reason="../shared/seeds is not beside this checkout")
def test_every_seed_item_is_one_entry_or_a_resource(papers):
    by_key = _index(papers)
    resource_urls = {r["url"] for r in load_resources()}
    resource_titles = {normalise_title(r["title"]) for r in load_resources()}
    missing, ambiguous = [], []
    for item in load_seeds(SEED_DIR):
        if item.url in resource_urls or normalise_title(item.title) in resource_titles:
            continue
        found = set(by_key.get(f"title:{normalise_title(item.title)}", set()))
        if item.arxiv:
            found |= by_key.get(f"arxiv:{item.arxiv}", set())
        elif not found and item.openreview:
            found = set(by_key.get(f"openreview:{item.openreview}", set()))
        elif not found and item.doi:
            found = set(by_key.get(f"doi:{item.doi}", set()))
        if not found:
            missing.append(f"{item.source}:{item.line} {item.title}")
        elif len(found) > 1:
            ambiguous.append(f"{item.source}:{item.line} {item.title} -> {sorted(found)}")
    assert not missing, "seed papers without an entry:\n" + "\n".join(missing)
    assert not ambiguous, "seed papers matched by several entries:\n" + "\n".join(ambiguous)


@pytest.mark.skipif(not SEED_DIR.exists(), reason="../shared/seeds is not beside this checkout")
def test_sources_match_the_lists_that_mention_each_paper(papers):
    by_arxiv = {p["links"]["arxiv"]: p for p in papers if p["links"].get("arxiv")}
    for item in load_seeds(SEED_DIR):
        paper = by_arxiv.get(item.arxiv) if item.arxiv else None
        if paper is not None:
            assert item.source in paper["sources"], f"{paper['id']} is in {item.source} (line {item.line})"


def test_no_encoding_damage_in_titles(papers):
    damaged = [p["id"] for p in papers for t in [p["title"]] + p.get("aliases", []) if any(m in t for m in ("Œ", "‚Ä", "Ã", "â€"))]
    assert not damaged


def test_resources_are_not_papers():
    resources = load_resources()
    assert resources, "catalog/resources.yaml lists the lists' news articles and websites"
    for resource in resources:
        assert set(resource) >= {"title", "url", "kind"}
        assert resource["url"].startswith(("https://", "http://"))
    entries, _ = load_entries()
    paper_urls = {e.data["links"].get("url") for e in entries}
    assert not paper_urls & {r["url"] for r in resources}
