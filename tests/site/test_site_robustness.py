"""The robustness matrix in the site: the per-testbed robustness page (heatmap and table, bars with their known miss,
provenance, downloads), an unlearn card's row and an attack card's column on their pages, and the reading of the
cell files (a wrong one stops the build naming the file). Built from the small fake records of
site_build_helpers.MATRIX_CELLS (robust_site fixture)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from site_build_helpers import (ATTACK_KNOWN_MISS, ATTACK_PROMPTS, MATRIX_CELLS, attack_record, run_build,
                                write_matrix, write_robust_catalog)
from test_site_cards import body_rows, page, section, text_of
from methods.registry import load_registry
from site_tools.site import cards, robustness


def heatmap_cells(html: str) -> dict[tuple[str, str], str]:
    """(attack, target) -> the text of each heatmap cell."""
    table = section(html, '<table class="atlas-heatmap__table">', "</table>")
    found = re.findall(r'<td class="atlas-heatmap__cell[^"]*" data-attack="([^"]+)" data-target="([^"]+)"[^>]*>(.*?)</td>',
                       table, re.S)
    return {(attack, target): text_of(content) for attack, target, content in found}


def test_robustness_page_heatmap(robust_site: Path):
    html = page(robust_site, "robustness/minicanvas")
    cells = heatmap_cells(html)
    # every (attack, target): base first, then the unlearn cards in registry order; missing cells say so
    targets = re.findall(r'<tr data-target="([^"]+)">', section(html, '<table class="atlas-heatmap__table">', "</table>"))
    assert targets == ["base", "plain_card", "canvas_todo"]
    assert set(cells) == {(a, t) for a in ("attack_one", "attack_two") for t in targets}
    assert cells[("attack_one", "base")] == "0.900 pre 0.850 ± 0.020"
    assert cells[("attack_one", "plain_card")] == "0.700 pre 0.150 ± 0.050"
    assert cells[("attack_one", "canvas_todo")] == "not run" and cells[("attack_two", "plain_card")] == "not run"
    # coloured by value: the higher value is darker, a missing cell has no colour of its own
    colour = {key: re.search(rf'data-attack="{key[0]}" data-target="{key[1]}"[^>]*style="background:(#[0-9a-f]{{6}})',
                             html) for key in cells}
    assert colour[("attack_one", "canvas_todo")] is None
    darkness = {key: sum(int(m.group(1)[i:i + 2], 16) for i in (1, 3, 5)) for key, m in colour.items() if m}
    assert darkness[("attack_one", "base")] < darkness[("attack_one", "plain_card")] < darkness[("attack_two", "base")]
    assert "<script" not in section(html, '<div class="atlas-heatmap">', "</div>"), "no script: works offline"


def test_robustness_page_table_bars_and_provenance(robust_site: Path):
    html = page(robust_site, "robustness/minicanvas")
    text = text_of(html)
    table = section(html, 'class="atlas-board atlas-matrix"', "</table>")
    rows = body_rows(table)
    assert rows == ["Base model (no unlearning) 0.900 ± 0.050 (pre 0.850 ± 0.020) met 0.400 ± 0.000 (pre 0.850 ± 0.020)",
                    "plain_card 0.700 ± 0.100 (pre 0.150 ± 0.050) met not run",
                    "canvas_todo not run not yet measured not run"]
    assert 'href="../../cards/attack_one/"' in table and 'href="../../cards/plain_card/"' in table
    # metric labels and meanings come from the testbed's attacks: block
    assert "Post-attack ASR ↑ (ASR): attack success rate" in text and "Pre-attack ASR (pre_attack)" in text
    # the cells were computed on two dates at two commits: the range is given
    assert "Computed between 2026-01-02 and 2026-01-05 at commits 0123456, fedcba9 (3 cells; 3 not run yet)" in text
    # bars per target with their verdicts, and the known miss shown in full (as text)
    assert ("attack_one: against base: Post-attack ASR ≥ 0.8 — met; against plain_card: Post-attack ASR ≥ "
            "pre_attack + 0.3 — met; against canvas_todo: Post-attack ASR ≥ 0.5 — not yet measured.") in text
    assert f"Known miss: {ATTACK_KNOWN_MISS}" in text and "<b>tried</b>" not in html
    assert "attack_two: no bar declared on MiniCanvas." in text
    # every cell file is downloadable from the page
    downloads = section(html, 'id="cells"')
    for attack, target in MATRIX_CELLS:
        href = f"../../matrix/minicanvas/{attack}/{target}.json"
        assert f'href="{href}"' in downloads
        published = json.loads((robust_site / "matrix" / "minicanvas" / attack / f"{target}.json").read_text())
        assert published["details"]["target"] == target


def test_robustness_page_is_linked_from_cards_and_leaderboards(robust_site: Path):
    for path in ("cards/plain_card", "cards/canvas_todo", "cards/attack_one", "cards/attack_two"):
        header = section(page(robust_site, path), '<div class="atlas-card">', "jupyter-wrapper")
        assert 'href="../../robustness/minicanvas/"' in header, path
    board = page(robust_site, "leaderboards")
    assert 'href="../robustness/minicanvas/"' in board
    # attack cards are not rows of the unlearn leaderboard; they are listed under its robustness section
    minicanvas = section(board, 'id="minicanvas"', 'id="minicanvas-robustness"')
    assert [row.split()[0] for row in body_rows(minicanvas)] == ["plain_card", "canvas_todo", "Base"]
    robust = text_of(section(board, 'id="minicanvas-robustness"', 'id="miniprofiles"'))
    assert "Post-attack ASR 0.900 against base · 0.700 against 1 unlearn card" in robust
    assert "Post-attack ASR 0.400 against base" in robust
    # the nav lists the robustness page
    assert 'href="../robustness/minicanvas/"' in page(robust_site, "cards")


def test_unlearn_card_page_shows_its_row(robust_site: Path):
    header = section(page(robust_site, "cards/plain_card"), '<div class="atlas-card">', "jupyter-wrapper")
    row = section(header, "Robustness", "Fidelity")
    assert body_rows(row) == ["attack_one 0.700 ± 0.100 0.150 ± 0.050 met 2026-01-05 · fedcba9",
                              "attack_two not run — — —"]
    todo = text_of(section(page(robust_site, "cards/canvas_todo"), '<div class="atlas-card">', "jupyter-wrapper"))
    assert "No attack card has been run against canvas_todo yet" in todo


def test_attack_card_page_shows_its_column_and_prompts(robust_site: Path):
    html = page(robust_site, "cards/attack_one")
    header = section(html, '<div class="atlas-card">', "jupyter-wrapper")
    text = text_of(header)
    assert "metrics.json" not in text and "Not yet executed" not in text, "an attack card has no metrics.json"
    column = section(header, "This attack against every target", "</table>")
    assert body_rows(column) == [
        "Base model (no unlearning) 0.850 ± 0.020 0.900 ± 0.050 4800 ± 0 9.50 s met base.json",
        "plain_card 0.150 ± 0.050 0.700 ± 0.100 4800 ± 0 9.50 s met plain_card.json",
        "canvas_todo — not run — — not yet measured —"]
    assert 'href="../plain_card/"' in column
    assert "Computed on MiniCanvas" not in text and "Computed between 2026-01-02 and 2026-01-05" in text
    assert "python -m methods matrix --testbed minicanvas --attack attack_one --seed 0" in text
    assert f"Known miss: {ATTACK_KNOWN_MISS}" in text
    # the prompts, as text to copy (the hostile one stays text), per target
    prompts = section(header, "Adversarial prompts", "Fidelity")
    for prompt in ATTACK_PROMPTS:
        assert prompt in text_of(prompts)
    assert "<script>alert(7)" not in html and "&lt;script&gt;alert(7)&lt;/script&gt;" in html
    assert "against plain_card (1 prompt)" in text_of(prompts)
    # the cell files for download, beside the notebook
    for target in ("base", "plain_card"):
        assert f'href="../../matrix/minicanvas/attack_one/{target}.json"' in header
    assert 'href="attack_one.ipynb"' in header
    # an attack with embeddings only says so
    assert "none as text" in text_of(section(page(robust_site, "cards/attack_two"), '<div class="atlas-card">',
                                             "jupyter-wrapper"))


def test_site_without_matrix_has_no_robustness_page(hostile_site: Path):
    assert not (hostile_site / "robustness").exists()
    board = page(hostile_site, "leaderboards")
    assert "robustness/" not in board and 'id="minicanvas-robustness"' not in board


@pytest.fixture
def robust_folder(tmp_path, monkeypatch) -> tuple[Path, Path]:
    papers, results = write_robust_catalog(tmp_path)
    monkeypatch.setenv("MMU_ATLAS_REGISTRY", str(tmp_path / "registry.yaml"))
    return papers, results


@pytest.mark.parametrize("folder, target, content, message", [
    ("attack_one", "base", attack_record("attack_two", "base", (0.5, 0.0), (0.5, 0.0)),
     "holds the attack card 'attack_two' on 'minicanvas', expected the attack card 'attack_one'"),
    ("nonesuch", "base", attack_record("nonesuch", "base", (0.5, 0.0), (0.5, 0.0)), "no attack card 'nonesuch'"),
    ("attack_one", "ghost", attack_record("attack_one", "ghost", (0.5, 0.0), (0.5, 0.0)),
     "'ghost' is neither 'base' nor an unlearn card on minicanvas"),
    ("attack_one", "base", "{not json", "not a readable JSON file"),
    ("attack_one", "base", attack_record("attack_one", "plain_card", (0.5, 0.0), (0.5, 0.0)),
     "its details.target is 'plain_card', but its name says 'base'"),
])
def test_a_wrong_cell_file_stops_the_build_naming_it(robust_folder, folder, target, content, message):
    _, results = robust_folder
    write_matrix(results, {(folder, target): content})
    with pytest.raises(cards.CardError) as error:
        robustness.load_matrices(load_registry(), results)
    assert message in str(error.value) and f"{folder}/{target}.json" in str(error.value)


def test_load_matrices_reads_every_cell_and_missing_ones(robust_folder):
    _, results = robust_folder
    matrix = robustness.load_matrices(load_registry(), results)["minicanvas"]
    assert matrix.attacks == ["attack_one", "attack_two"] and matrix.targets == ["base", "plain_card", "canvas_todo"]
    assert matrix.cell("attack_one", "canvas_todo") is None
    assert matrix.verdict("attack_one", "base") is True and matrix.verdict("attack_two", "base") is None
    assert matrix.cell("attack_one", "plain_card").post == (0.7, 0.1)


def test_broken_cell_fails_the_strict_build(tmp_path):
    papers, results = write_robust_catalog(tmp_path)
    write_matrix(results, {("attack_one", "base"): "{broken"})
    result = run_build(tmp_path / "site", papers, results)
    assert result.returncode != 0 and "attack_one/base.json" in result.stderr


def test_search_ranks_paper_pages_above_card_pages(robust_site: Path):
    """A phrase of a paper's summary must find the paper before the card pages that repeat its terms (an attack
    card's notebook names every method it attacks): paper pages are boosted, card pages weighted down."""
    index = json.loads((robust_site / "search" / "search_index.json").read_text(encoding="utf-8"))
    boosts = {}
    for doc in index["docs"]:
        boosts.setdefault(doc["location"].split("#")[0], set()).add(doc.get("boost", 1))
    papers = {boost for location, values in boosts.items() if location.startswith("papers/") for boost in values}
    card_pages = {boost for location, values in boosts.items() if location.startswith("cards/") and location != "cards/"
                  for boost in values}
    assert papers == {2} and card_pages == {0.5}, (papers, card_pages)


def test_attack_card_without_cells_says_how_to_run_it(robust_folder, tmp_path):
    """No matrix yet: the attack card's header says so and gives the command; the leaderboard lists it as not run;
    no robustness page is linked (there is none)."""
    papers, _ = robust_folder
    empty = tmp_path / "no-results"
    empty.mkdir()
    found = cards.discover(papers.parent.parent / "notebooks", empty)
    assert not cards.matrices(found)
    attack = next(card for card in found if card.name == "attack_one")
    assert attack.is_attack and not attack.executed and attack.meets_bar() is None
    header = cards.card_header(attack, lambda src: src, {})
    assert "**Not yet run**: there is no `results/minicanvas/matrix/attack_one/<target>.json` yet" in header
    assert "python -m methods matrix --testbed minicanvas --attack attack_one --seed 0" in header
    assert "robustness/" not in header and "metrics.json" not in header
    board = cards.leaderboards_page(found, {})
    assert "No attack card has been run on this testbed yet" in board
    assert "- `attack_one`: *not yet run*\n" in board + "\n"
    assert "| `attack_one`" not in board, "not a row of the unlearn leaderboard"
