"""``bench table``: every run of the store as methods x protocols, ``acc ± ci95`` cells, runs of
one preset with other configs labelled by what differs, and the paper's figures beside them."""
from __future__ import annotations

import dataclasses
import functools
import json

import pandas as pd

from fewshot_bench.api import METHODS, PROTOCOLS
from fewshot_bench.errors import UserError
from fewshot_bench.keys import fingerprint
from fewshot_bench.records import compute_text, training_budget
from fewshot_bench.tables.base import TABLES, cell, withhold


@functools.lru_cache(maxsize=None)  # one method instance per (method, preset), not one per record
def _current_config(method: str, preset: str | None) -> str | None:
    try:
        cls = METHODS.get(method)
        return json.dumps(cls(cls.make_config(preset), preset=preset).config_dict(), default=list)
    except UserError:  # a method or preset this version no longer has
        return None


def current_config(method: str, preset: str | None) -> dict | None:
    """The method's preset as the code defines it now (None if unknown), so that runs of the
    current preset keep the plain preset label beside runs of other configs."""
    text = _current_config(method, preset)
    return None if text is None else json.loads(text)


def latest_per_seed(records: list[dict]) -> dict[tuple, list[dict]]:
    """Group records by (method, preset label, protocol label); within a group keep the newest run
    per seed. Runs of one preset with a config other than the preset's current one (``--set``
    overrides, an older version of the preset) get separate rows, labelled by the options that
    differ (``metric=cosine``); when more than three do, by the three that tell trainings apart
    best (``TELLING``), the count of the rest and a short hash of the config."""
    groups: dict[tuple, dict[int, dict]] = {}
    for r in records:  # oldest first, so newer runs overwrite
        groups.setdefault((r["method"], preset_label(r), protocol_label(r)), {})[r["seed"]] = r
    return {k: list(v.values()) for k, v in groups.items()}


# the options a reader tells trainings apart by (a budget point, a tuned rate), named first when many differ
TELLING = ("budget_gflop", "keep", "adam_lr", "lr", "epochs", "way", "shot", "network")


def preset_label(record: dict) -> str:
    preset = record.get("preset") or "-"
    config = as_stored(record.get("method_config") or {})
    current = current_config(record["method"], record.get("preset"))
    if current is None:
        return f"{preset} cfg {fingerprint(config)[:6]}"
    # an option the current config leaves out (at its default) but the record has: compare with the default
    changed = {k: v for k, v in config.items()
               if (current[k] if k in current else _default(record["method"], k)) != v}
    # an option the record lacks was left out at its neutral value (stored before the option existed)
    missing = {k: _default(record["method"], k) for k in current if k not in config}
    changed.update({k: v for k, v in missing.items() if current[k] != v})
    if not changed:
        return preset
    if len(changed) <= 3:
        options = _options(changed)
    else:  # name the options runs are told apart by; the hash keeps configs that differ elsewhere apart
        named = sorted(changed, key=lambda k: TELLING.index(k) if k in TELLING else len(TELLING))[:3]
        options = (f"{_options({k: changed[k] for k in named})} +{len(changed) - 3} more, "
                   f"cfg {fingerprint(config)[:6]}")
    return options if preset == "-" else f"{preset} {options}"


def _default(method: str, option: str):
    """The default of a method's config option (what a record that lacks it ran with)."""
    fields = {f.name: f.default for f in dataclasses.fields(METHODS.get(method).Config)}
    return as_stored(fields.get(option, "default"))


def as_stored(value):
    """A config value as a record reads back from JSON: tuples become lists."""
    return json.loads(json.dumps(value, default=list))


def option_text(value) -> str:
    """A config value as ``--set``/``--protocol-set`` takes it: a list comma-separated."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _options(values: dict) -> str:
    return ", ".join(f"{k}={option_text(v)}" for k, v in values.items())


def changed_protocol_options(record: dict) -> dict:
    """The record's protocol options that differ from the protocol's defaults."""
    default = default_protocol_config(record["protocol"])
    return {k: v for k, v in (record.get("protocol_config") or {}).items() if default.get(k, v) != v}


def protocol_label(record: dict) -> str:
    """The protocol's name, followed by its options that differ from the defaults: runs on other
    drawers or trials are other columns, never mixed with the standard protocol's; runs trained on a
    GPU are a column of their own too (``... on GPU``), beside the CPU's."""
    changed = changed_protocol_options(record)
    label = f"{record['protocol']} ({_options(changed)})" if changed else record["protocol"]
    return f"{label} on GPU" if (record.get("environment") or {}).get("gpu") else label


@functools.lru_cache(maxsize=None)
def _default_protocol_config(protocol: str) -> str:
    try:
        cls = PROTOCOLS.get(protocol)
        return json.dumps(cls(cls.make_config({})).config_dict(), default=list)
    except UserError:  # a protocol this version no longer has: every option counts as its default
        return "{}"


def default_protocol_config(protocol: str) -> dict:
    return json.loads(_default_protocol_config(protocol))


def long_table(records: list[dict]) -> pd.DataFrame:
    rows = [{"method": m, "preset": p, "protocol": proto, **cell(rs),
             "trained": training_text(rs[0]) if proto.endswith(" on GPU") else None}
            for (m, p, proto), rs in sorted(latest_per_seed(records).items())]
    rows = [withhold(r, ["accuracy", "ci95"]) if r["learning"] else r for r in rows]
    return pd.DataFrame(rows, columns=["method", "preset", "protocol", "accuracy", "ci95", "seeds", "trials", "draws",
                                       "learning", "accuracy_not_learned", "trained"])


def training_text(record: dict) -> str | None:
    """A learned run's training in a few words: "3 epochs, 43,200 TFLOP" (the weights it kept)."""
    budget = training_budget(record)
    if budget is None:
        return None
    epochs = (record.get("training") or {}).get("epochs")
    return f"{epochs} epoch{'s' * (epochs != 1)}, {compute_text(budget['gflop'])}"


def wide_table(records: list[dict], paper: bool = True) -> pd.DataFrame:
    """Methods (with preset) as rows, protocols as columns, cells ``acc ± ci95`` in percent.

    With ``paper``, the protocols that reproduce a table of Koch 2015 stand side by side (Table 2:
    our draws ``omniglot20`` beside Lake's runs ``lake_runs``), followed by a column of the
    paper's figure; the paper's systems we do not run appear as rows marked "(published)".
    Other protocols follow in name order.
    """
    long = long_table(records)
    if long.empty:
        return pd.DataFrame()
    long["row"] = long["method"] + long["preset"].map(lambda p: "" if p == "-" else f" ({p})")
    # a cell whose training did not learn shows the flag, never its accuracy as the method's figure; a GPU
    # column's cells say what training they got (its epochs and compute)
    long["cell"] = [flag if isinstance(flag, str) else f"{a:.1f} ± {c:.1f}" + (f" ({spent})" if isinstance(spent, str)
                                                                                 else "")
                    for a, c, flag, spent in zip(long["accuracy"], long["ci95"], long["learning"], long["trained"])]
    wide = long.pivot(index="row", columns="protocol", values="cell").fillna("").rename_axis(None, axis=1)
    if not paper:
        return wide[sorted(wide.columns)]
    methods = dict(zip(long["row"], long["method"]))
    order = []
    for _, table in TABLES.items():
        if table.store_figures is None:
            continue
        column, protocols, figures, paper_row = table.store_figures
        present = [p for p in protocols if p in wide.columns]
        if not present:
            continue
        ours = {paper_row.get(m) for m in long["method"]}
        wide[column] = [f"{figures[paper_row[methods[r]]]:.1f}" if paper_row.get(methods.get(r)) in figures else ""
                        for r in wide.index]
        for system, figure in figures.items():
            if system not in ours:
                row = f"{system} (published)"
                if row not in wide.index:
                    wide.loc[row] = ""
                wide.loc[row, column] = f"{figure:.1f}"
        order += present + [column]
    return wide[order + sorted(c for c in wide.columns if c not in order)]


def to_markdown(frame: pd.DataFrame, index_name: str = "method") -> str:
    """A GitHub Markdown table (no extra dependency such as tabulate)."""
    header = [index_name] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for idx, row in frame.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [str(v) for v in row]) + " |")
    return "\n".join(lines) + "\n"
