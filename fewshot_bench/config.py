"""Method and protocol configs: dataclasses with defaults, named presets and checked overrides."""
from __future__ import annotations

import dataclasses
import typing

from fewshot_bench.errors import UserError


def build_config(cls, presets: dict[str, dict], preset: str | None, overrides: dict[str, str] | None, owner: str):
    """``cls`` filled from ``presets[preset]`` then from ``overrides`` (strings from the CLI are parsed)."""
    values: dict = {}
    if preset:
        if preset not in presets:
            raise UserError(f"{owner} has no preset {preset!r}; valid: {', '.join(presets) or 'none'}")
        values.update(presets[preset])
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, raw in (overrides or {}).items():
        if key not in fields:
            raise UserError(f"{owner} has no option {key!r}; valid: {', '.join(fields)}")
        values[key] = parse_value(raw, hints[key], f"{owner} option {key}") if isinstance(raw, str) else raw
    config = cls(**values)
    if hasattr(config, "check"):
        config.check()
    return config


def parse_value(raw: str, hint, what: str):
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if raw.lower() in ("none", "null", ""):
            return None
        return parse_value(raw, args[0], what)
    try:
        if hint is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        if origin is tuple:
            return tuple(parse_value(p, args[0], what) for p in raw.split(","))
        return raw
    except ValueError:
        name = getattr(hint, "__name__", str(hint))
        raise UserError(f"{what}: {raw!r} is not a valid {name}") from None


def require(condition: bool, message: str) -> None:
    """Config checks: a failed one is a user error naming the bad value."""
    if not condition:
        raise UserError(message)


def require_minimums(config, **lowest) -> None:
    """Config checks of the form ``name >= lowest``, each a user error naming the bad value."""
    for name, low in lowest.items():
        value = getattr(config, name)
        require(value >= low, f"{name} must be >= {low}, got {value}")


def read_toml(path, option: str) -> dict:
    """A TOML file a command line names (``option``), or a one-line user error saying what is wrong."""
    import tomllib
    from pathlib import Path

    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{option} {path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{option} {path} is not valid TOML ({exc})") from None


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """``["lr=0.1", "epochs=3"]`` -> ``{"lr": "0.1", "epochs": "3"}``."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set takes key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out
