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
from site_tools.bibtex import catalog_to_bibtex
from site_tools.catalog import PAPERS_DIR, REPO_ROOT, load_catalog
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


def test_bibtex_leaves_method_card_out():
    papers = [p for p in load_catalog() if p.get("method_card")]
    assert any(isinstance(p["method_card"], list) for p in papers)
    bib = catalog_to_bibtex(papers)
    assert bib.count("\n@") + 1 == len(papers) and "method_card" not in bib and "graddiff" not in bib


def test_export_refuses_an_invalid_catalog(tmp_path, capsys):
    papers = tmp_path / "papers"
    papers.mkdir()
    write(papers, "bad2024x.yaml", "id: bad2024x\n")
    assert main(["--papers-dir", str(papers), "export", "--format", "json"]) == 1
    assert "run `python -m site_tools validate`" in capsys.readouterr().err


BIB_FIELDS = ("id", "title", "authors", "year", "month", "venue", "contribution", "stage", "modality", "model_family",
              "target", "summary")


def test_bib_export_reimports_to_the_same_papers(tmp_path):
    bib = tmp_path / "catalog.bib"
    assert main(["export", "--format", "bib", "-o", str(bib)]) == 0
    fresh = tmp_path / "reimported"
    assert main(["--papers-dir", str(fresh), "import-bib", str(bib)]) == 0
    original = load_catalog()
    reimported = {p["id"]: p for p in (yaml.safe_load(f.read_text()) for f in fresh.glob("*.yaml"))}
    assert set(reimported) == {p["id"] for p in original}
    for paper in original:
        again = reimported[paper["id"]]
        for field in BIB_FIELDS:
            assert again.get(field) == paper.get(field), (paper["id"], field)
        for link in ("arxiv", "doi", "url", "code", "project", "pdf", "openreview"):
            assert again.get("links", {}).get(link) == paper["links"].get(link), (paper["id"], link)
    # Importing the same file into the catalog again writes nothing: every paper is a duplicate.
    assert main(["--papers-dir", str(fresh), "import-bib", str(bib)]) == 0
    assert len(list(fresh.glob("*.yaml"))) == len(original)


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
