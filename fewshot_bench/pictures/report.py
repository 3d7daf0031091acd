"""``bench report``: one static, self-contained HTML page of a store (index.html and its PNGs in
one folder; no server, no script, no network): the paper's tables with their plots, the
heatmap of accuracy by test alphabet, learning curves, and a gallery of failed trials for each
method on ``omniglot20``."""
from __future__ import annotations

import html
import re
import shutil
import time
from pathlib import Path

import pandas as pd

from fewshot_bench.pictures.failures import distinct_failures, per_alphabet
from fewshot_bench.pictures.figures import failure_gallery, heatmap, learning_curves, source_for
from fewshot_bench.records import write_atomic
from fewshot_bench.tables.store import latest_per_seed, wide_table

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}
img{max-width:100%;display:block;margin:0.5em 0 1.5em}h2{border-bottom:1px solid #ddd;padding-bottom:3px}
.note{color:#555;font-size:13px}"""


def write_report(records: list[dict], out: Path, tables: Path, data_root=None, limit: int = 12) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    body = [f"<h1>fewshot-bench report</h1><p class=note>{len(records)} runs from the store, written "
            f"{time.strftime('%Y-%m-%d %H:%M')} by <code>bench report</code>. Accuracies are mean ± 95% CI.</p>"]
    body += _paper_tables(tables, out)
    body.append("<h2>Every run</h2>" + _html_table(wide_table(records).reset_index(names="method")))
    body += _heatmap(records, out)
    body += _curves(records, out)
    body += _galleries(records, out, data_root, limit)
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>fewshot-bench report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    write_atomic(out / "index.html", page)
    return out / "index.html"


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, na_rep="", border=0, escape=True, float_format=lambda v: f"{v:.2f}")


def _paper_tables(tables: Path, out: Path) -> list[str]:
    parts = []
    for name in ("table1", "table2", "table3"):
        csv, png, md = tables / f"{name}.csv", tables / f"{name}.png", tables / f"{name}.md"
        if not csv.is_file():
            continue
        frame = pd.read_csv(csv)
        keep = [c for c in ("system", "preset", "ours", "ci95", "lake_runs", "lake_runs_ci95", "lake_runs_minus_ours",
                            "paper", "paper_trials", "diff_vs_paper", "seeds", "train_s") if c in frame]
        title = md.read_text().splitlines()[0].lstrip("# ") if md.is_file() else name
        parts.append(f"<h2>{html.escape(title)}</h2>" + _html_table(frame[keep]))
        if png.is_file():
            shutil.copyfile(png, out / png.name)
            parts.append(f'<img src="{png.name}" alt="{name} plot">')
    return parts


def _heatmap(records: list[dict], out: Path) -> list[str]:
    try:
        heatmap(records, out / "heatmap.png")
    except Exception as exc:  # noqa: BLE001 - a store without such runs still gets a report
        return [f"<h2>Accuracy by test alphabet</h2><p class=note>not drawn: {html.escape(str(exc))}</p>"]
    return ["<h2>Accuracy by test alphabet</h2><p class=note>Methods x the 10 test alphabets on omniglot20, "
            "all draws pooled: which alphabets are hard for everyone, which for one method.</p>"
            '<img src="heatmap.png" alt="heatmap of accuracy by method and alphabet">']


def _omniglot20_runs(records: list[dict]) -> list[tuple[str, dict]]:
    """(name, run): the newest seed-0 (else lowest-seed) omniglot20 run that keeps trial identities, of
    each method and preset label (an older config of a preset is a label of its own, as in the tables)."""
    chosen = []
    for (method, preset, protocol), runs in sorted(latest_per_seed(records).items()):
        runs = sorted((r for r in runs if r["draws"][0].get("sets")), key=lambda r: r["seed"])
        if protocol == "omniglot20" and runs:
            chosen.append((method if preset == "-" else f"{method} ({preset})", runs[0]))
    return chosen


def _slug(name: str) -> str:
    """A file name for a run's name: ``maml (cpu (epochs=12))`` -> ``maml-cpu-epochs-12``."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-")


def _curves(records: list[dict], out: Path) -> list[str]:
    parts = ["<h2>Learning curves</h2><p class=note>Training loss and accuracy on the 320 validation trials "
             "per epoch, one line per ensemble member.</p>"]
    for title, record in _omniglot20_runs(records):
        if (record.get("training") or {}).get("history"):
            name = f"curves-{_slug(title)}.png"
            learning_curves([record], out / name)
            parts.append(f"<h3>{html.escape(title)}</h3>"
                         f'<img src="{name}" alt="learning curves">')
    return parts


def _galleries(records: list[dict], out: Path, data_root, limit: int) -> list[str]:
    parts = [f"<h2>What each method gets wrong on omniglot20</h2><p class=note>The {limit} most confidently "
             "wrong trials of each method (query | correct support | chosen support, with scores), and its "
             "three hardest alphabets.</p>"]
    for title, record in _omniglot20_runs(records):
        wrong = distinct_failures(record, limit)
        if wrong.empty:
            continue
        name = f"gallery-{_slug(title)}.png"
        failure_gallery(record, wrong, source_for(record, data_root), out / name)
        hardest = per_alphabet(record).head(3)
        words = ", ".join(f"{a.replace('_', ' ')} {acc:.0f}%" for a, acc in hardest["accuracy"].items())
        parts.append(f"<h3>{html.escape(title)}: {100 * record['accuracy']:.1f}%</h3>"
                     f"<p class=note>hardest alphabets: {html.escape(words)}</p>"
                     f'<img src="{name}" alt="failed trials of {html.escape(record["method"])}">')
    return parts
