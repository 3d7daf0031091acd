"""MkDocs hooks: the reference parts of the site generated at build time from the registries and the
config dataclasses, so they cannot drift from the code; and the committed results/ shown as pages.

A page asks for a generated part with a marker line: ``<!-- bench:methods -->`` (every registered
method, its presets and its options with their defaults) or ``<!-- bench:protocols -->``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent


def on_files(files, config):
    """results/*.md and *.png become pages and images of the site, under results/."""
    for path in sorted((ROOT / "results").glob("*")) + sorted((ROOT / "results" / "tune").glob("*")):
        if path.suffix in (".md", ".png") and path.is_file():
            files.append(File(str(path.relative_to(ROOT)), str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files):
    if "<!-- bench:methods -->" in markdown:
        markdown = markdown.replace("<!-- bench:methods -->", methods_reference())
    if "<!-- bench:protocols -->" in markdown:
        markdown = markdown.replace("<!-- bench:protocols -->", protocols_reference())
    return markdown


def _value(v) -> str:
    if isinstance(v, tuple) and len(v) > 3 and all(isinstance(x, int) for x in v) \
            and list(v) == list(range(v[0], v[0] + len(v))):
        v = f"{v[0]}-{v[-1]}"  # drawers 1-20, not twenty numbers
    elif isinstance(v, tuple):
        v = ",".join(str(x) for x in v) or "(none)"
    text = f"{v}"
    return f"`{text}`" if text else "`\"\"`"


def _options(config_class) -> list[str]:
    """The config's options with their defaults, as a Markdown table."""
    lines = ["| option | default |", "|---|---|"]
    for f in dataclasses.fields(config_class):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(f"| `{f.name}` | {_value(default)} |")
    return lines


def methods_reference() -> str:
    from fewshot_bench.api import METHODS

    out = []
    for name in METHODS.names():
        cls = METHODS.get(name)
        out += [f"### `{name}`", "", cls.summary or "", ""]
        if cls.presets:
            default = f" (default `{cls.default_preset}`)" if cls.default_preset else ""
            out += [f"**Presets**{default}: each sets these options (the rest keep their defaults).", "",
                    "| preset | options |", "|---|---|"]
            for preset, values in cls.presets.items():
                shown = ", ".join(f"`{k}={_value(v).strip('`')}`" for k, v in values.items()) or "the defaults"
                out.append(f"| `{preset}` | {shown} |")
            out.append("")
        space = cls.search_space_for(cls.make_config(cls.default_preset))
        if space:
            out += ["**bench tune searches** (from the default preset): " +
                    ", ".join(f"`{k}` {p.text()}" for k, p in space.items()), ""]
        out += [f'??? info "Options (`--set KEY=VALUE`; `{cls.Config.__name__}`)"', "",
                *("    " + line for line in _options(cls.Config)), ""]
    return "\n".join(out)


def protocols_reference() -> str:
    from fewshot_bench.api import PROTOCOLS

    out = []
    for name in PROTOCOLS.names():
        cls = PROTOCOLS.get(name)
        out += [f"### `{name}`", "", f"{cls.summary} (version {cls.version}; 95% CI over {cls.ci_unit})", ""]
        if dataclasses.fields(cls.Config):
            out += [f"**Options** (`--protocol-set KEY=VALUE`; `{cls.Config.__name__}`):", "",
                    *_options(cls.Config), ""]
        else:
            out += ["No options.", ""]
    return "\n".join(out)
