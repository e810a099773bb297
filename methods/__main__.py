"""Command line, the same for every card and testbed:

    python -m methods list [--testbed T]
    python -m methods run CARD [--testbed T] [--seed N] [--scale ci|full] [--forget C] [--anchor A]
                               [--model PATH_OR_HUB_ID] [--device auto|cpu|cuda] [--set FIELD=VALUE ...] [--out DIR]
    python -m methods matrix --testbed T [--attack A ...] [--target CARD ...] [--seed N] [--scale ci|full]

Examples:
    python -m methods run uce --testbed minicanvas --forget three --seed 0
    python -m methods run esd --forget inverted --set variant=u
    python -m methods run esd --model CompVis/stable-diffusion-v1-4 --forget "Van Gogh" --device cuda
    python -m methods run npo --testbed miniprofiles --seed 0
    python -m methods matrix --testbed minicanvas
    python -m methods matrix --testbed minicanvas --attack concept_inversion --target esd --target uce

Every input is checked before anything is loaded or trained; bad input prints one `error: ...` line naming the
argument and the fix, and exits with 2.
"""

from __future__ import annotations

import argparse
import ast
import sys

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the usage block; one line is enough
        from .testbeds import UsageError

        raise UsageError(message)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"seed must be in [0, 2**32), got {value}")
    return value


def _override(text: str):
    """FIELD=VALUE with VALUE parsed as a Python literal when possible (`--set learning_rate=1e-4`)."""
    if "=" not in text or not text.split("=", 1)[0].strip():
        raise argparse.ArgumentTypeError(f"--set expects FIELD=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = raw
    return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m methods", description="Executable cards: unlearning methods and attacks run on "
                                                            "small testbeds (or real checkpoints).")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    listing = commands.add_parser("list", help="list the registered cards")
    listing.add_argument("--testbed", default=None, help="only the cards of this testbed")
    run = commands.add_parser("run", help="run a card and write metrics.json and its figure")
    run.add_argument("card", help="registered card name (see `list`)")
    run.add_argument("--testbed", default=None, help="the testbed (default: the card's first)")
    run.add_argument("--forget", default=None, help="concept to erase, for testbeds that erase a concept (MiniCanvas: "
                                                    "a digit or a style, default three; free text with --model)")
    run.add_argument("--anchor", default=None, help="anchor concept where a card maps the concept to another")
    run.add_argument("--seed", type=_seed, default=0)
    run.add_argument("--scale", default="ci", help="the testbed's size: ci or full")
    run.add_argument("--model", default=None, help="a real checkpoint (path or hub id) instead of the testbed's model")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda")
    run.add_argument("--set", dest="overrides", type=_override, action="append", default=[],
                     help="override a config field, e.g. --set variant=u (repeatable)")
    run.add_argument("--out", default=None, help="output folder (default: results/<testbed>/<card>)")
    matrix = commands.add_parser("matrix", help="every attack card against every unlearn card of a testbed")
    matrix.add_argument("--testbed", required=True)
    matrix.add_argument("--seed", type=_seed, default=0)
    matrix.add_argument("--scale", default="ci")
    matrix.add_argument("--device", default="auto")
    matrix.add_argument("--attack", action="append", default=None, help="only this attack card (repeatable)")
    matrix.add_argument("--target", action="append", default=None,
                        help="only this unlearn card as a target (repeatable; the unedited base model always runs)")
    matrix.add_argument("--out", default=None, help="output folder (default: results/<testbed>/matrix)")
    return parser


def _list(testbed) -> int:
    from .registry import load_registry

    registry = load_registry()
    if testbed is not None:
        registry.testbed(testbed)
    for card in registry.cards.values():
        if testbed is None or testbed in card.testbeds:
            print(f"{card.name:12s} {card.kind:8s} {','.join(card.testbeds):13s} {','.join(card.catalog):22s} "
                  f"{card.title}")
    return 0


def main(argv=None) -> int:
    from .core.config import ConfigError
    from .registry import RegistryError
    from .testbeds import UsageError

    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError("missing command; use `list`, `run` or `matrix`")
        if args.command == "list":
            return _list(args.testbed)
        from .run import plan_run

        if args.command == "run":
            keys = [key for key, _ in args.overrides]
            duplicated = sorted({key for key in keys if keys.count(key) > 1})
            if duplicated:
                raise UsageError(f"--set {duplicated[0]} is given twice; give each field once")
            plan = plan_run(args.card, args.testbed, seed=args.seed, scale=args.scale, device=args.device,
                            model=args.model, forget=args.forget, anchor=args.anchor,
                            overrides=dict(args.overrides), out=args.out)
            if plan.card.kind != "unlearn":
                raise UsageError(f"{args.card} is an attack card: run it with `python -m methods matrix`")
        else:
            from .matrix import plan_matrix

            plan = plan_matrix(args.testbed, seed=args.seed, scale=args.scale, device=args.device, out=args.out,
                               attacks=args.attack, targets=args.target)
    except (UsageError, RegistryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE

    from .core.cache import CacheError

    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    try:
        if args.command == "run":
            from .run import default_out, execute

            execute(plan, plan.out or default_out(plan.card.name, plan.testbed_spec.name), print, {})
        else:
            from .matrix import run_matrix

            run_matrix(plan, print)
    except (UsageError, CacheError, ConfigError) as error:  # found while loading: a --model that cannot be loaded,
        print(f"error: {error}", file=sys.stderr)  # the cache, or a config value the model rules out (RMU's layer)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
