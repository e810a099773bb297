"""Command line of the catalog tools: ``python -m site_tools {validate,new,import-bib,export,stats}``."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .catalog import PAPERS_DIR, CatalogError, load_catalog, load_entries
from .entries import find_duplicate, make_id, write_entry
from .export import EXPORTERS, format_stats
from .validate import validate_paths

ARXIV_ID = re.compile(r"^(?:arxiv:)?(\d{4}\.\d{4,5})(?:v\d+)?$", re.I)


def cmd_validate(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths] or None
    for path in paths or []:
        if not path.exists():
            print(f"{path}: no such file or folder", file=sys.stderr)
            return 2
    count, problems = validate_paths(paths, papers_dir=args.papers_dir)
    for problem in problems:
        print(problem)
    if problems:
        print(f"\n{len(problems)} problem(s) in {count} entr{'y' if count == 1 else 'ies'}.", file=sys.stderr)
        return 1
    print(f"ok: {count} entr{'y' if count == 1 else 'ies'} valid")
    return 0


def _ask(prompt: str) -> str:
    try:
        return input(prompt).strip()
    except EOFError:
        return ""


def cmd_new(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty() and not args.no_input
    if interactive:
        args.title = args.title or _ask("Title: ")
        args.year = args.year or (int(y) if (y := _ask("Year of first appearance: ")).isdigit() else None)
        args.arxiv = args.arxiv or _ask("arXiv id (empty if none): ") or None
        args.authors = args.authors or _ask("Authors, separated by ';' (empty if unverified): ") or None
    missing = [flag for flag, value in (("--title", args.title), ("--year", args.year)) if not value]
    if missing:
        print(f"new: missing {' and '.join(missing)} (e.g. --title 'Erasing Concepts from Diffusion Models' --year 2023)",
              file=sys.stderr)
        return 2
    paper: dict = {"title": args.title.strip(), "year": args.year}
    authors = [a.strip() for a in (args.authors or "").split(";") if a.strip()]
    if authors:
        paper["authors"] = authors
    links = {}
    if args.arxiv:
        match = ARXIV_ID.match(args.arxiv.strip())
        if not match:
            print(f"new: --arxiv '{args.arxiv}' is not an arXiv id like 2303.07345", file=sys.stderr)
            return 2
        links["arxiv"] = match.group(1)
        paper["month"] = int(links["arxiv"][2:4])
    if args.code:
        links["code"] = args.code
    paper["venue"] = args.venue
    paper["links"] = links
    if not (authors or args.id):
        print("new: give --authors (the first author makes the id) or an explicit --id", file=sys.stderr)
        return 2
    paper["id"] = args.id or make_id(authors[0], args.year, args.title)
    paper["sources"] = ["contributed"]
    existing, _ = load_entries([args.papers_dir]) if args.papers_dir.exists() else ([], [])
    duplicate = find_duplicate(paper, existing)
    if duplicate is not None:
        print(f"new: refused: this paper is already in the catalog as {duplicate.path} "
              f"(same id, arXiv id or title)", file=sys.stderr)
        return 1
    todo = ["contribution", "stage", "modality", "model_family", "target", "summary"]
    args.papers_dir.mkdir(parents=True, exist_ok=True)
    path = write_entry(paper, args.papers_dir, todo)
    print(f"created {path}\nnext: fill in {', '.join(todo)}, then run `python -m site_tools validate {path}`")
    return 0


def cmd_import_bib(args: argparse.Namespace) -> int:
    from .bibtex import BibImportError, bib_entry_to_paper, parse_bib_file

    try:
        bib_entries = parse_bib_file(Path(args.file))
    except BibImportError as exc:
        print(f"import-bib: {exc}", file=sys.stderr)
        return 2
    existing, _ = load_entries([args.papers_dir]) if args.papers_dir.exists() else ([], [])
    written = duplicates = 0
    incomplete = []
    args.papers_dir.mkdir(parents=True, exist_ok=True)
    for bib_entry in bib_entries:
        paper, missing = bib_entry_to_paper(bib_entry)
        paper.setdefault("sources", ["contributed"])
        duplicate = find_duplicate(paper, existing)
        if duplicate is not None:
            duplicates += 1
            print(f"duplicate: {bib_entry.key} is already in the catalog as {duplicate.path}; not written")
            continue
        if args.dry_run:
            print(f"would write {paper['id']}.yaml" + (f" (to fill in: {', '.join(missing)})" if missing else ""))
        else:
            path = write_entry(paper, args.papers_dir, missing)
            print(f"wrote {path}" + (f" (to fill in: {', '.join(missing)})" if missing else ""))
        if missing:
            incomplete.append(paper["id"])
        written += 1
        from .catalog import Entry

        existing.append(Entry(args.papers_dir / f"{paper['id']}.yaml", paper))
    print(f"\n{written} written, {duplicates} duplicate(s) skipped, {len(incomplete)} need fields filled in")
    return 0


def _valid_catalog(args: argparse.Namespace) -> list | None:
    """The catalog, or None after reporting why it cannot be used (export and stats refuse an invalid catalog)."""
    try:
        return load_catalog(args.papers_dir)
    except CatalogError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return None


def cmd_export(args: argparse.Namespace) -> int:
    papers = _valid_catalog(args)
    if papers is None:
        return 1
    text = EXPORTERS[args.format](papers)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {len(papers)} papers to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    papers = _valid_catalog(args)
    if papers is None:
        return 1
    print(format_stats(papers))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m site_tools", description="Tools for the Multimodal Unlearning Atlas catalog.")
    parser.add_argument("--papers-dir", type=Path, default=PAPERS_DIR, help="folder of paper YAML files (default: catalog/papers)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check entries against the schema, vocabularies, ids, duplicates and links")
    p.add_argument("paths", nargs="*", help="files or folders (default: the whole catalog)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("new", help="scaffold a new entry (refuses a duplicate)")
    p.add_argument("--title")
    p.add_argument("--year", type=int)
    p.add_argument("--arxiv", help="arXiv id, e.g. 2303.07345")
    p.add_argument("--authors", help="verified authors, separated by ';'")
    p.add_argument("--venue", default="arXiv", help="e.g. 'CVPR 2024' (default: arXiv)")
    p.add_argument("--code", help="official code repository URL")
    p.add_argument("--id", help="citation key (default: surname + year + first title word)")
    p.add_argument("--no-input", action="store_true", help="never prompt, even on a terminal")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("import-bib", help="create entries from a BibTeX file, skipping duplicates")
    p.add_argument("file")
    p.add_argument("--dry-run", action="store_true", help="report what would be written")
    p.set_defaults(func=cmd_import_bib)

    p = sub.add_parser("export", help="write the catalog as json, bib or csv")
    p.add_argument("--format", choices=sorted(EXPORTERS), required=True)
    p.add_argument("-o", "--output", help="output file (default: standard output)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("stats", help="counts by stage, modality, contribution and year")
    p.set_defaults(func=cmd_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
