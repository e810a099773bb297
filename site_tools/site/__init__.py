"""The documentation site: pages, explorer data, figures and downloads rendered from the catalog at build time.

``hooks.py`` is the mkdocs entry point (``hooks:`` in mkdocs.yml); it calls :mod:`.pages` (Markdown of every
generated page), :mod:`.explorer` (the explorer's JSON), :mod:`.plots` (SVG statistics) and :mod:`.atlas` (the
catalog's indexes). :mod:`.markup` escapes catalog strings for Markdown.
"""
