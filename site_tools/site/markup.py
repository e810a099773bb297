"""Safe Markdown building blocks for generated pages.

Every catalog string reaches a page through :func:`text`, which backslash-escapes all ASCII punctuation. With the
``pymdownx.escapeall`` extension (required by the site's hook) a backslash makes *any* following character literal,
so a title such as ``<script>alert(1)</script>`` or ``*[x](javascript:...)*`` is rendered as text: Markdown and HTML
syntax never survive escaping, and the HTML serialiser turns the literal ``<`` and ``&`` into entities.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

# ASCII punctuation: every character Markdown, its extensions or raw HTML could treat as syntax.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def text(value: object) -> str:
    """A catalog string as inline Markdown that renders literally, on one line."""
    return _PUNCTUATION.sub(r"\\\1", " ".join(str(value).split()))


def code(value: object) -> str:
    """An inline code span; the fence is longer than any run of backticks inside."""
    content = " ".join(str(value).split())
    longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if content.startswith("`") or content.endswith("`") else ""
    return f"{fence}{pad}{content}{pad}{fence}"


def code_block(content: str, language: str = "") -> str:
    """A fenced code block; the fence is longer than any run of backticks inside, so content cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{content.rstrip()}\n{fence}"


def url(address: str) -> str:
    """An external http(s) address made safe for a Markdown link destination.

    Characters that could end the destination or start a link title (spaces, quotes, parentheses, angle brackets)
    are percent-encoded. Anything but http(s) is refused: the catalog schema allows only those, and a
    ``javascript:`` link must never reach a page even if validation were bypassed.
    """
    if urlsplit(address).scheme.lower() not in ("http", "https"):
        raise ValueError(f"refusing a non-http(s) link: {address!r}")
    return quote(address, safe=":/?#[]@!$&*+,;=%-._~")


def link(label: str, target: str, attributes: str = "") -> str:
    """A Markdown link whose label is a catalog string; ``target`` is a trusted relative path or :func:`url`."""
    return f"[{text(label)}]({target}){attributes}"


def attribute_value(value: str) -> str:
    """A value for an attr_list ``key="..."`` pair: quotes and braces would end the list, so they are dropped."""
    return re.sub(r'["{}]', "", " ".join(value.split()))


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table from cells that are already Markdown (escape catalog strings with :func:`text` first)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("\n", " ") or " " for cell in row) + " |" for row in rows]
    return "\n".join(lines)
