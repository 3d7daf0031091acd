"""``bench sweep``: grids of methods, presets, settings, seeds and protocols, here or on Ray."""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from fewshot_bench.cli.common import console, data_root_arg, device_arg, out, store_arg, writable_store
from fewshot_bench.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="methods x presets x settings x seeds x protocols, here or on Ray",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Plan every run of a grid, skip those already stored, run the rest: in this "
                                   "process (--on local) or as Ray tasks (--on ray; a local Ray started and "
                                   "stopped here, or --address for a cluster). Each training is fitted once and "
                                   "evaluated on every protocol.",
                       epilog="examples:\n  bench sweep --method conv_siamese,protonet --preset cpu --protocol "
                              "omniglot20,lake_runs --seeds 0-2 --trial-seed 0-9 --grid adam_lr=1e-3,2e-3 --on ray\n"
                              "  bench sweep --spec sweep.toml --on ray --address 10.0.0.1:6379")
    p.add_argument("--spec", metavar="SWEEP.toml", help="the grid as TOML (method, preset, protocol, seeds, "
                                                         "trial_seeds, [grid]); options given here override it")
    p.add_argument("--method", help="comma-separated method names")
    p.add_argument("--preset", help="comma-separated presets (each for every method)")
    p.add_argument("--protocol", help="comma-separated protocols, all scored with the same weights")
    p.add_argument("--seeds", help="training seeds: 0-2, 0,4 (default 0)")
    p.add_argument("--trial-seed", help="trial draws for each protocol that draws trials (default: the seed)")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2", help="a method option and its values "
                                                                       "(repeatable: the grid is their product)")
    p.add_argument("--on", choices=["local", "ray"], default="local", help="where runs execute (default local)")
    p.add_argument("--address", help="join this Ray cluster (auto or HOST:PORT) instead of starting one")
    p.add_argument("--retries", type=int, default=2, help="Ray: reruns of a training whose worker died (default 2)")
    store_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    device_arg(p)
    data_root_arg(p)
    p.set_defaults(func=command)


def command(args) -> None:
    import pandas as pd

    from fewshot_bench.experiments.sweep import SweepProgress, parse_grid, plan, read_spec, run_local, run_ray, summary

    spec = read_spec(Path(args.spec)) if args.spec else {"methods": [], "presets": [], "protocols": [],
                                                          "seeds": "0", "trial_seeds": None, "grid": {}}
    listed = lambda text: [x.strip() for x in text.split(",") if x.strip()]  # noqa: E731
    methods = listed(args.method) if args.method else spec["methods"]
    presets = listed(args.preset) if args.preset else spec["presets"]
    protocols = listed(args.protocol) if args.protocol else spec["protocols"]
    seeds = args.seeds or spec["seeds"]
    trial_seeds = args.trial_seed or spec["trial_seeds"]
    grid = {**spec["grid"], **parse_grid(args.grid)}
    if args.retries < 0:
        raise UserError(f"--retries must be >= 0, got {args.retries}")
    if args.on == "local" and args.address:
        raise UserError("--address joins a Ray cluster: add --on ray")
    store = writable_store(args)
    from fewshot_bench.data.datasets import data_root

    trainings = plan(methods, presets, protocols, seeds, trial_seeds, grid, store, data_root(args.data_root).resolve())
    todo = [t for t in trainings if t.owed]
    console.print(f"sweep: {len(trainings)} trainings x {len(protocols)} protocols; {len(trainings) - len(todo)} "
                  f"already stored; running {len(todo)} {'here' if args.on == 'local' else 'on Ray'}")
    with SweepProgress(console, len(trainings), len(trainings) - len(todo), not args.no_progress) as progress:
        if args.on == "ray" and todo:
            run_ray(todo, store, progress, args.address, args.retries)
        elif todo:
            run_local(todo, store, progress)
    frame = summary(trainings, store)
    table = Table(title="sweep: mean ± 95% t-interval over training seeds", title_justify="left")
    for col in ("method", "setting", "protocol", "seeds", "accuracy", "val."):
        table.add_column(col, no_wrap=col != "setting", overflow="fold", justify="left" if col in ("method", "setting", "protocol")
                         else "right")
    for r in frame.itertuples():
        method = r.method + ("" if r.preset == "-" else f" ({r.preset})")
        validation = "" if pd.isna(r.validation) else f"{r.validation:.1f}%" + (" *" if r.selected else "")
        table.add_row(method, r.setting, r.protocol, str(r.seeds), f"{r.accuracy:.2f} ± {r.ci95:.2f}%", validation)
    out.print(table)
    if frame["selected"].any():
        out.print("val. = best accuracy on the 320 validation-alphabet trials during training; * = the setting "
                  "validation selects per method and protocol (never chosen by test accuracy)", soft_wrap=False)
    failed = [t for t in trainings if t.error]
    for t in failed:
        console.print(f"[red]failed:[/] {t.name}: {t.error}", highlight=False, soft_wrap=True)
    if failed:
        raise UserError(f"{len(failed)} of {len(todo)} trainings failed (above); the other runs are stored, "
                        "and a rerun retries only the missing ones")
