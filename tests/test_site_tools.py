"""The catalog tools: clear errors for bad input, the CLI, exports and the BibTeX round trip."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from site_tools.__main__ import main
from site_tools.bibtex import catalog_to_bibtex, paper_to_bibtex
from site_tools.catalog import PAPERS_DIR, REPO_ROOT, card_names, load_catalog
from site_tools.entries import make_id
from registry_helpers import card_entry, write_registry
from site_tools.validate import validate_paths, venue_pattern

GOOD = {
    "id": "doe2024sample",
    "title": "A Sample Paper About Concept Erasure",
    "year": 2024,
    "venue": "arXiv",
    "links": {"arxiv": "2401.99999"},
    "contribution": "method",
    "stage": ["training-time"],
    "modality": ["image"],
    "summary": "A sample entry used by the tests; it erases a concept by fine-tuning the UNet.",
    "sources": ["contributed"],
}


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def problems_for(tmp_path: Path, name: str, content: str | bytes) -> list[str]:
    papers = tmp_path / "papers"
    papers.mkdir(exist_ok=True)
    path = write(papers, name, content)
    _, problems = validate_paths([path], papers_dir=papers)
    return [str(p) for p in problems]


def test_good_entry_is_valid(tmp_path):
    assert problems_for(tmp_path, "doe2024sample.yaml", yaml.safe_dump(GOOD)) == []


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("bomb2024x.yaml", "a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: [*b, *b, *b]\n", ":2: (file): YAML aliases"),
        ("list2024x.yaml", "- id: a\n- id: b\n", ":1: (file): the top level is a list"),
        ("latin2024x.yaml", b"id: caf\xe9\n", ":1: (file): not UTF-8"),
        ("broken2024x.yaml", "id: [unclosed\n", "(file): not valid YAML"),
        ("empty2024x.yaml", "", ":1: (file): the file is empty"),
    ],
)
def test_unreadable_files_get_one_clear_problem(tmp_path, name, content, expected):
    problems = problems_for(tmp_path, name, content)
    assert len(problems) == 1 and expected in problems[0] and name in problems[0], problems


def test_huge_file_is_refused_quickly(tmp_path):
    start = time.perf_counter()
    problems = problems_for(tmp_path, "huge2024x.yaml", "notes: '" + "x" * 5_000_000 + "'\n")
    assert time.perf_counter() - start < 2
    assert "over the" in problems[0] and "huge2024x.yaml:1: (file)" in problems[0]


def test_alias_bomb_is_refused_quickly(tmp_path):
    levels = ["l0: &l0 [" + ", ".join(["lol"] * 10) + "]"]
    levels += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9)]
    start = time.perf_counter()
    problems = problems_for(tmp_path, "laughs2024x.yaml", "\n".join(levels) + "\n")
    assert time.perf_counter() - start < 2
    assert "aliases" in problems[0]


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"contribution": "methd"}, "doe2024sample.yaml:7: contribution: 'methd' is not one of"),
        ({"modality": ["image", "smell"]}, "modality.1: 'smell' is not one of"),
        ({"stage": ["post-hoc"]}, "stage.0: 'post-hoc' is not one of"),
        ({"year": "2024"}, "year: '2024' is not of type 'integer'"),
        ({"links": {"arxiv": "2401.99999", "code": "javascript:alert(1)"}}, "links.code: 'javascript:alert(1)' is not an http(s) URL"),
        ({"links": {"arxiv": "2401.99999", "code": "https://github.com/x/y?utm_source=catalyzex.com"}}, "links.code: link carries a tracking parameter"),
        ({"links": {"arxiv": "arXiv:2401.99999"}}, "links.arxiv: 'arXiv:2401.99999' does not match"),
        ({"homepage": "https://x.org"}, "homepage: unknown field"),
        ({"id": "other2024name"}, "id: 'other2024name' differs from the file name"),
        ({"benchmarks": ["nosuch2024bench"]}, "benchmarks.0: no catalog entry has id 'nosuch2024bench'"),
        ({"method_card": "nosuchcard"}, "method_card: no registered card 'nosuchcard'"),
        ({"summary": "short"}, "summary: 'short' is too short"),
    ],
)
def test_each_field_error_names_file_line_and_field(tmp_path, change, expected):
    entry = {**GOOD, **change}
    problems = problems_for(tmp_path, "doe2024sample.yaml", yaml.safe_dump(entry, sort_keys=False))
    assert any(expected in p for p in problems), problems
    assert all(p.count(":") >= 3 and "(" in p for p in problems), problems  # path:line: field: message (hint)



@pytest.mark.parametrize("venue", ["arXiv", "TechRxiv", "SSRN", "Unpublished", "CVPR 2024", "ACL 2025 Findings",
                                   "NeurIPS 2023 Workshop", "NeurIPS 2025 Datasets and Benchmarks Track", "TMLR 2025",
                                   "IEEE S&P 2024 Workshop", "ACM Transactions on Graphics 2023", "CCS 2024",
                                   "SIGGRAPH Asia 2023", "Journal of Artificial Intelligence Research 2024"])
def test_venues_in_the_format_are_valid(tmp_path, venue):
    entry = {**GOOD, "year": 2023, "venue": venue}  # the venue's year may be later than the year of first appearance
    assert problems_for(tmp_path, "doe2024sample.yaml", yaml.safe_dump(entry, sort_keys=False)) == []


FORM = "the form is `<NAME> <YEAR>` plus an optional track"


@pytest.mark.parametrize("venue, expected", [
    ("NeurIPS 2023 Workshops", "venue: 'NeurIPS 2023 Workshops' is not in the venue format (write `NeurIPS 2023 Workshop`; " + FORM),
    ("IEEE S&P 2024 Workshops", "is not in the venue format (write `IEEE S&P 2024 Workshop`; "),
    ("ACM CCS 2024", "venue: 'ACM CCS 2024' is not in the venue format (write `CCS 2024`; " + FORM),
    ("TMLR", "venue: 'TMLR' lacks the year (write `TMLR <YEAR>`; " + FORM),
    ("Nature Machine Intelligence", "lacks the year (write `Nature Machine Intelligence <YEAR>`; "),
    ("OpenReview", "venue: 'OpenReview' is not a venue (write the venue that accepted the paper, else `arXiv` if it "
                   "has an arXiv version, else `Unpublished`; describe the OpenReview submission in notes)"),
    ("arXiv 2024", "venue: 'arXiv 2024' is not in the venue format (write `arXiv`; "),
    ("arxiv preprint", "(write `arXiv`; "),
    ("ACL 2025 (Findings)", "(write `ACL 2025 Findings`; "),
    ("Findings of EMNLP 2024", "(write `EMNLP 2024 Findings`; "),
    ("ACM Transactions on Graphics (SIGGRAPH Asia 2023)", "(write `ACM Transactions on Graphics 2023`; "),
    ("Neurips 2024", "(write `NeurIPS 2024`; "),
    ("CVPRW 2024", "(write `CVPR 2024 Workshop`; "),
    ("TPAMI 2024", "(write `IEEE TPAMI 2024`; "),
    ("Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition 2024", "(write `CVPR 2024`; "),
    ("NeurIPS 2024 Datasets & Benchmarks", "(write `NeurIPS 2024 Datasets and Benchmarks Track`; "),
    ("Foo Symposium 2024", "venue: 'Foo Symposium 2024' is not a known venue (" + FORM),
    ("CVPR 2023", "venue: the venue year 2023 is earlier than year 2024 (`year` is the first public appearance"),
])
def test_venue_outside_the_format_gets_one_line_with_the_fix(tmp_path, venue, expected):
    problems = problems_for(tmp_path, "doe2024sample.yaml", yaml.safe_dump({**GOOD, "venue": venue}, sort_keys=False))
    assert len(problems) == 1 and "\n" not in problems[0], problems
    assert problems[0].startswith("doe2024sample.yaml:4: venue: ") or "papers/doe2024sample.yaml:4: venue: " in problems[0]
    assert expected in problems[0], problems


def test_schema_venue_pattern_is_built_from_its_vocabulary():
    """The schema's pattern is what tools other than validate check; it must say the same as the vocabulary."""
    schema = json.loads((REPO_ROOT / "catalog" / "schema" / "paper.schema.json").read_text())
    venue = schema["properties"]["venue"]
    assert venue["pattern"] == venue_pattern()
    for name in venue["x-venue-conferences"] + venue["x-venue-journals"] + venue["x-preprint-servers"]:
        assert name in venue["description"], name


def test_attack_entry_with_a_stage_is_an_error(tmp_path):
    attack = {**GOOD, "contribution": "attack"}
    problems = problems_for(tmp_path, "doe2024sample.yaml", yaml.safe_dump(attack, sort_keys=False))
    assert len(problems) == 1, problems
    assert "doe2024sample.yaml:8: stage: attack entries carry no stage (remove `stage:`: it records where the " \
           "paper's own unlearning intervention acts" in problems[0], problems
    attack.pop("stage")
    assert problems_for(tmp_path, "doe2024sample.yaml", yaml.safe_dump(attack, sort_keys=False)) == []


def test_catalog_attack_entries_carry_no_stage():
    attacks = [p for p in load_catalog() if p["contribution"] == "attack"]
    assert attacks and not [p["id"] for p in attacks if "stage" in p]

def card_problems(tmp_path: Path, method_card, cards=("ga", "npo"), whole=False) -> list[str]:
    """Problems of GOOD with `method_card`, against a registry whose cards (MiniProfiles) list GOOD as their paper;
    `whole` validates the whole folder, which adds the registry's side of the cross-check."""
    papers = tmp_path / "catalog" / "papers"
    papers.mkdir(parents=True)
    registry = write_registry(tmp_path / "registry.yaml",
                              {name: card_entry("miniprofiles", [GOOD["id"]]) for name in cards})
    path = write(papers, "doe2024sample.yaml", yaml.safe_dump({**GOOD, "method_card": method_card}, sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMU_ATLAS_REGISTRY", str(registry))
        _, problems = validate_paths(None if whole else [path], papers_dir=papers)
    return [str(p) for p in problems]


def test_method_card_is_one_name_or_a_list_of_names(tmp_path):
    assert card_problems(tmp_path / "one", "ga") == []
    assert card_problems(tmp_path / "list", ["ga", "npo"]) == []


@pytest.mark.parametrize("method_card, expected", [
    (["ga", "nosuch"], "method_card.1: no registered card 'nosuch' in "),
    ("nosuch", "method_card: no registered card 'nosuch'"),
    (["ga", "Bad-Name"], "method_card.1: 'Bad-Name' does not match"),
    (["ga", "ga"], "method_card: ['ga', 'ga'] has non-unique elements"),
    ([], "method_card: [] should be non-empty"),
    (3, "method_card: 3 is not of type 'string', 'array'"),
])
def test_bad_method_card_names_the_field(tmp_path, method_card, expected):
    problems = card_problems(tmp_path, method_card)
    assert any(expected in p for p in problems), problems
    assert all("doe2024sample.yaml:" in p for p in problems), problems


def test_registry_and_catalog_name_each_other(tmp_path):
    """Both directions: a paper names a card that lists another paper; a card lists a paper that names no card."""
    problems = card_problems(tmp_path / "a", "ga", cards=("ga",), whole=True)
    assert problems == []
    problems = card_problems(tmp_path / "b", "npo", cards=("ga", "npo"), whole=True)
    assert any("registry.yaml:" in p and "cards.ga.catalog.0: " in p and "does not name the card 'ga'" in p
               and "add method_card: ga" in p for p in problems), problems
    registry = write_registry(tmp_path / "c" / "registry.yaml", {"ga": card_entry("miniprofiles", ["doe2024sample"])})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMU_ATLAS_REGISTRY", str(registry))
        other = {**GOOD, "id": "roe2024other", "links": {"arxiv": "2401.99998"}, "title": "Another Sample Paper",
                 "method_card": "ga"}
        papers = tmp_path / "c" / "catalog" / "papers"
        papers.mkdir(parents=True)
        write(papers, "roe2024other.yaml", yaml.safe_dump(other, sort_keys=False))
        _, problems = validate_paths(None, papers_dir=papers)
    messages = [str(p) for p in problems]
    assert any("method_card: card 'ga' does not list 'roe2024other' among its catalog ids" in m for m in messages)
    assert any("cards.ga.catalog.0: no catalog entry has id 'doe2024sample'" in m for m in messages), messages


def test_missing_stage_for_a_method_is_reported(tmp_path):
    entry = {k: v for k, v in GOOD.items() if k != "stage"}
    problems = problems_for(tmp_path, "doe2024sample.yaml", yaml.safe_dump(entry, sort_keys=False))
    assert any("stage: is required for method and defense entries" in p for p in problems), problems


def test_missing_required_fields_are_all_reported(tmp_path):
    problems = problems_for(tmp_path, "doe2024sample.yaml", "id: doe2024sample\ntitle: Only A Title Here\n")
    for field in ("year", "venue", "links", "contribution", "modality", "summary", "sources"):
        assert any(f": {field}: is required" in p for p in problems), (field, problems)


def test_duplicate_key_is_not_silently_dropped(tmp_path):
    text = yaml.safe_dump(GOOD, sort_keys=False) + "year: 2023\n"
    problems = problems_for(tmp_path, "doe2024sample.yaml", text)
    assert any("year: key appears twice" in p for p in problems), problems


def test_duplicates_are_detected_by_arxiv_openreview_and_title(tmp_path):
    papers = tmp_path / "papers"
    papers.mkdir()
    write(papers, "doe2024sample.yaml", yaml.safe_dump(GOOD))
    same_arxiv = {**GOOD, "id": "roe2024other", "title": "A Different Title Entirely Here"}
    write(papers, "roe2024other.yaml", yaml.safe_dump(same_arxiv))
    same_title = {**GOOD, "id": "poe2024third", "title": "a sample paper about concept-erasure!", "links": {"openreview": "AbCdEf123"}}
    write(papers, "poe2024third.yaml", yaml.safe_dump(same_title))
    alias = {**GOOD, "id": "zoe2024fourth", "title": "Fourth Paper With Alias", "links": {"openreview": "AbCdEf123"},
             "aliases": ["A Sample Paper About Concept Erasure"]}
    write(papers, "zoe2024fourth.yaml", yaml.safe_dump(alias))
    _, problems = validate_paths(None, papers_dir=papers)
    text = "\n".join(map(str, problems))
    assert "roe2024other.yaml" in text and "arXiv id 2401.99999 is also in" in text
    assert "poe2024third.yaml" in text and "duplicate: the same title" in text
    assert "zoe2024fourth.yaml" in text and "OpenReview id AbCdEf123 is also in" in text
    assert "aliases.0: duplicate" in text


def test_validate_cli_exit_codes_and_no_traceback(tmp_path, capsys):
    papers = tmp_path / "papers"
    papers.mkdir()
    write(papers, "doe2024sample.yaml", yaml.safe_dump(GOOD))
    assert main(["--papers-dir", str(papers), "validate"]) == 0
    write(papers, "bad2024x.yaml", "- not a mapping\n")
    assert main(["--papers-dir", str(papers), "validate"]) == 1
    out = capsys.readouterr()
    assert "bad2024x.yaml:1: (file)" in out.out and "Traceback" not in out.out + out.err
    assert main(["validate", str(tmp_path / "missing.yaml")]) == 2


def test_subprocess_cli_prints_no_traceback_for_hostile_input(tmp_path):
    write(tmp_path, "x2024y.yaml", b"\xff\xfe\x00garbage")
    result = subprocess.run([sys.executable, "-m", "site_tools", "validate", str(tmp_path / "x2024y.yaml")],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr and "not UTF-8" in result.stdout


def test_make_id_follows_the_citation_key_rule():
    assert make_id("Rohit Gandikota", 2023, "Erasing Concepts from Diffusion Models") == "gandikota2023erasing"
    assert make_id("Shilin Lu", 2024, "MACE: Mass Concept Erasure in Diffusion Models") == "lu2024mace"
    assert make_id("Changsheng Kim", 2024, "R.A.C.E.: Robust Adversarial Concept Erasure") == "kim2024race"
    assert make_id("José Núñez", 2024, "Towards the Safe Generation") == "nunez2024safe"


def test_new_scaffolds_and_refuses_duplicates(tmp_path, capsys):
    papers = tmp_path / "papers"
    papers.mkdir()
    write(papers, "doe2024sample.yaml", yaml.safe_dump(GOOD))
    args = ["--papers-dir", str(papers), "new", "--no-input", "--title", "Brand New Erasure", "--year", "2025",
            "--arxiv", "2501.00001", "--authors", "Ada Lovelace; Alan Turing"]
    assert main(args) == 0
    created = yaml.safe_load((papers / "lovelace2025brand.yaml").read_text())
    assert created["links"]["arxiv"] == "2501.00001" and created["authors"] == ["Ada Lovelace", "Alan Turing"]
    # The same arXiv id, or the same title under another id, is refused.
    assert main(args) == 1
    assert main(["--papers-dir", str(papers), "new", "--no-input", "--title", GOOD["title"], "--year", "2024",
                 "--id", "x2024other"]) == 1
    assert "already in the catalog" in capsys.readouterr().err
    assert main(["--papers-dir", str(papers), "new", "--no-input", "--title", "T2", "--year", "2024",
                 "--arxiv", "not-an-id", "--id", "x2024y"]) == 2


def test_export_json_has_yaml_field_names(tmp_path):
    out = tmp_path / "catalog.json"
    assert main(["export", "--format", "json", "-o", str(out)]) == 0
    exported = json.loads(out.read_text())
    assert exported == load_catalog()
    first = yaml.safe_load((PAPERS_DIR / f"{exported[0]['id']}.yaml").read_text())
    assert set(exported[0]) == set(first)


def test_export_csv_has_a_row_per_paper(tmp_path):
    out = tmp_path / "catalog.csv"
    assert main(["export", "--format", "csv", "-o", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    papers = load_catalog()
    assert [r["id"] for r in rows] == [p["id"] for p in papers]
    assert rows[0]["title"] == papers[0]["title"]
    # method_card is one name or a list of names; a list is joined like the other list columns.
    cards = {r["id"]: r["method_card"] for r in rows}
    for paper in papers:
        value = paper.get("method_card", "")
        assert cards[paper["id"]] == (value if isinstance(value, str) else "; ".join(value)), paper["id"]
    assert cards["liu2024protecting"] == "ga; graddiff; kl; npo" and cards["gandikota2023erasing"] == "esd"


def test_citation_bibtex_leaves_method_card_out_and_the_export_carries_it():
    papers = [p for p in load_catalog() if p.get("method_card")]
    assert any(isinstance(p["method_card"], list) for p in papers)
    citations = "".join(paper_to_bibtex(p) for p in papers)  # the BibTeX of the paper pages, for citing
    assert citations.count("\n@") + 1 == len(papers) and "method_card" not in citations and "graddiff" not in citations
    bib = catalog_to_bibtex(papers)  # the export carries every field (test_bib_round_trip_keeps_every_field)
    assert bib.count("\n@") + 1 == len(papers) and 'atlas_method_card = {["ga", "graddiff", "kl", "npo"]}' in bib


def test_export_refuses_an_invalid_catalog(tmp_path, capsys):
    papers = tmp_path / "papers"
    papers.mkdir()
    write(papers, "bad2024x.yaml", "id: bad2024x\n")
    assert main(["--papers-dir", str(papers), "export", "--format", "json"]) == 1
    assert "run `python -m site_tools validate`" in capsys.readouterr().err


# Every string a BibTeX value could mangle: braces, backslashes, LaTeX-like text, %, @, commas and "and" in names,
# quotes, a JSON-looking note with a line break.
HOSTILE_BIB_PAPER = {
    **GOOD, "id": "mueller2024hostile", "title": '{Braces} \\ back\\ M"uller 50% @home, "quoted" ~tilde \\',
    "aliases": ["Other, Name; with | pipes", "{x} and {y}"], "authors": ["Jörg Müller", "Ann O'Hara & {{ jinja }}",
                                                                     "Smith, Jr", "Barnes and Noble"],
    "month": 2, "venue": "ACM Transactions on Graphics 2024",
    "links": {"arxiv": "2402.99999", "url": "https://example.org/a?b=1&c=%20{d}", "code": "https://github.com/x/y",
              "doi": "10.1000/xyz{1}", "pdf": "https://example.org/p.pdf", "project": "https://example.org/p",
              "openreview": "AbC_d-1"},
    "model_family": ["stable-diffusion"], "target": ["nsfw"], "benchmarks": ["doe2024sample"], "method_card": ["ga"],
    "summary": "A summary with {braces}, a \\backslash, 100% and @ signs; it erases a concept by fine-tuning.",
    "sources": ["awesome-vgm-vlm-unlearning", "multimodal-unlearning-survey"], "background": False,
    "notes": 'Line one.\nLine two: {"json": [1, 2]} \\" and a trailing space ',
}


def round_trip(tmp_path: Path, papers: list[dict], cards: set[str]) -> dict[str, dict]:
    """Export `papers` as BibTeX, import the file into an empty catalog folder (with a registry of the cards the
    entries name, so that it validates), check it validates, and return the imported entries by id."""
    bib = write(tmp_path, "export.bib", catalog_to_bibtex(papers))
    folder = tmp_path / "catalog" / "papers"
    registry = write_registry(tmp_path / "registry.yaml", {
        name: card_entry("miniprofiles", [p["id"] for p in papers if name in card_names(p.get("method_card"))])
        for name in cards})
    assert main(["--papers-dir", str(folder), "import-bib", str(bib)]) == 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMU_ATLAS_REGISTRY", str(registry))
        _, problems = validate_paths(None, papers_dir=folder)
    assert not problems, "\n".join(map(str, problems))
    return {p["id"]: p for p in (yaml.safe_load(f.read_text(encoding="utf-8")) for f in folder.glob("*.yaml"))}


def test_bib_round_trip_keeps_every_field(tmp_path):
    """The README's promise: `export --format bib` then `import-bib` gives back every entry whole, every field."""
    original = load_catalog()
    cards = {name for paper in original for name in card_names(paper.get("method_card"))}
    reimported = round_trip(tmp_path, original, cards)
    assert set(reimported) == {p["id"] for p in original}
    for paper in original:
        assert reimported[paper["id"]] == paper, paper["id"]
    # Importing the same file into the catalog again writes nothing: every paper is a duplicate.
    folder = tmp_path / "catalog" / "papers"
    assert main(["--papers-dir", str(folder), "import-bib", str(tmp_path / "export.bib")]) == 0
    assert len(list(folder.glob("*.yaml"))) == len(original)


def test_bib_round_trip_keeps_hostile_strings(tmp_path):
    benchmark = {**GOOD, "contribution": "benchmark", "stage": []}
    del benchmark["stage"]
    papers = [benchmark, HOSTILE_BIB_PAPER]
    reimported = round_trip(tmp_path, papers, {"ga"})
    for paper in papers:
        assert reimported[paper["id"]] == paper


def test_import_bib_flags_duplicates_and_incomplete_entries(tmp_path, capsys):
    papers = tmp_path / "papers"
    shutil.copytree(PAPERS_DIR, papers)
    bib = write(tmp_path, "in.bib", """
@inproceedings{whoever2023esd, title={Erasing Concepts from Diffusion Models}, author={Gandikota, Rohit}, year={2023},
  booktitle={ICCV}}
@misc{smith2025novel, title={A {Novel} Erasure Method}, author={Smith, Jane and Doe, John}, year={2025},
  eprint={2501.12345}, archivePrefix={arXiv}}
""")
    assert main(["--papers-dir", str(papers), "import-bib", str(bib)]) == 0
    out = capsys.readouterr().out
    assert "duplicate: whoever2023esd" in out and not (papers / "whoever2023esd.yaml").exists()
    created = (papers / "smith2025novel.yaml").read_text()
    data = yaml.safe_load(created)
    assert data["title"] == "A Novel Erasure Method" and data["authors"] == ["Jane Smith", "John Doe"]
    assert data["venue"] == "arXiv" and data["links"]["arxiv"] == "2501.12345"
    assert "# contribution:" in created  # left for the contributor, and validate says so
    _, problems = validate_paths([papers / "smith2025novel.yaml"], papers_dir=papers)
    assert any("contribution: is required" in str(p) for p in problems)


def test_import_bib_bad_file_is_a_clear_error(tmp_path, capsys):
    bib = write(tmp_path, "bad.bib", b"@article{x, title={\xff}}")
    assert main(["import-bib", str(bib)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    assert main(["import-bib", str(tmp_path / "nope.bib")]) == 2


def test_stats_counts_every_paper(capsys):
    assert main(["stats"]) == 0
    out = capsys.readouterr().out
    assert f"papers: {len(load_catalog())}" in out
    for heading in ("stage:", "modality:", "contribution:", "year:"):
        assert heading in out


# --- every entry point: inputs checked first, one line naming the argument and the fix, exit 2, nothing written -----

def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its content, to prove that a refused command wrote nothing anywhere."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys, *expected: str) -> str:
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.out + out.err, out
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("bad_id", ["../papers/doe2024sample", "../../../x2024escape", "dir/x2024y", "/tmp/x2024y",
                                    "Doe2024Sample", "doe2024", "doe2024sample.yaml", "x" * 81 + "2024y", ""])
def test_new_refuses_an_id_that_is_not_a_citation_key(tmp_path, capsys, bad_id):
    """`new --id ../papers/<id>` overwrote another entry, `../../../x` wrote outside the repository, `dir/x` ended
    in a traceback: the id is checked against the schema's pattern before any path is built."""
    papers = tmp_path / "repo" / "catalog" / "papers"
    papers.mkdir(parents=True)
    write(papers, "doe2024sample.yaml", yaml.safe_dump(GOOD))
    (papers.parent / "other").mkdir()
    before = tree(tmp_path)
    code = main(["--papers-dir", str(papers), "new", "--no-input", "--title", "Overwrite Attempt Title", "--year",
                 "2024", "--id", bad_id])
    assert code == 2
    one_line_error(capsys, "new: --id", "gandikota2023erasing" if bad_id else "is empty")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("args, expected", [
    (["--title", "Tiny", "--year", "2024", "--id", "x2024tiny"], "--title: 'Tiny' is too short"),
    (["--title", "A Title Long Enough", "--year", "1800", "--id", "x2024old"], "--year: 1800 is less than the minimum"),
    (["--title", "A Title Long Enough", "--year", "20x4", "--id", "x2024y"], "argument --year: invalid int value"),
    (["--title", "A Title Long Enough", "--year", "2024", "--id", "x2024y", "--code", "javascript:alert(1)"],
     "--code: 'javascript:alert(1)' is not an http(s) URL"),
    (["--title", "A Title Long Enough", "--year", "2024", "--authors", "X"], "--authors: 'X' is too short"),
    (["--title", "A Title Long Enough", "--year", "2024", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_new_checks_every_argument_before_writing(tmp_path, capsys, args, expected):
    papers = tmp_path / "papers"
    assert exit_code(["--papers-dir", str(papers), "new", "--no-input", *args]) == 2
    one_line_error(capsys, expected)
    assert not papers.exists()


def exit_code(argv: list[str]) -> int:
    """main()'s exit code, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def test_new_refuses_a_papers_dir_that_is_a_file(tmp_path, capsys):
    papers = write(tmp_path, "papers", "not a folder")
    assert main(["--papers-dir", str(papers), "new", "--no-input", "--title", "A Title Long Enough", "--year", "2024",
                 "--id", "x2024y"]) == 2
    one_line_error(capsys, "--papers-dir", "is a file, not a folder")


def test_write_inside_refuses_paths_outside_its_folder(tmp_path):
    from site_tools.safe_io import UnsafeWriteError, write_all_inside, write_inside

    folder = tmp_path / "papers"
    folder.mkdir()
    (tmp_path / "outside").mkdir()
    (folder / "link.yaml").symlink_to(tmp_path / "outside" / "target.yaml")
    for name in ("../x.yaml", "/tmp/x.yaml", "a/b.yaml", "..", ".", "", "link.yaml", "a\\b.yaml"):
        with pytest.raises(UnsafeWriteError):
            write_inside(folder, name, "x")
    assert write_inside(folder, "ok.yaml", "data") == folder / "ok.yaml"
    with pytest.raises(UnsafeWriteError, match="already exists"):
        write_inside(folder, "ok.yaml", "other")  # never replaces a file unless asked
    assert (folder / "ok.yaml").read_text() == "data"
    write_inside(folder, "ok.yaml", "new", overwrite=True)
    assert (folder / "ok.yaml").read_text() == "new"
    # All or nothing: a refused name leaves none of the others written.
    with pytest.raises(UnsafeWriteError):
        write_all_inside(folder, {"a2024first.yaml": "1", "../b2024second.yaml": "2"})
    with pytest.raises(UnsafeWriteError):
        write_all_inside(folder, {"a2024first.yaml": "1", "ok.yaml": "2"})
    assert sorted(p.name for p in folder.iterdir()) == ["link.yaml", "ok.yaml"]
    assert not list((tmp_path / "outside").iterdir()) and not (tmp_path / "x.yaml").exists()


GOOD_BIB = "@misc{smith2025novel, title={A Novel Erasure Method}, author={Smith, Jane}, year={2025},\n" \
           "  eprint={2501.12345}, archivePrefix={arXiv}}\n"


@pytest.mark.parametrize("bad_entry, expected", [
    ("@misc{../../../x2024, title={Escape}, year={2024}}", "key: the entry key '../../../x2024' is not a catalog id"),
    ("@misc{sub/dir2024x, title={Slash}, year={2024}}", "key: the entry key 'sub/dir2024x' is not a catalog id"),
    ("@misc{smith2025novel, title={Same key again}, year={2025}}",
     "key: the key 'smith2025novel' is used by two entries (first at line 1)"),
    ("@misc{Smith2025Novel, title={Same key in capitals}, year={2025}}", "names the same catalog id as 'smith2025novel'"),
    ("@misc{bad2024year, title={Bad year}, year={20x4}}", "bad2024year.year: '20x4' is not a year between 1990 and"),
    ("@misc{bad2024month, title={Bad month}, year={2024}, month={13}}", "bad2024month.month: '13' is not a month"),
    ("@misc{bad2024json, title={Bad json}, year={2024}, atlas_sources={[oops}}", "atlas_sources: is not JSON"),
    ("@misc{broken2024x, title={Unclosed, year={2024}", "could not parse this BibTeX block"),
])
def test_import_bib_is_all_or_nothing(tmp_path, capsys, bad_entry, expected):
    """A bad key (a path outside the catalog, a '/'), a repeated key, a bad year or month after a good entry: every
    problem is reported with its line, exit 2, and not even the good entry is written."""
    papers = tmp_path / "repo" / "catalog" / "papers"
    papers.mkdir(parents=True)
    bib = write(tmp_path / "repo", "in.bib", GOOD_BIB + bad_entry + "\n")
    before = tree(tmp_path)
    assert main(["--papers-dir", str(papers), "import-bib", str(bib)]) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err and expected in out.err, out.err
    assert "import-bib: nothing written: 1 problem(s)" in out.err and "check braces and commas" not in out.err
    assert tree(tmp_path) == before


@pytest.mark.parametrize("content", ["", "\n\n% only a comment\n", "just some words, not BibTeX\n",
                                     '{"json": "instead of BibTeX"}\n'])
def test_import_bib_of_a_file_without_entries_is_an_error(tmp_path, capsys, content):
    bib = write(tmp_path, "empty.bib", content)
    assert main(["--papers-dir", str(tmp_path / "papers"), "import-bib", str(bib)]) == 2
    out = capsys.readouterr()
    assert "no BibTeX entries found" in out.err and "Traceback" not in out.err
    assert not (tmp_path / "papers").exists()


def test_import_bib_dry_run_writes_nothing_and_says_so(tmp_path, capsys):
    bib = write(tmp_path, "in.bib", GOOD_BIB)
    papers = tmp_path / "papers"
    assert main(["--papers-dir", str(papers), "import-bib", "--dry-run", str(bib)]) == 0
    out = capsys.readouterr().out
    assert "would write" in out and "smith2025novel.yaml" in out
    assert "1 would be written" in out and "nothing was written" in out and "1 written" not in out
    assert not papers.exists()


def test_import_bib_bad_paths_are_one_line_errors(tmp_path, capsys):
    assert main(["import-bib", str(tmp_path)]) == 2
    one_line_error(capsys, "is a folder, not a BibTeX file")
    assert main(["import-bib", str(tmp_path / "nope.bib")]) == 2
    one_line_error(capsys, "nope.bib: cannot read the file")


@pytest.mark.parametrize("raw, expected", [
    ('M{\\"u}ller, J{\\"o}rg', ["Jörg Müller"]),
    ("{\\'E}mile Zola and \\v{S}imon {\\v S}ebek", ["Émile Zola", "Šimon Šebek"]),
    ("Stra{\\ss}e, Hans and Fran\\c{c}ois Ba{\\~n}o", ["Hans Straße", "François Baño"]),
    ("Ma{\\l}gorzata {\\O}sterg{\\aa}rd and Na{\\\"\\i}ve, Zo{\\\"e}", ["Małgorzata Østergård", "Zoë Naïve"]),
    ("{Barnes and Noble} and van der Berg, Jr, Jan", ["Barnes and Noble", "Jan van der Berg Jr"]),
    ("D\\'{e}j\\`a Vu and \\^{I}le \\H{o}", ["Déjà Vu", "Île ő"]),
])
def test_latex_accents_in_bibtex_authors_are_decoded(tmp_path, raw, expected):
    bib = write(tmp_path, "in.bib", f"@misc{{mueller2024accents, title={{Accents}}, author={{{raw}}}, year={{2024}}}}\n")
    assert main(["--papers-dir", str(tmp_path / "papers"), "import-bib", str(bib)]) == 0
    assert yaml.safe_load((tmp_path / "papers" / "mueller2024accents.yaml").read_text())["authors"] == expected


def test_validate_refuses_latex_markup_in_names(tmp_path):
    entry = {**GOOD, "authors": ['J\\"org M\\"uller'], "title": "A Sample Paper About Concept Erasure \\emph{now}"}
    problems = problems_for(tmp_path, "doe2024sample.yaml", yaml.safe_dump(entry, sort_keys=False))
    assert any('authors.0: contains LaTeX markup (\\")' in p and "Müller" in p for p in problems), problems
    assert any("title: contains LaTeX markup (\\emph)" in p for p in problems), problems


def test_csv_export_neutralises_formulas(tmp_path):
    """A title starting with =, +, - or @ would run as a formula in a spreadsheet: it gets a leading apostrophe."""
    from site_tools.export import to_csv

    titles = ['=HYPERLINK("https://evil.example","x")', "+1+2 Erasure", "-2+3 Erasure", "@SUM(A1) Erasure",
              "\tTabbed Erasure", "Plain = Erasure"]
    papers = [dict(GOOD, id=f"doe2024p{i}", title=t, authors=["-Dash Name", "Ann Other"], notes="=1+1")
              for i, t in enumerate(titles)]
    rows = list(csv.DictReader(io.StringIO(to_csv(papers))))
    assert [r["title"] for r in rows] == ["'" + t for t in titles[:5]] + [titles[5]]
    assert all(r["authors"] == "'-Dash Name; Ann Other" and r["notes"] == "'=1+1" for r in rows)
    for row in rows:
        assert not any(value.startswith(("=", "+", "-", "@", "\t", "\r")) for value in row.values()), row


def test_length_limit_error_says_the_limit(tmp_path):
    """A long value used to be cut off before the message said what the limit is."""
    problems = problems_for(tmp_path, "doe2024sample.yaml", yaml.safe_dump({**GOOD, "summary": "A" * 5000}))
    summary = [p for p in problems if ": summary:" in p]
    assert len(summary) == 1 and "5,000 characters, over the maximum of 1,200" in summary[0], summary
    assert "shorten it to at most 1,200 characters" in summary[0] and len(summary[0]) < 400


def test_export_to_a_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["export", "--format", "csv", "-o", str(tmp_path)]) == 2
    one_line_error(capsys, "export: -o", "is a folder")


def test_usage_errors_are_one_line_with_exit_code_2(capsys):
    for argv, expected in ((["export", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
                           (["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
                           (["import-bib"], "the following arguments are required: file")):
        assert exit_code(argv) == 2
        one_line_error(capsys, expected, "--help")


def test_contributed_is_not_combined_with_a_source_list(tmp_path):
    entry = {**GOOD, "sources": ["multimodal-unlearning-survey", "contributed"]}
    problems = problems_for(tmp_path, "doe2024sample.yaml", yaml.safe_dump(entry, sort_keys=False))
    assert any("sources: 'contributed' marks an entry added beyond the source lists" in p for p in problems), problems


@pytest.mark.parametrize("command", [["validate"], ["stats"], ["export", "--format", "json"]])
def test_commands_refuse_a_papers_dir_that_is_not_a_folder(tmp_path, capsys, command):
    """A missing or wrong --papers-dir is a usage error naming the option, not a catalog problem."""
    for folder, expected in ((tmp_path / "missing", "no such folder"), (write(tmp_path, "file", "x"), "is a file")):
        assert main(["--papers-dir", str(folder), *command]) == 2
        one_line_error(capsys, f"{command[0]}: --papers-dir", expected)
