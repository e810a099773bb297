"""Command line of the catalog tools: ``python -m site_tools {validate,new,import-bib,export,stats}``.

Every command follows one rule: its inputs (arguments, files, fields) are checked before any work; a problem is
reported as one line naming the argument, file or field and the fix; usage errors exit with 2; nothing is written
when a command fails (an import is all or nothing); no traceback. Files are written only through
:func:`site_tools.safe_io.write_inside`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

from .catalog import PAPERS_DIR, CatalogError, Entry, load_catalog, load_entries
from .entries import find_duplicate, make_id, render_yaml, write_entry
from .export import EXPORTERS, format_stats
from .safe_io import UnsafeWriteError, id_problem, write_all_inside, write_inside
from .validate import value_problems, validate_paths

USAGE_ERROR = 2

ARXIV_ID = re.compile(r"^(?:arxiv:)?(\d{4}\.\d{4,5})(?:v\d+)?$", re.I)


def _catalog_folder_problem(args: argparse.Namespace) -> str | None:
    """Why --papers-dir cannot be read as a catalog (None when it is an existing folder)."""
    folder = args.papers_dir
    if not folder.exists():
        return f"--papers-dir {folder}: no such folder; give the folder of the paper YAML files"
    if not folder.is_dir():
        return f"--papers-dir {folder} is a file, not a folder; give the folder of the paper YAML files"
    return None


def cmd_validate(args: argparse.Namespace) -> int:
    if not args.paths and (problem := _catalog_folder_problem(args)):
        print(f"validate: {problem}", file=sys.stderr)
        return USAGE_ERROR
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


def _papers_dir_problem(args: argparse.Namespace) -> str | None:
    """Why --papers-dir cannot hold entries (None when it can: an existing folder, or one to create)."""
    folder = args.papers_dir
    if folder.exists() and not folder.is_dir():
        return f"--papers-dir {folder} is a file, not a folder; give the folder of the paper YAML files"
    return None


# Which option of `new` gives each field, for messages about a value.
NEW_OPTIONS = {"title": "--title", "year": "--year", "authors": "--authors", "venue": "--venue",
               "links.arxiv": "--arxiv", "links.code": "--code", "month": "--arxiv"}  # the id: id_problem


def cmd_new(args: argparse.Namespace) -> int:
    def usage(message: str) -> int:
        print(f"new: {message}", file=sys.stderr)
        return USAGE_ERROR

    if problem := _papers_dir_problem(args):
        return usage(problem)
    if args.id is not None and (problem := id_problem(args.id)):
        return usage(f"--id {problem}")  # checked before the id is used for anything, a path least of all
    interactive = sys.stdin.isatty() and not args.no_input
    if interactive:
        args.title = args.title or _ask("Title: ")
        args.year = args.year or (int(y) if (y := _ask("Year of first appearance: ")).isdigit() else None)
        args.arxiv = args.arxiv or _ask("arXiv id (empty if none): ") or None
        args.authors = args.authors or _ask("Authors, separated by ';' (empty if unverified): ") or None
    missing = [flag for flag, value in (("--title", args.title), ("--year", args.year)) if not value]
    if missing:
        return usage(f"missing {' and '.join(missing)} (e.g. --title 'Erasing Concepts from Diffusion Models' --year 2023)")
    paper: dict = {"title": args.title.strip(), "year": args.year}
    authors = [a.strip() for a in (args.authors or "").split(";") if a.strip()]
    if authors:
        paper["authors"] = authors
    links = {}
    if args.arxiv:
        match = ARXIV_ID.match(args.arxiv.strip())
        if not match:
            return usage(f"--arxiv '{args.arxiv}' is not an arXiv id like 2303.07345")
        links["arxiv"] = match.group(1)
        paper["month"] = int(links["arxiv"][2:4])
    if args.code:
        links["code"] = args.code
    paper["venue"] = args.venue
    paper["links"] = links
    if not (authors or args.id):
        return usage("give --authors (the first author makes the id) or an explicit --id")
    paper["id"] = args.id or make_id(authors[0], args.year, args.title)
    paper["sources"] = ["contributed"]
    for dotted, message, hint in value_problems({k: v for k, v in paper.items() if v != {} and k != "id"}):
        option = NEW_OPTIONS.get(dotted) or NEW_OPTIONS.get(dotted.rsplit(".", 1)[0], dotted)
        return usage(f"{option}: {message} ({hint})" if hint else f"{option}: {message}")
    if not args.id and (problem := id_problem(paper["id"])):
        return usage(f"the id made from the first author, year and title {problem}; give one with --id")
    existing, _ = load_entries([args.papers_dir]) if args.papers_dir.exists() else ([], [])
    duplicate = find_duplicate(paper, existing)
    if duplicate is not None:
        print(f"new: refused: this paper is already in the catalog as {duplicate.path} "
              f"(same id, arXiv id or title)", file=sys.stderr)
        return 1
    todo = ["contribution", "stage", "modality", "model_family", "target", "summary"]
    try:
        path = write_entry(paper, args.papers_dir, todo)
    except UnsafeWriteError as exc:
        print(f"new: {exc}", file=sys.stderr)
        return 1
    print(f"created {path}\nnext: fill in {', '.join(todo)}, then run `python -m site_tools validate {path}`")
    return 0


def cmd_import_bib(args: argparse.Namespace) -> int:
    """All or nothing: every problem of the file is reported before anything is written, and nothing is written
    while there is one. Papers already in the catalog are reported and skipped, not problems."""
    from .bibtex import BibImportError, bib_entry_to_paper, read_bib

    if problem := _papers_dir_problem(args):
        print(f"import-bib: {problem}", file=sys.stderr)
        return USAGE_ERROR
    path = Path(args.file)
    try:
        bib_entries, problems = read_bib(path)
    except BibImportError as exc:
        print(f"import-bib: {exc}", file=sys.stderr)
        return USAGE_ERROR
    converted = []
    for bib_entry in bib_entries:
        paper, missing, found = bib_entry_to_paper(bib_entry, path)
        problems += found
        converted.append((bib_entry, paper, missing))
    if problems:
        for problem in sorted(problems, key=lambda p: p.line):
            print(problem, file=sys.stderr)
        print(f"import-bib: nothing written: {len(problems)} problem(s) in {path}; fix them and import again",
              file=sys.stderr)
        return USAGE_ERROR

    existing, _ = load_entries([args.papers_dir]) if args.papers_dir.exists() else ([], [])
    to_write: dict[str, str] = {}
    notes: list[str] = []
    duplicates = incomplete = 0
    for bib_entry, paper, missing in converted:
        paper.setdefault("sources", ["contributed"])
        duplicate = find_duplicate(paper, existing)
        if duplicate is not None:
            duplicates += 1
            print(f"duplicate: {bib_entry.key} is already in the catalog as {duplicate.path}; not written")
            continue
        name = f"{paper['id']}.yaml"
        to_write[name] = render_yaml(paper, missing)
        notes.append(name + (f" (to fill in: {', '.join(missing)})" if missing else ""))
        incomplete += bool(missing)
        existing.append(Entry(args.papers_dir / name, paper))
    if args.dry_run:
        for note in notes:
            print(f"would write {args.papers_dir / note}")
        print(f"\ndry run: {len(to_write)} would be written, {duplicates} duplicate(s) would be skipped, "
              f"{incomplete} would need fields filled in; nothing was written")
        return 0
    try:
        write_all_inside(args.papers_dir, to_write)
    except UnsafeWriteError as exc:
        print(f"import-bib: {exc}; nothing written", file=sys.stderr)
        return 1
    for note in notes:
        print(f"wrote {args.papers_dir / note}")
    print(f"\n{len(to_write)} written, {duplicates} duplicate(s) skipped, {incomplete} need fields filled in")
    return 0


def _valid_catalog(args: argparse.Namespace) -> list | int:
    """The catalog, or the exit code after reporting why it cannot be used: 2 when --papers-dir is not a folder, 1
    when the catalog is invalid (export and stats refuse an invalid catalog)."""
    if problem := _catalog_folder_problem(args):
        print(f"{args.command}: {problem}", file=sys.stderr)
        return USAGE_ERROR
    try:
        return load_catalog(args.papers_dir)
    except CatalogError as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 1


def cmd_export(args: argparse.Namespace) -> int:
    if args.output is not None and (not args.output.strip() or Path(args.output).is_dir()):
        print(f"export: -o '{args.output}' is a folder or empty; give a file name such as catalog.{args.format}",
              file=sys.stderr)
        return USAGE_ERROR
    papers = _valid_catalog(args)
    if isinstance(papers, int):
        return papers
    text = EXPORTERS[args.format](papers)
    if args.output:
        output = Path(args.output)
        try:
            write_inside(output.parent, output.name, text, overwrite=True)
        except UnsafeWriteError as exc:
            print(f"export: -o {args.output}: {exc}", file=sys.stderr)
            return USAGE_ERROR
        print(f"wrote {len(papers)} papers to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    papers = _valid_catalog(args)
    if isinstance(papers, int):
        return papers
    print(format_stats(papers))
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line that names the argument and points to --help, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m site_tools", description="Tools for the Multimodal Unlearning Atlas catalog.")
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
    p.add_argument("--dry-run", action="store_true", help="report what would be written; write nothing")
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
    except Exception as exc:  # a bug: still one line, never a traceback (SITE_TOOLS_DEBUG=1 shows it)
        if os.environ.get("SITE_TOOLS_DEBUG"):
            raise
        print(f"{args.command}: internal error: {type(exc).__name__}: {exc} (please report it with the command you "
              "ran; SITE_TOOLS_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
