"""``bench report``: the store as one static HTML page."""
from __future__ import annotations

from pathlib import Path

from fewshot_bench.cli.common import data_root_arg, say, store_arg, writable_folder
from fewshot_bench.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("report", help="a static HTML page of the store: tables, heatmap, curves, galleries",
                              description="One self-contained page (index.html and its PNGs in one folder; no "
                                          "script, no network) of a store's runs: the paper's tables from --tables, "
                                          "every run, the heatmap by test alphabet, learning curves, galleries.")
    p.add_argument("--out", default="results/report", help="folder for index.html and its images "
                                                           "(default results/report)")
    p.add_argument("--tables", default="results", help="folder holding tableN.md/.png (default results)")
    p.add_argument("--limit", type=int, default=12, help="failed trials per gallery (default 12)")
    store_arg(p)
    data_root_arg(p)
    p.set_defaults(func=command)


def command(args) -> None:
    from fewshot_bench.records import load_records, store_dir
    from fewshot_bench.pictures.report import write_report

    writable_folder(args.out, "--out")
    if not Path(args.tables).is_dir():
        say(f"note: no tables folder at {Path(args.tables).resolve()}; the report leaves out the paper's tables "
            "(pass --tables PATH, e.g. the repository's results/)")
    records = load_records(store_dir(args.store))
    if not records:
        raise UserError(f"no run records in {store_dir(args.store)}; run `bench run ...` first")
    path = write_report(records, Path(args.out), Path(args.tables), args.data_root, args.limit)
    say(f"wrote {path}")
