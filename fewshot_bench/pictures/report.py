"""``bench report``: one static, self-contained HTML page of a store (index.html and its PNGs in
one folder; no server, no script, no network): the paper's tables with their plots, the
heatmap of accuracy by test alphabet, learning curves, and a gallery of failed trials for each
method on ``omniglot20``."""
from __future__ import annotations

import html
import json
import re
import shutil
import time
from pathlib import Path

import pandas as pd

from fewshot_bench.pictures.failures import distinct_failures, per_alphabet
from fewshot_bench.pictures.figures import failure_gallery, heatmap, learning_curves, source_for
from fewshot_bench.errors import UserError
from fewshot_bench.records import write_atomic
from fewshot_bench.tables.store import latest_per_seed, wide_table

STYLE = """body{font-family:sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.4}
.scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1em}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left;white-space:normal;min-width:10em}
img{max-width:100%;height:auto;display:block;margin:0.5em 0 1em}h2{border-bottom:1px solid #ddd;padding-bottom:3px}
.note,li{color:#444;font-size:13px}code{font-size:12px;word-break:break-all}nav li{font-size:14px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,440px),1fr));gap:0.5em 1.5em}
details{margin:0.3em 0}summary{cursor:pointer;font-weight:bold;font-size:14px}"""


def write_report(records: list[dict], out: Path, tables: Path, data_root=None, limit: int = 12) -> Path:
    """index.html and its images in ``out``: a table of contents, one section per table of
    ``tables`` (its command, how to read it, its notes, its plot), every run, the heatmap, learning
    curves and galleries (collapsed), the commit and the run ids."""
    out.mkdir(parents=True, exist_ok=True)
    sections = _paper_tables(tables, out)
    sections.append(("every-run", "Every run", "<p class=note>Each method (preset, and the options where a run "
                     "differs from it) on each protocol: mean ± 95% CI; several training seeds: mean ± t-interval. "
                     "Columns marked Koch 2015 hold the paper's figures.</p><div class=scroll>"
                     + _html_table(wide_table(records).reset_index(names="method")) + "</div>"))
    sections += _heatmap(records, out) + _curves(records, out) + _galleries(records, out, data_root, limit)
    commits = sorted({(r.get("environment") or {}).get("git_commit") or "unknown" for r in records})
    toc = "".join(f'<li><a href="#{anchor}">{html.escape(title)}</a></li>' for anchor, title, _ in sections)
    body = [f"<h1>fewshot-bench report</h1><p class=note>{len(records)} runs from the store, written "
            f"{time.strftime('%Y-%m-%d %H:%M')} by <code>bench report</code>; the runs' commits: "
            f"{', '.join(f'<code>{c[:12]}</code>' for c in commits)}. Accuracies are mean ± 95% CI.</p>"
            f"<nav><h2>Contents</h2><ol>{toc}</ol></nav>"]
    body += [f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{content}</section>' for anchor, title, content in sections]
    page = ('<!doctype html><html lang=en><head><meta charset=utf-8>'
            '<meta name=viewport content="width=device-width, initial-scale=1">'
            f"<title>fewshot-bench report</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    write_atomic(out / "index.html", page)
    return out / "index.html"


def _html_table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, na_rep="", border=0, escape=True, float_format=lambda v: f"{v:.2f}")


def _inline(text: str) -> str:
    """Markdown's inline code as HTML, the rest escaped."""
    parts = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if k % 2 else html.escape(p) for k, p in enumerate(parts))


def markdown_section(text: str) -> tuple[str, str]:
    """A table's Markdown file (as ``bench reproduce`` writes it) as (title, HTML): its bullets
    (command, machine, how to read the cells), its table and its notes, with the file's own column
    names and number formats."""
    lines = text.splitlines()
    title = lines[0].lstrip("# ").strip() if lines and lines[0].startswith("#") else ""
    parts, items, rows = [], [], []

    def flush():
        if items:  # (text, sub-items): one level of nesting, as the tables' notes use
            parts.append("<ul>" + "".join(f"<li>{_inline(text)}" + ("<ul>" + "".join(f"<li>{_inline(c)}</li>"
                                                                                      for c in children) + "</ul>"
                                                                    if children else "") + "</li>"
                                          for text, children in items) + "</ul>")
            items.clear()
        if rows:
            head, *body = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows
                           if not set(r.replace("|", "").strip()) <= set("-: ")]
            parts.append("<div class=scroll><table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head)
                         + "</tr></thead><tbody>" + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r)
                                                            + "</tr>" for r in body) + "</tbody></table></div>")
            rows.clear()

    for line in lines[1:]:
        if line.startswith("|"):
            if items:
                flush()
            rows.append(line)
            continue
        if rows:
            flush()
        if line.startswith("- "):
            items.append((line[2:], []))
        elif line.startswith("  - ") and items:
            items[-1][1].append(line[4:])
        elif line.startswith("#"):
            flush()
            parts.append(f"<h3>{html.escape(line.lstrip('# '))}</h3>")
        elif line.strip() and items:
            text, children = items[-1]
            if children:
                children[-1] += " " + line.strip()
            else:
                items[-1] = (text + " " + line.strip(), children)
        elif line.strip():
            parts.append(f"<p class=note>{_inline(line)}</p>")
    flush()
    return title, "".join(parts)


def _paper_tables(tables: Path, out: Path) -> list[tuple[str, str, str]]:
    """A section per table of the registry whose Markdown file is in ``tables``: the papers' tables in
    their order, then ours (the budget comparison)."""
    from fewshot_bench.tables.base import TABLES

    sections = []
    for name in sorted(TABLES.names(), key=lambda name: (not name.startswith("table"), name)):
        md, png = tables / f"{name}.md", tables / f"{name}.png"
        if not md.is_file():
            continue
        title, content = markdown_section(md.read_text())
        if png.is_file():
            shutil.copyfile(png, out / png.name)
            content += f'<img src="{png.name}" alt="{html.escape(title)}: plot">'
        sections.append((name, title or name, content))
    return sections


def _heatmap(records: list[dict], out: Path) -> list[tuple[str, str, str]]:
    title = "Accuracy by test alphabet"
    try:
        heatmap(records, out / "heatmap.png")
    except UserError as exc:  # a store without omniglot20 runs still gets a report
        return [("heatmap", title, f"<p class=note>not drawn: {html.escape(str(exc))}</p>")]
    return [("heatmap", title, "<p class=note>Methods x the 10 test alphabets on omniglot20, all draws pooled: "
             "which alphabets are hard for everyone, which for one method.</p>"
             '<img src="heatmap.png" alt="heatmap of accuracy by method and alphabet">')]


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


def _curves(records: list[dict], out: Path) -> list[tuple[str, str, str]]:
    # runs read from one training at several epochs (keep=epochN) share its history: one figure,
    # one star per kept epoch, named after the first
    trainings: dict[str, list[tuple[str, dict]]] = {}
    for title, record in _omniglot20_runs(records):
        history = (record.get("training") or {}).get("history")
        if history:
            trainings.setdefault(json.dumps(history, sort_keys=True), []).append((title, record))
    parts = []
    for runs in trainings.values():
        title = runs[0][0] + (f" and {len(runs) - 1} more read from its training" if len(runs) > 1 else "")
        name = f"curves-{_slug(runs[0][0])}.png"
        learning_curves([record for _, record in runs], out / name)
        ids = ", ".join(f"<code>{html.escape(record['run_id'])}</code>" for _, record in runs)
        parts.append(f"<details><summary>{html.escape(title)}</summary><p class=note>run{'s' * (len(runs) > 1)} "
                     f"{ids}</p><img src=\"{name}\" alt=\"learning curves of {html.escape(title)}\"></details>")
    if not parts:
        return []
    return [("curves", "Learning curves", "<p class=note>Training loss and accuracy on the validation trials per "
             "epoch, one line per ensemble member; the kept epoch is marked. Open a run to see its curves.</p>"
             f"<div class=grid>{''.join(parts)}</div>")]


def _galleries(records: list[dict], out: Path, data_root, limit: int) -> list[tuple[str, str, str]]:
    parts = []
    for title, record in _omniglot20_runs(records):
        wrong = distinct_failures(record, limit)
        if wrong.empty:
            continue
        name = f"gallery-{_slug(title)}.png"
        failure_gallery(record, wrong, source_for(record, data_root), out / name)
        hardest = per_alphabet(record).head(3)
        words = ", ".join(f"{a} {acc:.0f}%" for a, acc in hardest["accuracy"].items())
        parts.append(f"<details><summary>{html.escape(title)}: {100 * record['accuracy']:.1f}%</summary>"
                     f"<p class=note>run <code>{html.escape(record['run_id'])}</code>; hardest alphabets: "
                     f"{html.escape(words)}</p>"
                     f'<img src="{name}" alt="failed trials of {html.escape(title)}"></details>')
    if not parts:
        return []
    return [("galleries", "What each method gets wrong on omniglot20",
             f"<p class=note>Up to {limit} of each method's most confidently wrong trials (query | correct support | "
             "chosen support, with scores; a trial several draws got wrong is shown once, with its count), and "
             f"its three hardest alphabets. Open a method to see its trials.</p><div class=grid>{''.join(parts)}</div>")]
