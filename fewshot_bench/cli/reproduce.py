"""``bench reproduce TABLE``: regenerate a table from real runs, resumably."""
from __future__ import annotations

from pathlib import Path

from fewshot_bench.cli.common import (RegistryNames, console, data_root_arg, device_arg, out, say, store_arg,
                                      writable_folder, writable_store)
from fewshot_bench.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("reproduce", help="regenerate a table of Koch 2015 from real runs (resumable)",
                       description="Plan the runs a table needs, skip those already stored, run the rest "
                                   "and write results/TABLE.csv, .md and .png.")
    p.add_argument("table", choices=RegistryNames("fewshot_bench.tables.base", "TABLES"), metavar="TABLE",
                   help="the table to regenerate: %(choices)s")
    p.add_argument("--preset", default="cpu", choices=["cpu", "paper"], help="preset family (default cpu)")
    p.add_argument("--seeds", type=int, default=1, help="training seeds per learned method (default 1)")
    store_arg(p)
    p.add_argument("--out", default="results", help="where the table files go (default results/)")
    p.add_argument("--on", choices=["local", "ray"], default="local", help="run the missing runs here "
                                                                        "(default) or as Ray tasks")
    p.add_argument("--address", help="with --on ray: join this Ray cluster instead of starting one")
    p.add_argument("--stored", action="store_true", help="write the table from the runs already stored and run "
                                                         "nothing (a long reproduce's progress; missing cells read "
                                                         "'not run')")
    p.add_argument("--replot", action="store_true", help="redraw TABLE.png from the TABLE.csv in --out and run "
                                                         "nothing (a figure whose runs are gone, after the plots "
                                                         "changed)")
    device_arg(p)
    data_root_arg(p)
    p.set_defaults(func=command)


def command(args) -> None:
    from fewshot_bench.progress import StageProgress
    from fewshot_bench.experiments.reproduce import reproduce

    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    if args.stored and args.on != "local":
        raise UserError("--stored runs nothing: leave out --on ray")
    writable_folder(args.out, "--out")
    if args.replot:
        return replot(args.table, Path(args.out))
    store = writable_store(args)
    # the default --seeds is left out: the budget and Table 4's seeded cells fix their own
    seeds = f" --seeds {args.seeds}" if args.seeds > 1 else ""
    command = f"bench reproduce {args.table} --preset {args.preset}{seeds}"
    with StageProgress(console) as progress:
        reproduce(args.table, args.preset, args.seeds, store, Path(args.out),
                  Path(args.data_root) if args.data_root else None, progress, command, on=args.on,
                  address=args.address, run_missing=not args.stored)
    out.print((Path(args.out) / f"{args.table}.md").read_text(), highlight=False, soft_wrap=True)
    say(f"wrote {args.out}/{args.table}.csv, .md" + (", .png" if (Path(args.out) / f"{args.table}.png").exists() else ""))


def replot(table: str, folder: Path) -> None:
    """TABLE.png drawn again from TABLE.csv: the same numbers, the current figure code."""
    import pandas as pd

    from fewshot_bench.tables.base import TABLES

    csv = folder / f"{table}.csv"
    if not csv.is_file():
        raise UserError(f"--replot needs {csv}: run `bench reproduce {table}` (or with --stored) first")
    png = folder / f"{table}.png"
    if not TABLES.get(table)().plot(pd.read_csv(csv), png):
        raise UserError("--replot needs matplotlib: pip install -e '.[plot]'")
    say(f"wrote {png} from {csv}")
