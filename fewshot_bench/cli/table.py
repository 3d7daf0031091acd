"""``bench table``: every stored run as methods x protocols, beside the paper's figures."""
from __future__ import annotations

from pathlib import Path

from fewshot_bench.cli.common import out, say, store_arg, writable_folder
from fewshot_bench.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("table", help="CSV and Markdown tables from the stored run records",
                              description="Every stored run as methods x protocols (mean ± 95% CI; several "
                                          "training seeds as mean ± t-interval), the paper's figures beside them.")
    store_arg(p)
    p.add_argument("--out", help="folder to write results.csv and results.md into")
    p.set_defaults(func=command)


def command(args) -> None:
    from fewshot_bench.records import load_records, store_dir
    from fewshot_bench.tables.store import long_table, to_markdown, wide_table

    if args.out:
        writable_folder(args.out, "--out")
    records = load_records(store_dir(args.store))
    if not records:
        raise UserError(f"no run records in {store_dir(args.store)}; run `bench run ...` first")
    wide = wide_table(records)
    markdown = to_markdown(wide)
    out.print(markdown, highlight=False, soft_wrap=True)
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        long_table(records).to_csv(folder / "results.csv", index=False, float_format="%.2f")
        (folder / "results.md").write_text(markdown)
        say(f"wrote {folder / 'results.csv'} and {folder / 'results.md'}")
