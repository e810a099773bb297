"""Parse the three curated source lists in ``../shared/seeds/`` into items.

The catalog must cover every paper these lists name; ``tests/test_seed_coverage.py``
uses this parser to prove it. Each list has its own markdown dialect:

* ``000_*`` (Awesome VGM/VLM Unlearning): bullets ``- [Title](url), Authors, ..., Venue, Date``
* ``001_*`` (Awesome Generative Image Unlearning): table rows ``| [Title](url) | year | venue | code | type |``
* ``002_*`` (Multimodal unlearning survey): table rows ``| date | Title | [![badge](..)](url) |`` and
  bullets ``- **date** Title [![badge](..)](url)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# The list a seed file feeds, by its numeric prefix; these ids are the `sources` vocabulary.
SOURCE_BY_PREFIX = {
    "000": "awesome-vgm-vlm-unlearning",
    "001": "awesome-generative-image-unlearning",
    "002": "multimodal-unlearning-survey",
}

ARXIV_IN_URL = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})", re.I)
DOI_IN_URL = re.compile(r"doi\.org/(10\.\d{4,9}/\S+)", re.I)
OPENREVIEW_IN_URL = re.compile(r"openreview\.net/(?:forum|pdf)\?id=([A-Za-z0-9_-]+)", re.I)
MD_LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")
BADGE_LINK = re.compile(r"\[!\[[^\]]*\]\([^)]*\)\]\(([^)]*)\)")
NOT_A_TITLE = {"code", "[code]", "website", "[website]", "no code available", ""}


@dataclass
class SeedItem:
    source: str
    line: int
    title: str
    url: str
    code: str | None = None
    raw: str = field(default="", repr=False)

    @property
    def arxiv(self) -> str | None:
        m = ARXIV_IN_URL.search(self.url)
        return m.group(1) if m else None

    @property
    def doi(self) -> str | None:
        m = DOI_IN_URL.search(self.url)
        return m.group(1) if m else None

    @property
    def openreview(self) -> str | None:
        m = OPENREVIEW_IN_URL.search(self.url)
        return m.group(1) if m else None


def repair_mojibake(text: str) -> str:
    """Undo UTF-8 text that was decoded as Mac Roman (``Œµ`` -> ``ε``, ``‚Äî`` -> ``—``)."""
    try:
        repaired = text.encode("mac_roman").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text
    return repaired


def _code_link(line: str) -> str | None:
    for text, url in MD_LINK.findall(line):
        if text.strip("[] ").lower() == "code" and url.startswith("http"):
            return url.split("?utm_source")[0]
    return None


def parse_seed_file(path: Path) -> list[SeedItem]:
    source = SOURCE_BY_PREFIX[path.name[:3]]
    items: list[SeedItem] = []
    in_paper_section = False
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = repair_mojibake(line.strip())
        if stripped.startswith("#"):
            # 002 lists papers only under "Overview"-adjacent sections and the curated list;
            # badges in its header (DOI, PRs) are not papers.
            in_paper_section = True
            continue
        if not in_paper_section or not stripped.startswith(("-", "|")):
            continue
        badge = BADGE_LINK.search(stripped)
        if badge:  # survey (002) style: the title is the text before the badge
            url = badge.group(1)
            text = stripped[: badge.start()]
            text = re.sub(r"^[-|]\s*", "", text)
            text = re.sub(r"^\*\*[^*]*\*\*\s*(—\s*)?", "", text)  # "**2025-08** " or "**Si et al., 2023** — "
            text = re.sub(r"^\d{4}-\d{2}\s*\|\s*", "", text)  # table "| 2025-12 | Title |"
            title = text.strip(" |")
            if title:
                items.append(SeedItem(source, lineno, title, url, None, stripped))
            continue
        links = [(t, u) for t, u in MD_LINK.findall(stripped) if t.strip().lower() not in NOT_A_TITLE]
        if not links:
            continue
        title, url = links[0]
        if title.startswith("!") or "badge" in url or "#" == url[:1]:
            continue
        items.append(SeedItem(source, lineno, title.strip(), url.strip(), _code_link(stripped), stripped))
    return items


def load_seeds(seed_dir: Path) -> list[SeedItem]:
    items: list[SeedItem] = []
    for path in sorted(seed_dir.glob("*.txt")):
        if path.name[:3] in SOURCE_BY_PREFIX:
            items.extend(parse_seed_file(path))
    return items


if __name__ == "__main__":  # pragma: no cover - a debugging aid
    import json
    import sys

    seeds = load_seeds(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/seeds"))
    json.dump([{**s.__dict__, "arxiv": s.arxiv, "openreview": s.openreview} for s in seeds], sys.stdout, indent=1)
