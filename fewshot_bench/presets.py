"""Presets written by ``bench tune``: a TOML file per tuned preset, kept in the store
(``<store>/presets/<method>/<name>.toml``) or anywhere a user puts one, with the study and trial it
came from, so a tuned run can be cited.

``bench run --preset NAME`` finds a method's own presets first, then the store's tuned ones;
``--preset path/to/file.toml`` reads that file.
"""
from __future__ import annotations

import tomllib
from pathlib import Path

from fewshot_bench.errors import UserError
from fewshot_bench.records import store_dir, write_atomic


def preset_path(method: str, name: str, store: Path | None = None) -> Path:
    return store_dir(store) / "presets" / method / f"{name}.toml"


def find_preset(method: str, name: str) -> dict | None:
    """The values of tuned preset ``name`` of ``method`` (a path to a TOML file, or a name in the
    store's presets), or None where there is none."""
    data = read_preset(method, name)
    if data is None:
        return None
    values = dict(data.get("values", {}))
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def preset_about(method: str, name: str) -> dict | None:
    """Where tuned preset ``name`` came from (study, trial, score, command), or None."""
    data = read_preset(method, name)
    return None if data is None else dict(data.get("about", {}))


def read_preset(method: str, name: str) -> dict | None:
    path = Path(name).expanduser() if name.endswith(".toml") else preset_path(method, name)
    if not path.is_file():
        if name.endswith(".toml"):
            raise UserError(f"--preset {name}: no such file; give a preset TOML that bench tune wrote")
        return None
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"preset file {path} is not valid TOML ({exc})") from None
    if data.get("method", method) != method:
        raise UserError(f"preset file {path} is for method {data['method']!r}, not {method!r}")
    return data


def write_preset(path: Path, method: str, values: dict, about: dict) -> None:
    """A tuned preset: ``values`` (the full config, so it stands alone) and ``about`` (its
    provenance: study, trial, score, command)."""
    lines = [f"# a preset chosen by bench tune on validation data; run it with "
             f"bench run --method {method} --preset {path.stem}", f"method = {toml_value(method)}", "", "[about]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in about.items() if v is not None]
    lines += ["", "[values]"] + [f"{k} = {toml_value(v)}" for k, v in values.items() if v is not None]
    write_atomic(path, "\n".join(lines) + "\n")


def toml_value(value) -> str:
    """A flat value in TOML: strings, booleans, numbers and lists of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
