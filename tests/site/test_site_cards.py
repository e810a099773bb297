"""Executable cards in the site: card pages (the saved notebook under a header made from the catalog and the results),
the cards index and the leaderboards, built from temporary notebooks and results (the hostile site of conftest.py);
and the reading of results files: absent means "not yet executed", malformed stops the build naming the file."""

from __future__ import annotations

import json
import os
import re
from html import unescape
from pathlib import Path

import pytest

from site_build_helpers import (HOSTILE_CARDS, HOSTILE_PAPERS, MINICANVAS_RESULTS, MINIPROFILES_RESULTS, SAVED_OUTPUT,
                                run_build, write_catalog, write_notebook, write_results)
from site_tools.site import cards


def page(site: Path, path: str) -> str:
    return (site / path / "index.html").read_text(encoding="utf-8")


def text_of(html: str) -> str:
    """The visible text of some HTML, whitespace collapsed (code blocks are split into highlighted spans)."""
    return " ".join(unescape(re.sub(r"<[^>]+>", "", html)).split())


def section(html: str, start: str, end: str | None = None) -> str:
    begin = html.index(start)
    return html[begin:html.index(end, begin)] if end else html[begin:]


def body_rows(table_html: str) -> list[str]:
    """The text of each row of the first table's body."""
    body = table_html[table_html.index("<tbody>"):table_html.index("</tbody>")]
    return [text_of(row) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


# --- pages of the hostile site ----------------------------------------------------------------------------------------

def test_card_page_shows_the_saved_notebook_under_a_header(hostile_site: Path):
    html = page(hostile_site, "cards/plain_card")
    header = section(html, '<div class="atlas-card">', "jupyter-wrapper")
    text = text_of(header)
    assert 'href="../../papers/plain2024method/"' in header, "links back to its catalog entry"
    assert "A Plain Method That Evaluates on the Hostile Benchmark" in text and "testbed MiniCanvas" in text
    assert 'href="../../leaderboards/#minicanvas"' in header and 'href="../"' in header
    assert "UA ↑ 0.512 0.037" in text, "the card's result beside the base model's"
    assert "Quality bar (UA ≥ 0.85, IRA and CRA at most 0.10 below the base model): missed" in text
    assert re.search(r"Reproduced on MiniCanvas on \d{4}-\d{2}-\d{2} at commit 0123456 \(forget three, ci scale, "
                     r"seed 0\)", text), text
    assert "python -m methods run plain_card --testbed minicanvas --seed 0" in text
    # The notebook follows, with the output saved in the file: the build never runs it.
    notebook = html[html.index("jupyter-wrapper"):]
    assert SAVED_OUTPUT.format(name="plain_card") in notebook and "Card plain_card on minicanvas" in notebook
    for name in ("plain_card.ipynb", "metrics.json"):  # the downloads the header links
        assert f'href="{name}"' in header and (hostile_site / "cards" / "plain_card" / name).is_file()
    results = json.loads((hostile_site / "cards" / "plain_card" / "metrics.json").read_text())
    assert results["metrics"]["UA"] == MINICANVAS_RESULTS["metrics"]["UA"]


def test_card_without_results_is_not_yet_executed(hostile_site: Path):
    html = page(hostile_site, "cards/canvas_todo")
    text = text_of(section(html, '<div class="atlas-card">', "jupyter-wrapper"))
    assert "Not yet executed: there is no results/minicanvas/canvas_todo/metrics.json yet" in text
    assert "python -m methods run canvas_todo --testbed minicanvas --seed 0" in text
    assert not (hostile_site / "cards" / "canvas_todo" / "metrics.json").exists()
    # Its catalog entry is the hostile benchmark: linked, its title as text.
    assert 'href="../../papers/evil2024script/"' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Unlearning" in html and "<script>alert" not in html


def test_miniprofiles_card_shows_mean_std_base_and_oracle(hostile_site: Path):
    text = text_of(section(page(hostile_site, "cards/profile_card"), '<div class="atlas-card">', "jupyter-wrapper"))
    assert "Metric profile_card Base model Retrain oracle" in text
    assert "Forget ↓ 0.090 ± 0.012 0.990 ± 0.000 0.087 ± 0.050" in text
    assert "Forget-quality gap to the oracle ↓ 0.037 ± 0.007" in text
    # The file's `date` field wins over its modification time; a run without git_commit says so.
    assert "Reproduced on MiniProfiles on 2026-01-02 at an unrecorded commit" in text


def test_cards_index_lists_every_card_with_its_headline(hostile_site: Path):
    html = page(hostile_site, "cards")
    for name in HOSTILE_CARDS:
        assert f'href="{name}/"' in html, name
    minicanvas = body_rows(section(html, 'id="minicanvas"', 'id="miniprofiles"'))
    assert [row.split()[-1] if "not yet" not in row else "todo" for row in minicanvas] == ["todo", "0123456"]
    assert "UA 0.512 · IRA 0.961 · CRA 0.999 · FD 61.2" in minicanvas[1]
    assert "Forget 0.090 · Retain 0.594 · Utility 0.491" in body_rows(section(html, 'id="miniprofiles"'))[0]


def test_paper_pages_link_each_of_their_cards(hostile_site: Path):
    html = page(hostile_site, "papers/evil2024script")
    assert "Executable cards" in html  # a list-valued method_card
    assert 'href="../../cards/canvas_todo/"' in html and 'href="../../cards/profile_card/"' in html
    assert "MiniCanvas: not yet executed" in text_of(html)


def test_minicanvas_leaderboard(hostile_site: Path):
    html = page(hostile_site, "leaderboards")
    board = section(html, 'id="minicanvas"', 'id="miniprofiles"')
    assert re.search(r"Reproduced on MiniCanvas on \d{4}-\d{2}-\d{2} at commit", text_of(board))
    rows = body_rows(board)
    assert rows[0].startswith("canvas_todo") and rows[0].endswith("not yet executed")
    assert rows[1].startswith("plain_card 0.512 0.961 0.999 61.2 12.5 s 812 MB missed")
    assert rows[2] == "Base model (no unlearning) 0.037 0.978 0.999 52.7 — — —"
    assert len(rows) == 3
    assert 'class="atlas-bar atlas-bar--missed"' in board, "a missed bar is flagged, the row still shown"


def test_miniprofiles_leaderboard_and_tradeoff_plot(hostile_site: Path):
    html = page(hostile_site, "leaderboards")
    board = section(html, 'id="miniprofiles"')
    rows = body_rows(board)
    assert rows[0] == ("profile_card 0.090 ± 0.012 0.066 ± 0.012 0.594 ± 0.012 0.723 ± 0.012 0.491 ± 0.012 "
                       "0.037 ± 0.007 2.40 ± 0.06 s 748 MB met 2026-01-02 · unrecorded")
    assert rows[1].startswith("Base model (no unlearning) 0.990 ± 0.000")
    assert rows[2].startswith("Retrain oracle (never saw the forget set) 0.087 ± 0.050")
    assert 'src="miniprofiles-tradeoff.svg"' in board
    svg = (hostile_site / "leaderboards" / "miniprofiles-tradeoff.svg").read_text()
    assert svg.startswith("<?xml") and "profile_card" in svg and "retrain oracle" in svg


def test_card_pages_need_nothing_from_the_network(hostile_site: Path):
    for path in [*(hostile_site / "cards").rglob("index.html"), hostile_site / "leaderboards" / "index.html"]:
        html = path.read_text(encoding="utf-8")
        assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?(https?:)?//""", html), path
        assert '<script src="">' not in html and "require.js" not in html, path


def test_explorer_links_the_cards(hostile_site: Path):
    data = json.loads((hostile_site / "explorer" / "papers.json").read_text())
    assert data["version"] == 2
    assert data["cards"]["profile_card"] == "cards/profile_card/"


# --- results files ----------------------------------------------------------------------------------------------------

def test_malformed_results_file_fails_the_build_naming_it(tmp_path: Path):
    papers_dir = write_catalog(tmp_path, HOSTILE_PAPERS)
    results = write_results(tmp_path / "results", {("minicanvas", "plain_card"): '{"metrics": {"UA": 0.9'})
    result = run_build(tmp_path / "site", papers_dir, results)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert f"{results / 'minicanvas' / 'plain_card' / 'metrics.json'}: not a readable JSON file" in message, message
    assert "Traceback" not in message


CANVAS = MINICANVAS_RESULTS


@pytest.mark.parametrize("testbed, content, expected", [
    ("minicanvas", "{", "not a readable JSON file"),
    ("minicanvas", "[1, 2]", "the top level is not a JSON object"),
    ("minicanvas", {**CANVAS, "metrics": {"IRA": 1.0, "CRA": 1.0, "FD": 1.0}}, "metrics.UA is missing (a number is expected)"),
    ("minicanvas", {**CANVAS, "metrics": {**CANVAS["metrics"], "FD": "low"}}, 'metrics.FD is "low", not a number'),
    ("minicanvas", {**CANVAS, "metrics": 0.9}, "metrics is not a JSON object"),
    ("minicanvas", {**CANVAS, "memory": {"peak_rss_mb": True}}, "memory.peak_rss_mb is true, not a number"),
    ("minicanvas", {**CANVAS, "git_commit": ["x"]}, "git_commit is"),
    ("miniprofiles", {k: v for k, v in MINIPROFILES_RESULTS.items() if k != "retain_acc"}, "retain_acc is missing"),
    ("miniprofiles", {**MINIPROFILES_RESULTS, "oracle": {"forget_acc": {"mean": "x"}}}, "oracle.forget_acc.mean is"),
])
def test_malformed_results_name_the_file_and_the_field(tmp_path: Path, testbed, content, expected):
    path = write_results(tmp_path, {(testbed, "card"): content}) / testbed / "card" / "metrics.json"
    with pytest.raises(cards.CardError) as error:
        cards.load_results(path, testbed)
    assert str(error.value).startswith(f"{path}: ") and expected in str(error.value), str(error.value)


def test_absent_results_and_dates(tmp_path: Path):
    assert cards.load_results(tmp_path / "minicanvas" / "x" / "metrics.json", "minicanvas") is None
    path = write_results(tmp_path, {("minicanvas", "x"): CANVAS}) / "minicanvas" / "x" / "metrics.json"
    os.utime(path, (1_700_000_000, 1_700_000_000))  # 2023-11-14 UTC
    results = cards.load_results(path, "minicanvas")
    assert results is not None and results.date == "2023-11-14" and results.commit == CANVAS["git_commit"]
    assert results.metrics["FD"] == (61.25, None) and results.base["UA"] == (0.0375, None)
    path.write_text(json.dumps({**CANVAS, "date": "2025-02-03T10:00:00Z"}))
    assert cards.load_results(path, "minicanvas").date == "2025-02-03"


def test_discover_finds_cards_and_their_testbeds(tmp_path: Path):
    notebooks, results = tmp_path / "notebooks", tmp_path / "results"
    write_notebook(notebooks / "alpha.ipynb", "alpha", "miniprofiles")
    write_notebook(notebooks / "_helper.ipynb", "helper", "minicanvas")  # not a card
    (notebooks / "beta.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    (notebooks / "gamma.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    write_results(results, {("minicanvas", "beta"): CANVAS})  # no out_dir parameter: found by its results
    found = {card.name: card for card in cards.discover(notebooks, results)}
    assert list(found) == ["beta", "alpha", "gamma"], "MiniCanvas, MiniProfiles, then cards of no known testbed"
    assert (found["alpha"].testbed, found["alpha"].results, found["alpha"].label) == ("miniprofiles", None, "Card alpha")
    assert found["beta"].testbed == "minicanvas" and found["beta"].results is not None
    assert found["gamma"].testbed is None and "Other cards" in cards.cards_index(list(found.values()), {})
    (notebooks / "Bad-Name.ipynb").write_text("{}")
    with pytest.raises(cards.CardError, match="Bad-Name.ipynb: a card's name must match"):
        cards.discover(notebooks, results)
    (notebooks / "Bad-Name.ipynb").unlink()
    (notebooks / "delta.ipynb").write_text("not json")
    with pytest.raises(cards.CardError, match="delta.ipynb: not a readable Jupyter notebook"):
        cards.discover(notebooks, results)


def test_header_of_a_notebook_saved_without_outputs_shows_the_run_figure(tmp_path: Path):
    notebooks, results = tmp_path / "notebooks", tmp_path / "results"
    path = write_notebook(notebooks / "fresh.ipynb", "fresh", "minicanvas")
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        cell.get("outputs", []).clear()
    path.write_text(json.dumps(notebook))
    write_results(results, {("minicanvas", "fresh"): CANVAS})
    (results / "minicanvas" / "fresh" / "samples.png").write_bytes(b"\x89PNG")
    card, = cards.discover(notebooks, results)
    assert not card.has_outputs and card.figure_path == results / "minicanvas" / "fresh" / "samples.png"
    header = cards.card_header(card, lambda src_uri: f"/{src_uri}")
    assert "it has not been executed yet" in header
    assert "![The figure of the latest run](/cards/fresh/samples.png)" in header
    assert "[metrics.json](/cards/fresh/metrics.json)" in header and "[all cards](/cards/index.md)" in header


def test_results_folder_is_configurable(monkeypatch, tmp_path: Path):
    monkeypatch.setenv(cards.RESULTS_DIR_VARIABLE, str(tmp_path))
    assert cards.results_dir() == tmp_path.resolve()
    monkeypatch.delenv(cards.RESULTS_DIR_VARIABLE)
    assert cards.results_dir() == cards.RESULTS_DIR
