"""Command line: `python -m methods list` and `python -m methods run <method> ...`.

Examples:
    python -m methods list
    python -m methods run uce --testbed minicanvas --forget three --seed 0 --out results/minicanvas/uce
    python -m methods run esd --forget inverted --scale full --set variant=u
    python -m methods run esd --model CompVis/stable-diffusion-v1-4 --forget "Van Gogh" --device cuda

    python -m methods run npo --testbed miniprofiles --seed 0
    python -m methods run mmunlearner --model llava-hf/llava-1.5-7b-hf --device cuda

Bad input (unknown method / concept / scale / option, bad seed) prints one `error: ...` line and exits with 2.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

EXIT_USAGE = 2


class UsageError(Exception):
    """Raised for bad command-line input; reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the usage block; one line is enough
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
    """KEY=VALUE with VALUE parsed as a Python literal when possible (`--set learning_rate=1e-4`)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m methods",
                     description="Executable method cards: concept erasure (MiniCanvas) and MLLM unlearning (MiniProfiles).")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)
    commands.add_parser("list", help="list the registered methods")
    run = commands.add_parser("run", help="run a method and write metrics.json + samples.png")
    run.add_argument("method", help="registered method name (see `list`)")
    run.add_argument("--testbed", default=None, help="minicanvas or miniprofiles (default: the method's testbed)")
    run.add_argument("--forget", default=None,
                     help="concept to erase (a digit or style on MiniCanvas; default three). MiniProfiles draws "
                          "its own random forget splits of 10%% of the people")
    run.add_argument("--anchor", default=None, help="anchor concept for UCE / CA (default: testbed's choice)")
    run.add_argument("--seed", type=_seed, default=0)
    run.add_argument("--out", default=None, help="output directory (default: results/<testbed>/<method>)")
    run.add_argument("--scale", default="ci", help="ci or full")
    run.add_argument("--model", default=None,
                     help="Stable Diffusion 1.x (erasure methods; samples only) or LLaVA (MLLM methods) path or hub id")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda")
    run.add_argument("--set", dest="overrides", type=_override, action="append", default=[],
                     help="override a config field, e.g. --set variant=u (repeatable)")
    return parser


def _validate(args) -> None:
    """Check every input before loading anything heavy, so mistakes fail fast with one line."""
    import dataclasses

    from .registry import ALL_METHODS, MLLM_REGISTRY, REGISTRY, TESTBED_OF, default_config

    if args.method not in ALL_METHODS:
        raise UsageError(f"unknown method {args.method!r}; choose one of: {', '.join(ALL_METHODS)}")
    testbed = args.testbed or TESTBED_OF[args.method]
    if testbed not in ("minicanvas", "miniprofiles"):
        raise UsageError(f"unknown testbed {testbed!r}; choose one of: minicanvas, miniprofiles")
    if testbed != TESTBED_OF[args.method]:
        raise UsageError(f"{args.method} runs on the {TESTBED_OF[args.method]} testbed, not {testbed!r}")
    args.testbed = testbed
    if args.device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"unknown device {args.device!r}; choose one of: auto, cpu, cuda")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda was requested but no CUDA device is available")
    if args.method in MLLM_REGISTRY:
        _validate_mllm(args, MLLM_REGISTRY[args.method])
        return
    args.forget = args.forget if args.forget is not None else "three"
    fields = {f.name for f in dataclasses.fields(REGISTRY[args.method].config_class)}
    for key, _ in args.overrides:
        if key not in fields:
            raise UsageError(f"unknown option {key!r} for {args.method}; options: {', '.join(sorted(fields))}")
    try:  # the config's own checks (types, allowed values)
        testbed = None if args.model is not None else "minicanvas"
        dataclasses.replace(default_config(args.method, testbed, args.scale), **dict(args.overrides))
    except (ValueError, TypeError) as error:
        raise UsageError(f"bad option for {args.method}: {error}") from None
    if args.model is not None:
        if not args.forget.strip():
            raise UsageError("--forget must name a concept")
        looks_like_hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", args.model) is not None
        if not Path(args.model).is_dir() and (not looks_like_hub_id or Path(args.model).is_absolute()):
            raise UsageError(f"--model {args.model!r} is neither a local directory nor a hub id (owner/name)")
        return
    if args.testbed != "minicanvas":
        raise UsageError(f"unknown testbed {args.testbed!r}; choose one of: minicanvas")
    from .testbeds import minicanvas

    if args.scale not in minicanvas.SCALES:
        raise UsageError(f"unknown scale {args.scale!r}; choose one of: {', '.join(minicanvas.SCALES)}")
    try:
        minicanvas.concept_axis(args.forget)
        if args.anchor is not None:
            if minicanvas.concept_axis(args.anchor) != minicanvas.concept_axis(args.forget) or args.anchor == args.forget:
                raise ValueError(f"anchor {args.anchor!r} must be another concept of the same axis as {args.forget!r}")
    except ValueError as error:
        raise UsageError(str(error)) from None


def _validate_mllm(args, spec) -> None:
    import dataclasses

    from .testbeds import miniprofiles

    if args.forget is not None or args.anchor is not None:
        raise UsageError("--forget/--anchor do not apply to MiniProfiles: it unlearns random splits of 10% of the people")
    if args.scale not in miniprofiles.SCALES:
        raise UsageError(f"unknown scale {args.scale!r}; choose one of: {', '.join(miniprofiles.SCALES)}")
    fields = {f.name for f in dataclasses.fields(spec.config_class)}
    for key, _ in args.overrides:
        if key not in fields:
            raise UsageError(f"unknown option {key!r} for {args.method}; options: {', '.join(sorted(fields))}")
    try:
        dataclasses.replace(spec.config_class(), **dict(args.overrides))
    except (ValueError, TypeError) as error:
        raise UsageError(f"bad option for {args.method}: {error}") from None


def _run_mllm(args) -> int:
    from .mllm import run_miniprofiles

    out = args.out or f"results/miniprofiles/{args.method}"
    try:
        run_miniprofiles(args.method, seed=args.seed, scale=args.scale, out_dir=out, model=args.model,
                         device=args.device, config_overrides=dict(args.overrides))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {out}/metrics.json and {out}/tradeoff.png")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("missing command; use `list` or `run`")
        if args.command == "list":
            from .registry import ALL_METHODS, TESTBED_OF

            for spec in ALL_METHODS.values():
                print(f"{spec.name:12s} {TESTBED_OF[spec.name]:13s} {spec.catalog_id:22s} {spec.title}")
            return 0
        _validate(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE

    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    from .runner import ModelLoadError, run_minicanvas, run_stable_diffusion, write_outputs

    if args.testbed == "miniprofiles":
        return _run_mllm(args)
    overrides = dict(args.overrides)
    if args.model is not None:
        try:
            result = run_stable_diffusion(
                args.method, args.model, args.forget, seed=args.seed, device=args.device, anchor=args.anchor,
                config_overrides=overrides,
            )
        except ModelLoadError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
        out = args.out or f"results/stable-diffusion/{args.method}"
    else:
        result = run_minicanvas(
            args.method, args.forget, seed=args.seed, scale=args.scale, device=args.device, anchor=args.anchor,
            config_overrides=overrides,
        )
        out = args.out or f"results/minicanvas/{args.method}"
    path = write_outputs(result, out)
    print(f"wrote {path / 'metrics.json'} and {path / 'samples.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
