"""Config dataclasses: every card's defaults are the official values; these helpers check them and apply overrides.

A config error (unknown field, wrong type, out of range) is a `ConfigError` whose message names the class, the
field, what was expected and what was given, so the command line can print it as one line before anything heavy
runs.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any


class ConfigError(ValueError):
    """A config value that cannot be used; the message says which field and what it must be."""


def _allowed_types(hint) -> tuple:
    if typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _matches(value, allowed: tuple) -> bool:
    for kind in allowed:
        if kind is type(None):
            if value is None:
                return True
            continue
        origin = typing.get_origin(kind) or kind
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if origin is int and isinstance(value, bool):
            continue
        if isinstance(value, origin):
            return True
    return False


def _interval(spec: str):
    """'>0', '>=1', '<=1e4', '[0,1]', '(0,1]' -> (low, low_open, high, high_open)."""
    spec = spec.replace(" ", "")
    if spec[0] in "[(":
        low, high = spec[1:-1].split(",")
        return float(low), spec[0] == "(", float(high), spec[-1] == ")"
    for op in (">=", "<=", ">", "<"):
        if spec.startswith(op):
            bound = float(spec[len(op):])
            if op.startswith(">"):
                return bound, op == ">", math.inf, False
            return -math.inf, False, bound, op == "<"
    raise ValueError(f"bad range spec {spec!r}")


def _describe(spec: str) -> str:
    low, low_open, high, high_open = _interval(spec)
    if high == math.inf:
        return f"{'>' if low_open else '>='} {low:g}"
    if low == -math.inf:
        return f"{'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_config(config, choices: dict | None = None, **ranges: str) -> None:
    """Type-check every field, reject NaN / infinite floats, and check ranges and choices.

    Called from each config's __post_init__, e.g. `check_config(self, {"variant": ("x", "u")}, iterations=">=1")`.
    Range specs: '>0', '>=1', '<=1e4', '[0,1]', '(0,1]'; a None value (an optional field left out) is not checked.
    """
    name = type(config).__name__
    hints = typing.get_type_hints(type(config))
    for item in dataclasses.fields(config):
        value, hint = getattr(config, item.name), hints[item.name]
        if not _matches(value, _allowed_types(hint)):
            raise ConfigError(f"{name}.{item.name} must be {_type_name(hint)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name}.{item.name} must be a finite number, got {value!r}")
    for field_name, options in (choices or {}).items():
        value = getattr(config, field_name)
        values = value if isinstance(value, tuple) else (value,)
        for one in values:
            if one not in options:
                raise ConfigError(f"{name}.{field_name} must be one of {', '.join(map(repr, options))}, got {one!r}")
    for field_name, spec in ranges.items():
        value = getattr(config, field_name)
        if value is None:
            continue
        low, low_open, high, high_open = _interval(spec)
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if not ok:
            raise ConfigError(f"{name}.{field_name} must be {_describe(spec)}, got {value!r}")


def _type_name(hint) -> str:
    names = []
    for kind in _allowed_types(hint):
        names.append("None" if kind is type(None) else getattr(typing.get_origin(kind) or kind, "__name__", str(kind)))
    return " or ".join(names)


def field_names(config_class) -> list:
    return [item.name for item in dataclasses.fields(config_class)]


def coerce(config_class, values: dict) -> dict:
    """JSON / YAML values for a config class: lists become tuples where the field is a tuple."""
    hints = typing.get_type_hints(config_class)
    out = {}
    for key, value in values.items():
        allowed = _allowed_types(hints.get(key, Any))
        wants_tuple = any((typing.get_origin(kind) or kind) is tuple for kind in allowed)
        out[key] = tuple(value) if wants_tuple and isinstance(value, list) else value
    return out


def build_config(config_class, *layers: dict):
    """The config class's defaults with each layer of overrides applied in order (testbed adaptations, then the
    user's `--set`). Unknown fields and bad values raise ConfigError naming the field."""
    known = set(field_names(config_class))
    merged: dict = {}
    for layer in layers:
        unknown = sorted(set(layer) - known)
        if unknown:
            raise ConfigError(f"unknown option {', '.join(map(repr, unknown))} for {config_class.__name__}; "
                              f"options: {', '.join(sorted(known))}")
        merged.update(coerce(config_class, layer))
    try:
        return config_class(**merged)
    except TypeError as error:  # e.g. a required field missing
        raise ConfigError(f"{config_class.__name__}: {error}") from None


def config_to_dict(config) -> dict:
    """JSON-ready dict of a config (tuples become lists)."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(config).items()}
