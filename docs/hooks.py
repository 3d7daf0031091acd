"""MkDocs hooks: the reference parts of the site generated at build time from the registries and the
config dataclasses, so they cannot drift from the code; and the committed results/ shown as pages.

- one page per registered method (``methods/<name>.md``, listed under Methods in the nav): what it is,
  its presets (what each sets, its training cost and accuracy from the committed tables) and its options;
- a page asks for a generated part with a marker line: ``<!-- bench:methods -->`` (the table of every
  method, linking its page) or ``<!-- bench:protocols -->``;
- results/ becomes part of the site under results/: its README the results page, every table a page,
  every figure, CSV, pack and the report a file those pages link to.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent


def on_config(config):
    """The nav's Methods section: the overview, then a page per registered method."""
    from fewshot_bench.api import METHODS

    pages = [{name: f"methods/{name}.md"} for name in METHODS.names()]
    for i, entry in enumerate(config["nav"]):
        if isinstance(entry, dict) and entry.get("Methods") == "methods.md":
            config["nav"][i] = {"Methods": ["methods.md", *pages]}
    return config


def on_files(files, config):
    """results/ becomes pages and images of the site (its README the results page); each method gets
    a generated page."""
    from fewshot_bench.api import METHODS

    for path in sorted((ROOT / "results").rglob("*")):
        if path.is_file():  # pages (.md), and files the pages link to: figures, CSVs, packs, the report
            files.append(File(str(path.relative_to(ROOT)), str(ROOT), config["site_dir"], config["use_directory_urls"]))
    for name in METHODS.names():
        files.append(File.generated(config, f"methods/{name}.md", content=method_page(name)))
    return files


def on_page_markdown(markdown: str, page, config, files):
    if "<!-- bench:methods -->" in markdown:
        markdown = markdown.replace("<!-- bench:methods -->", methods_reference())
    if "<!-- bench:protocols -->" in markdown:
        markdown = markdown.replace("<!-- bench:protocols -->", protocols_reference())
    return markdown


def _number(x) -> str:
    """A float as a reader wants it (3 significant digits: 0.000674, 0.0518, 2e-05); the preset keeps
    full precision."""
    if isinstance(x, float) and not x.is_integer():
        return f"{x:.3g}"
    return str(int(x)) if isinstance(x, float) and math.isfinite(x) and abs(x) < 1e15 else str(x)


def _value(v) -> str:
    if isinstance(v, tuple) and len(v) > 3 and all(isinstance(x, int) for x in v) \
            and list(v) == list(range(v[0], v[0] + len(v))):
        v = f"{v[0]}-{v[-1]}"  # drawers 1-20, not twenty numbers
    elif isinstance(v, tuple):
        v = ",".join(_number(x) for x in v) or "(none)"
    elif isinstance(v, float):
        v = _number(v)
    text = f"{v}"
    return f"`{text}`" if text else "`\"\"`"


def _options(config_class) -> list[str]:
    """The config's options with their defaults, as a Markdown table."""
    lines = ["| option | default |", "|---|---|"]
    for f in dataclasses.fields(config_class):
        lines.append(f"| `{f.name}` | {_value(_default(f))} |")
    return lines


def methods_reference() -> str:
    """Every registered method (plugins' too): its name linking its page, and what it is."""
    from fewshot_bench.api import METHODS

    lines = ["| method | what it is | presets |", "|---|---|---|"]
    for name in METHODS.names():
        cls = METHODS.get(name)
        lines.append(f"| [`{name}`](methods/{name}.md) | {cls.summary} | "
                     f"{', '.join(f'`{p}`' for p in cls.presets) or '-'} |")
    return "\n".join(lines)


def method_page(name: str) -> str:
    """A method's page: what it is (its summary and its module's docstring), its presets (what each
    sets, what training costs, what it scored in the committed tables), what ``bench tune`` searches and
    its options with their defaults."""
    from fewshot_bench.api import METHODS

    cls = METHODS.get(name)
    out = [f"# `{name}`", "", f"**{cls.summary}**", "", what_it_is(inspect.getdoc(inspect.getmodule(cls)) or ""), ""]
    if cls.presets:
        defaults = {f.name: _default(f) for f in dataclasses.fields(cls.Config)}
        out += ["## Presets", "",
                f"`bench run --method {name} --preset NAME` (default `{cls.default_preset}`). Each sets the options "
                "shown, the others keep their defaults (below); floats are rounded here, the presets keep every digit. "
                "Cost and accuracy come from the committed tables, where a table holds the preset.", "",
                "| preset | what it sets | training | accuracy |", "|---|---|---|---|"]
        for preset, values in cls.presets.items():
            changed = {k: v for k, v in cls.make_config(preset).__dict__.items() if v != defaults.get(k)}
            shown = ", ".join(f"`{k}={_value(v).strip('`')}`" for k, v in changed.items()
                              if k in values) or "the defaults"
            cost, accuracy = committed_figures(name, preset)
            out.append(f"| `{preset}` | {shown} | {cost} | {accuracy} |")
        out.append("")
    space = cls.search_space_for(cls.make_config(cls.default_preset))
    if space:
        out += ["## What `bench tune` searches", "", "From the default preset: " +
                ", ".join(f"`{k}` {p.text()}" for k, p in space.items()) + " ([tuning](../tuning.md)).", ""]
    out += [f"## Options", "", f"`--set KEY=VALUE` (the config `{cls.Config.__name__}`):", "", *_options(cls.Config), ""]
    return "\n".join(out)


def what_it_is(docstring: str) -> str:
    """The opening paragraph of a method module's docstring (what the method is; its presets follow in
    the table), its reST literals as Markdown code."""
    paragraph = docstring.split("\n\n")[0]
    return re.sub(r"``([^`]+)``", r"`\1`", " ".join(paragraph.split()))


def _default(f):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


# where a preset's figure is read, in order: (table, its CSV's accuracy and interval columns, the preset's
# column, the trials, the cost columns)
FIGURES = [("table2", "ours", "ci95", "preset", "Koch's task (omniglot20, our draws)", "train_s", "gflop"),
           ("table3", "ours", "ci95", "preset", "MNIST 10-versus-1", "train_s", "gflop"),
           ("table1", "ours", "ci95", "preset", "verification", "train_s", "gflop"),
           ("table4", "20w1s", "20w1s_ci95", "20w1s_preset", "Vinyals 20-way 1-shot", "20w1s_train_s", "20w1s_gflop")]


def committed_figures(method: str, preset: str) -> tuple[str, str]:
    """(training cost, accuracy) of a preset from the first committed table that holds it, linked."""
    import pandas as pd

    for table, mean, half, preset_column, trials, seconds, gflop in FIGURES:
        path = ROOT / "results" / f"{table}.csv"
        if not path.is_file():
            continue
        frame = pd.read_csv(path)
        if preset_column not in frame or mean not in frame:
            continue
        rows = frame[(frame["method"] == method) & (frame[preset_column] == preset) & frame[mean].notna()]
        if rows.empty:
            continue
        row = rows.iloc[0]
        cost = []
        if seconds in row and pd.notna(row[seconds]) and row[seconds] > 0:
            cost.append(f"{row[seconds] / 60:.0f} min")
        if gflop in row and pd.notna(row[gflop]):
            cost.append(f"{row[gflop] / 1000:,.0f} TFLOP")
        link = f"[{table.replace('table', 'Table ')}](../results/{table}.md)"
        return ", ".join(cost) or "-", f"{row[mean]:.1f} ± {row[half]:.1f} on {trials} ({link})"
    return "-", "-"


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
