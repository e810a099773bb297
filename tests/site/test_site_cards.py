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

from registry_helpers import card_entry
from registry_helpers import write_registry as write_registry_file
from site_build_helpers import (HOSTILE_CARDS, HOSTILE_PAPERS, MINICANVAS_RESULTS, MINIPROFILES_RESULTS, SAVED_OUTPUT,
                                results_record, run_build, stat, write_catalog, write_notebook, write_registry,
                                write_results)
from methods.registry import load_registry
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
    # what the paper reports beside what the testbed shows, with the bar's verdict and the numbers behind it
    assert "What the paper reports What MiniCanvas shows" in text
    assert "The paper reports 42% on its benchmark. (Table 1; verified)" in text
    assert "Bar: UA ≥ 0.85, IRA ≥ base − 0.1, CRA ≥ base − 0.1 — missed (UA 0.512; IRA 0.961; CRA 0.999)" in text
    assert ("Reproduced on MiniCanvas on 2026-01-02 at commit 0123456 (forget three, ci scale, seed 0)") in text
    assert "python -m methods run plain_card --testbed minicanvas --seed 0" in text
    assert "Fidelity. Follows owner/repo@0123456, train.py." in text
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
    assert "— not yet measured" in text
    assert "python -m methods run canvas_todo --testbed minicanvas --seed 0" in text
    assert not (hostile_site / "cards" / "canvas_todo" / "metrics.json").exists()
    # Its catalog entry is the hostile benchmark: linked, its title as text.
    assert 'href="../../papers/evil2024script/"' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Unlearning" in html and "<script>alert" not in html


def test_miniprofiles_card_shows_mean_std_and_every_reference(hostile_site: Path):
    text = text_of(section(page(hostile_site, "cards/profile_card"), '<div class="atlas-card">', "jupyter-wrapper"))
    assert ("Metric profile_card Fine-tuned model (no unlearning) Retrain oracle (never saw the forget set)") in text
    assert "Forget ↓ 0.090 ± 0.012 0.990 ± 0.000 0.087 ± 0.050" in text
    assert "Forget-quality gap ↓ 0.037 ± 0.007 — 0.000 ± 0.000" in text
    assert "Reproduced on MiniProfiles on 2026-01-02 at an unrecorded commit (3 forget splits, ci scale, seed 0)" in text


def test_cards_index_lists_every_card_with_its_headline(hostile_site: Path):
    html = page(hostile_site, "cards")
    for name in HOSTILE_CARDS:
        assert f'href="{name}/"' in html, name
    minicanvas = body_rows(section(html, 'id="minicanvas"', 'id="miniprofiles"'))
    assert [row.split()[-1] if "not yet" not in row else "todo" for row in minicanvas] == ["0123456", "todo"]
    assert "UA 0.512 · IRA 0.961 · CRA 0.999 · FD 61.2" in minicanvas[0]
    assert "Forget 0.090 · Retain 0.594 · Utility 0.491" in body_rows(section(html, 'id="miniprofiles"'))[0]


def test_paper_pages_link_each_of_their_cards(hostile_site: Path):
    html = page(hostile_site, "papers/evil2024script")
    assert "Executable cards" in html  # a list-valued method_card
    assert 'href="../../cards/canvas_todo/"' in html and 'href="../../cards/profile_card/"' in html
    assert "MiniCanvas: not yet executed" in text_of(html)


def test_minicanvas_leaderboard(hostile_site: Path):
    html = page(hostile_site, "leaderboards")
    board = section(html, 'id="minicanvas"', 'id="miniprofiles"')
    assert "Reproduced on MiniCanvas on 2026-01-02 at commit" in text_of(board)
    rows = body_rows(board)
    assert rows[0].startswith("plain_card 0.512 0.961 0.999 61.2 12.5 s 812 MB missed")
    assert rows[1].startswith("canvas_todo") and rows[1].endswith("not yet executed")
    assert rows[2] == "Base model (no unlearning) 0.037 0.978 0.999 52.7 — — —"
    assert len(rows) == 3
    assert 'class="atlas-bar atlas-bar--missed"' in board, "a missed bar is flagged, the row still shown"
    assert "plain_card: UA ≥ 0.85, IRA ≥ base − 0.1, CRA ≥ base − 0.1" in text_of(board)
    assert 'src="minicanvas-plot.svg"' in board


def test_miniprofiles_leaderboard_and_plot(hostile_site: Path):
    html = page(hostile_site, "leaderboards")
    board = section(html, 'id="miniprofiles"')
    rows = body_rows(board)
    # the last metric column (harmless questions on the forget images) is not in this older results file: "—"
    assert rows[0] == ("profile_card 0.090 ± 0.012 0.066 ± 0.012 0.594 ± 0.012 0.723 ± 0.012 0.491 ± 0.012 "
                       "0.037 ± 0.007 — 2.40 ± 0.06 s 748 MB met 2026-01-02 · unrecorded")
    assert rows[1].startswith("Fine-tuned model (no unlearning) 0.990 ± 0.000")
    assert rows[2].startswith("Retrain oracle (never saw the forget set) 0.087 ± 0.050")
    assert 'src="miniprofiles-plot.svg"' in board
    svg = (hostile_site / "leaderboards" / "miniprofiles-plot.svg").read_text()
    assert svg.startswith("<?xml") and "profile_card" in svg and "Retrain oracle" in svg


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


@pytest.mark.parametrize("content, expected", [
    ("{", "not a readable JSON file"),
    ("[1, 2]", "the top level is not a JSON object"),
    ({k: v for k, v in CANVAS.items() if k != "schema_version"}, "schema_version is None, expected 1"),
    ({k: v for k, v in CANVAS.items() if k != "metrics"}, "(top level): 'metrics' is a required property"),
    ({**CANVAS, "metrics": {**CANVAS["metrics"], "FD": "low"}}, "metrics.FD: 'low' is not of type 'object', 'null'"),
    ({**CANVAS, "metrics": {**CANVAS["metrics"], "FD": {"mean": "low", "std": None}}}, "metrics.FD.mean: 'low'"),
    ({**CANVAS, "memory": {"peak_rss_mb": True}}, "memory.peak_rss_mb: True is not of type 'number'"),
    ({**CANVAS, "git": {"commit": ["x"], "dirty": False}}, "git.commit: ['x'] is not of type"),
    ({**CANVAS, "details": {"cache": "/home/someone/.cache/x"}}, "details.cache: holds an absolute path"),
    ({**CANVAS, "card": "other"}, "holds card 'other' on 'minicanvas', expected 'card' on 'minicanvas'"),
])
def test_malformed_results_name_the_file_and_the_field(tmp_path: Path, content, expected):
    path = write_results(tmp_path, {("minicanvas", "card"): content}) / "minicanvas" / "card" / "metrics.json"
    with pytest.raises(cards.CardError) as error:
        cards.load_results(path, "card", "minicanvas")
    assert str(error.value).startswith(f"{path}: ") and expected in str(error.value), str(error.value)


def test_absent_results_and_dates(tmp_path: Path):
    assert cards.load_results(tmp_path / "minicanvas" / "x" / "metrics.json", "x", "minicanvas") is None
    record = {**CANVAS, "card": "x", "date": "2025-02-03T10:00:00+00:00"}
    path = write_results(tmp_path, {("minicanvas", "x"): record}) / "minicanvas" / "x" / "metrics.json"
    results = cards.load_results(path, "x", "minicanvas")
    assert results.date == "2025-02-03" and results.commit == CANVAS["git"]["commit"]
    assert results.metrics["FD"] == (61.25, None) and results.references["base"]["UA"] == (0.0375, None)


def _registry(tmp_path: Path, cards_on: dict) -> Path:
    return write_registry_file(tmp_path / "registry.yaml",
                               {name: card_entry(testbed, ["plain2024method"], title=f"Card {name}: test")
                                for name, testbed in cards_on.items()})


def test_discover_follows_the_registry(tmp_path: Path):
    notebooks, results = tmp_path / "notebooks", tmp_path / "results"
    registry = load_registry(_registry(tmp_path, {"alpha": "miniprofiles", "beta": "minicanvas"}))
    write_notebook(notebooks / "alpha.ipynb", "alpha", "miniprofiles")
    write_notebook(notebooks / "beta.ipynb", "beta", "minicanvas")
    write_notebook(notebooks / "_helper.ipynb", "helper", "minicanvas")  # not a card
    write_results(results, {("minicanvas", "beta"): {**CANVAS, "card": "beta"}})
    found = {card.name: card for card in cards.discover(notebooks, results, registry=registry)}
    assert list(found) == ["beta", "alpha"], "grouped by testbed in the order the testbeds are declared"
    assert (found["alpha"].testbed.name, found["alpha"].results, found["alpha"].label) == ("miniprofiles", None, "Card alpha")
    assert found["beta"].results is not None and found["beta"].meets_bar() is False
    write_notebook(notebooks / "gamma.ipynb", "gamma", "minicanvas")
    with pytest.raises(cards.CardError, match="gamma.ipynb: no card 'gamma' in registry.yaml; register it"):
        cards.discover(notebooks, results, registry=registry)
    (notebooks / "gamma.ipynb").unlink()
    (notebooks / "alpha.ipynb").write_text("not json")
    with pytest.raises(cards.CardError, match="alpha.ipynb: not a readable Jupyter notebook"):
        cards.discover(notebooks, results, registry=registry)
    (notebooks / "alpha.ipynb").unlink()
    with pytest.raises(cards.CardError, match="alpha.ipynb: missing; card 'alpha' of registry.yaml needs its notebook"):
        cards.discover(notebooks, results, registry=registry)


def test_bars_that_compare_cards(tmp_path: Path):
    """A bar may compare a card with another card's results (GradDiff keeps retain 0.25 above GA's)."""
    from registry_helpers import BARS

    entries = {"first": card_entry("miniprofiles", ["x2024y"]),
               "second": card_entry("miniprofiles", ["x2024y"])}
    entries["second"]["testbeds"]["miniprofiles"]["bar"] = {"all": [
        *BARS["miniprofiles"]["all"], {"metric": "retain_acc", "op": ">=", "card": "first", "offset": 0.25}]}
    registry = load_registry(write_registry_file(tmp_path / "registry.yaml", entries))
    notebooks, results = tmp_path / "notebooks", tmp_path / "results"
    for name in entries:
        write_notebook(notebooks / f"{name}.ipynb", name, "miniprofiles")
    low = results_record("first", "miniprofiles", {"forget_acc": stat(0.1), "retain_acc": stat(0.5)}, {})
    high = results_record("second", "miniprofiles", {"forget_acc": stat(0.1), "retain_acc": stat(0.8)}, {})
    write_results(results, {("miniprofiles", "first"): low, ("miniprofiles", "second"): high})
    found = {card.name: card for card in cards.discover(notebooks, results, registry=registry)}
    assert found["second"].bar_text() == "Forget < 0.2, Retain ≥ first's + 0.25"
    assert found["second"].meets_bar() is True
    write_results(results, {("miniprofiles", "second"): {**high, "metrics": {"forget_acc": stat(0.1),
                                                                             "retain_acc": stat(0.7)}}})
    found = {card.name: card for card in cards.discover(notebooks, results, registry=registry)}
    assert found["second"].meets_bar() is False


def test_header_of_a_notebook_saved_without_outputs_shows_the_run_figure(tmp_path: Path):
    notebooks, results = tmp_path / "notebooks", tmp_path / "results"
    registry = load_registry(_registry(tmp_path, {"fresh": "minicanvas"}))
    path = write_notebook(notebooks / "fresh.ipynb", "fresh", "minicanvas")
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        cell.get("outputs", []).clear()
    path.write_text(json.dumps(notebook))
    write_results(results, {("minicanvas", "fresh"): {**CANVAS, "card": "fresh"}})
    (results / "minicanvas" / "fresh" / "samples.png").write_bytes(b"\x89PNG")
    card, = cards.discover(notebooks, results, registry=registry)
    assert not card.has_outputs and card.results.figure == results / "minicanvas" / "fresh" / "samples.png"
    header = cards.card_header(card, lambda src_uri: f"/{src_uri}")
    assert "it has not been executed yet" in header
    assert "![The figure of the latest run](/cards/fresh/samples.png)" in header
    assert "[metrics.json](/cards/fresh/metrics.json)" in header and "[all cards](/cards/index.md)" in header


def test_results_folder_is_configurable(monkeypatch, tmp_path: Path):
    monkeypatch.setenv(cards.RESULTS_DIR_VARIABLE, str(tmp_path))
    assert cards.results_dir() == tmp_path.resolve()
    monkeypatch.delenv(cards.RESULTS_DIR_VARIABLE)
    assert cards.results_dir() == cards.RESULTS_DIR


def test_no_testbed_or_card_name_in_the_site_code():
    """The site is generic over the registry and the testbed declarations (only data names them)."""
    registry = load_registry()
    names = set(registry.cards) | set(registry.testbeds) | {spec.title for spec in registry.testbeds.values()}
    site_code = Path(cards.__file__).resolve().parents[1]
    for path in site_code.rglob("*.py"):
        source = path.read_text(encoding="utf-8").lower()
        found = sorted(name for name in names if re.search(rf"\b{re.escape(name.lower())}\b", source))
        assert not found, f"{path}: names {found}"


def test_media_a_run_lists_are_embedded_as_players_and_published(tmp_path: Path):
    """A testbed that declares `media` writes example files beside metrics.json and lists them in the record: the
    card page embeds an audio player (or an image) for each, with its caption as text, and a listed file that is
    missing stops the build naming it."""
    notebooks, results = tmp_path / "notebooks", tmp_path / "results"
    registry = load_registry(_registry(tmp_path, {"voiced": "minicanvas"}))
    write_notebook(notebooks / "voiced.ipynb", "voiced", "minicanvas")
    media = [{"file": "forget-1.wav", "kind": "audio", "caption": "Speaker <b>x</b> says 'seven' *loudly*"},
             {"file": "view.png", "kind": "image", "caption": "an example"}]
    write_results(results, {("minicanvas", "voiced"): {**CANVAS, "card": "voiced", "media": media}})
    folder = results / "minicanvas" / "voiced"
    with pytest.raises(cards.CardError, match="media lists 'forget-1.wav', which is not beside it"):
        cards.discover(notebooks, results, registry=registry)
    (folder / "forget-1.wav").write_bytes(b"RIFF0000WAVE")
    (folder / "view.png").write_bytes(b"\x89PNG")
    card, = cards.discover(notebooks, results, registry=registry)
    assert [item[0].name for item in card.results.media] == ["forget-1.wav", "view.png"]
    header = cards.card_header(card, lambda src_uri: f"/{src_uri}")
    assert '<audio class="atlas-media" controls preload="none" src="/cards/voiced/forget-1.wav"></audio>' in header
    assert r"Speaker \<b\>x\<\/b\> says \'seven\' \*loudly\*" in header, "the caption is escaped text"
    assert r"![an example](/cards/voiced/view.png){ .atlas-plot }" in header
