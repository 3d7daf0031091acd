"""The ``bench`` command: list, data, run, table, compare."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import UserError

console = Console(stderr=True)  # human output on stderr, so --json's stdout stays machine-readable
out = Console()

EPILOG = """examples:
  bench list
  bench data --data-root ../shared/data
  bench run --method pixel_1nn --protocol omniglot20 --trial-seed 0-9
  bench run --method mhd --protocol lake_runs
  bench table --out results/
  bench compare pixel_1nn mhd --protocol omniglot20 --gallery disagree.png
  bench show --method mhd --protocol omniglot20 --gallery failures.png
  bench report --out results/report
  bench speed mhd
"""


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM ends bench as Ctrl-C does: training workers and Ray tasks are stopped on the way out
        signal.signal(signal.SIGTERM, _terminate)
    try:
        from .registry import load_plugin_file

        for plugin in getattr(args, "plugin", None) or []:
            load_plugin_file(plugin)
        return args.func(args) or 0
    except UserError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]; stored runs are complete, a rerun resumes trainings")
        return 130


def _terminate(signum, frame):
    raise KeyboardInterrupt


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="fewshot-bench: one-shot benchmarks of Koch et al. 2015, with honest confidence intervals.")
    parser.add_argument("--version", action="version", version=f"fewshot-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_root_arg(p):
        p.add_argument("--data-root", help="datasets folder (default: $FEWSHOT_BENCH_DATA, then a per-user cache)")

    def store_arg(p):
        p.add_argument("--store", help="results store folder (default: $FEWSHOT_BENCH_STORE, then ./runs)")

    def plugin_arg(p):
        p.add_argument("--plugin", action="append", metavar="FILE.py",
                       help="load methods/protocols from a Python file (repeatable)")

    p = sub.add_parser("list", help="methods and protocols with one-line descriptions")
    plugin_arg(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("data", help="show and verify the datasets; `bench data fetch` downloads missing ones")
    p.add_argument("action", nargs="?", choices=["show", "fetch"], default="show")
    data_root_arg(p)
    p.add_argument("--base-url", help="download from this mirror (files under their data-root paths)")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("run", help="fit a method and evaluate it on a protocol",
                       description="Fit a method once (--seed), evaluate it on one or more trial draws "
                                   "(--trial-seed), print the result and store a run record.")
    p.add_argument("--method", required=True, help="method name (see `bench list`)")
    p.add_argument("--protocol", required=True, help="protocol name (see `bench list`)")
    p.add_argument("--preset", help="named method config (e.g. cpu, paper)")
    p.add_argument("--set", dest="method_options", action="append", metavar="KEY=VALUE",
                   help="override a method config value (repeatable)")
    p.add_argument("--protocol-set", dest="protocol_options", action="append", metavar="KEY=VALUE",
                   help="override a protocol config value (repeatable)")
    p.add_argument("--runs", help="lake_runs: folder or zip with Lake's run01..run20")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, pairs, distortions (default 0)")
    p.add_argument("--trial-seed", help="trial draws: 3, 0-9 or 0,4,7 (default: the seed)")
    store_arg(p)
    p.add_argument("--json", action="store_true", help="print the run record as one JSON line on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    data_root_arg(p)
    plugin_arg(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("table", help="CSV and Markdown tables from the stored run records")
    store_arg(p)
    p.add_argument("--out", help="folder to write results.csv and results.md into")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("compare", help="two methods on the same trials, with an exact McNemar test")
    p.add_argument("method_a")
    p.add_argument("method_b")
    p.add_argument("--protocol", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trial-seed", help="trial draws (default: the seed)")
    store_arg(p)
    p.add_argument("--gallery", metavar="PATH.png", help="draw the trials only one of the two gets right")
    p.add_argument("--limit", type=int, default=12, help="trials per side in the gallery (default 12)")
    data_root_arg(p)
    plugin_arg(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("show", help="what a stored run got wrong: per alphabet, confusions, a gallery",
                       description="Per-alphabet accuracy and the most confused characters of a stored run "
                                   "(RUN_ID, or the newest run of --method on --protocol); --gallery draws its "
                                   "failed trials, --curves its learning curves.")
    p.add_argument("run_id", nargs="?", help="a run id (file name in the store, without .json)")
    p.add_argument("--method", help="the newest run of this method (with --protocol)")
    p.add_argument("--protocol", help="the newest run on this protocol")
    p.add_argument("--preset", help="the newest run of this preset")
    p.add_argument("--gallery", metavar="PATH.png", help="failed trials: query | correct | chosen, most "
                                                         "confidently wrong first")
    p.add_argument("--curves", metavar="PATH.png", help="training loss and validation accuracy per epoch")
    p.add_argument("--limit", type=int, default=20, help="trials in the gallery (default 20)")
    store_arg(p)
    data_root_arg(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("report", help="a static HTML page of the store: tables, heatmap, curves, galleries")
    p.add_argument("--out", default="results/report", help="folder for index.html and its images "
                                                           "(default results/report)")
    p.add_argument("--tables", default="results", help="folder holding tableN.md/.png (default results)")
    p.add_argument("--limit", type=int, default=12, help="failed trials per gallery (default 12)")
    store_arg(p)
    data_root_arg(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("reproduce", help="regenerate a table of Koch 2015 from real runs (resumable)",
                       description="Plan the runs a table needs, skip those already stored, run the rest "
                                   "and write results/TABLE.csv, .md and .png.")
    p.add_argument("table", choices=["table1", "table2", "table3", "table4"])
    p.add_argument("--preset", default="cpu", choices=["cpu", "paper"], help="preset family (default cpu)")
    p.add_argument("--seeds", type=int, default=1, help="training seeds per learned method (default 1)")
    store_arg(p)
    p.add_argument("--out", default="results", help="where the table files go (default results/)")
    p.add_argument("--on", choices=["local", "ray"], default="local", help="run the missing runs here "
                                                                        "(default) or as Ray tasks")
    p.add_argument("--address", help="with --on ray: join this Ray cluster instead of starting one")
    data_root_arg(p)
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("sweep", help="methods x presets x settings x seeds x protocols, here or on Ray",
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
    data_root_arg(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("speed", help="benchmarks: data loading, mhd vs scipy, training throughput, evaluation, "
                                     "sweep here vs on Ray")
    p.add_argument("name", choices=["load", "mhd", "train", "eval", "sweep"])
    p.add_argument("--preset", help="conv_siamese preset for train (default cpu) and eval (default paper)")
    data_root_arg(p)
    p.set_defaults(func=cmd_speed)
    return parser


# ------------------------------------------------------------------ list

def cmd_list(args) -> None:
    from .api import METHODS, PROTOCOLS

    for title, registry in (("methods", METHODS), ("protocols", PROTOCOLS)):
        table = Table(title=title, title_justify="left", show_header=False, box=None)
        for name, cls in registry.items():
            presets = ", ".join(getattr(cls, "presets", {}) or [])
            table.add_row(f"[bold]{name}[/]", cls.summary + (f" [dim](presets: {presets})[/]" if presets else ""))
        for name, why in registry.broken.items():
            table.add_row(f"[red]{name}[/]", f"[red]failed to load: {why}[/]")
        out.print(table)


# ------------------------------------------------------------------ data

def cmd_data(args) -> None:
    from .data import data_root

    root = data_root(args.data_root)
    if args.action == "fetch":
        fetch_missing(root, args.base_url)
    show_data(root)


def fetch_missing(root: Path, base_url: str | None) -> None:
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from .fetch import download, missing_files

    todo = missing_files(root)
    if not todo:
        console.print(f"all datasets present under {root}")
        return
    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=console) as bar:
        for remote in todo:
            task = bar.add_task(f"fetch {remote.name}", total=None)
            download(remote, root, base_url, on_bytes=lambda n, t=task: bar.advance(t, n))
            console.print(f"downloaded {root / remote.name} (MD5 ok)")


def show_data(root: Path) -> None:
    from .data import load_mnist, load_omniglot, verify_mnist, verify_omniglot
    from .lake import RUNS_FILE, load_runs, verify_runs_file
    from .vinyals import PARTS, read_split, verify_split

    table = Table(title=f"datasets under {root}", title_justify="left")
    table.add_column("dataset")
    table.add_column("status")
    table.add_column("content")
    checks = (("omniglot", lambda: load_omniglot(root), verify_omniglot,
               lambda s: f"{s.meta['alphabet'].nunique()} alphabets, {s.meta['label'].nunique()} characters, "
                         f"{len(s):,} images"),
              ("mnist", lambda: load_mnist(root), verify_mnist, lambda s: f"{len(s):,} test images"),
              ("lake runs", lambda: load_runs(root / RUNS_FILE), lambda runs: verify_runs_file(runs, root / RUNS_FILE),
               lambda runs: f"{len(runs)} runs, {sum(len(r.queries) for r in runs)} trials, SHA-256 as published"),
              ("vinyals split", lambda: {part: read_split(root, part) for part in PARTS}, lambda _: verify_split(root),
               lambda parts: ", ".join(f"{part} {len(classes):,}" for part, classes in parts.items()) + " classes"))
    problems = 0
    for name, load, verify, describe in checks:
        try:
            images = load()
        except UserError as exc:
            table.add_row(name, "[red]missing or unreadable[/]", str(exc))
            problems += 1
            continue
        issues = verify(images)
        problems += bool(issues)
        table.add_row(name, "[red]unexpected content[/]" if issues else "[green]verified[/]",
                      "; ".join(issues) or describe(images))
    out.print(table)
    if problems:
        raise UserError(f"{problems} dataset(s) missing or wrong under {root}; "
                        f"run `bench data fetch --data-root {root}`")


# ------------------------------------------------------------------ run

def cmd_run(args) -> None:
    record = execute(args, args.method, show_progress=not args.no_progress)
    print_results([record])
    if args.json:
        print(json.dumps(record, separators=(",", ":")))


def execute(args, method: str, show_progress: bool = True) -> dict:
    from .config import parse_assignments
    from .progress import StageProgress
    from .records import save_record, store_dir
    from .runner import RunSpec, run
    from .seeding import parse_seeds

    protocol_options = parse_assignments(getattr(args, "protocol_options", None))
    if getattr(args, "runs", None):
        protocol_options["runs"] = args.runs
    store = store_dir(args.store)
    spec = RunSpec(method=method, protocol=args.protocol, preset=getattr(args, "preset", None),
                   method_options=parse_assignments(getattr(args, "method_options", None)),
                   protocol_options=protocol_options, seed=args.seed,
                   trial_seeds=parse_seeds(args.trial_seed) if args.trial_seed is not None else None,
                   data_root=Path(args.data_root) if args.data_root else None, work_dir=store / "checkpoints")
    with StageProgress(console, enabled=show_progress) as progress:
        record = run(spec, progress)
    path = save_record(record, store)
    console.print(f"run record: {path}", highlight=False)
    return record


RESULT_COLUMNS = ("method", "protocol", "accuracy", "trials", "draws", "spread", "train s", "eval s")
DROP_FIRST = ("spread", "draws", "train s", "eval s", "trials")  # when the console is narrow


def print_results(records: list[dict]) -> None:
    """The results table; names and accuracies are never cut or wrapped: on a narrow console
    (80 columns, a pipe, a CI log) the other columns are dropped instead, least useful first."""
    rows = [{"method": r["method"] + (f" ({r['preset']})" if r.get("preset") else ""), "protocol": r["protocol"],
             "accuracy": f"{100 * r['accuracy']:.2f} ± {100 * r['ci95']:.2f}%", "trials": str(r["n_trials"]),
             "draws": str(len(r["trial_seeds"])), "spread": f"{100 * r['draw_std']:.2f}",
             "train s": f"{r['train_seconds']:.1f}", "eval s": f"{r['eval_seconds']:.1f}"} for r in records]
    columns = list(RESULT_COLUMNS)
    for drop in (None, *DROP_FIRST):
        if drop:
            columns.remove(drop)
        table = Table(title="results", title_justify="left")
        for col in columns:
            table.add_column(col, justify="left" if col in ("method", "protocol") else "right", no_wrap=True)
        for row in rows:
            table.add_row(*(row[c] for c in columns))
        natural = console.measure(table, options=console.options.update_width(10_000)).maximum
        if natural <= console.width:
            break
    console.print(table)
    spread = "; spread = std of accuracy over draws" if "spread" in columns else ""
    console.print(f"[dim]accuracy ± 95% CI over {records[0]['ci_unit']}{spread}[/]")


# ------------------------------------------------------------------ table

def cmd_table(args) -> None:
    from .records import load_records, store_dir
    from .tables import long_table, to_markdown, wide_table

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
        console.print(f"wrote {folder / 'results.csv'} and {folder / 'results.md'}")


# ------------------------------------------------------------------ compare

def cmd_compare(args) -> None:
    from .records import load_records, store_dir
    from .seeding import parse_seeds
    from .stats import mcnemar_exact

    trial_seeds = parse_seeds(args.trial_seed) if args.trial_seed is not None else [args.seed]
    store = store_dir(args.store)
    stored = load_records(store) if store.is_dir() else []
    records = []
    for method in (args.method_a, args.method_b):
        match = [r for r in stored if r["method"] == method and r["protocol"] == args.protocol
                 and r["seed"] == args.seed and r["trial_seeds"] == trial_seeds]
        if match:
            records.append(match[-1])
        else:
            args.trial_seed = ",".join(map(str, trial_seeds))
            records.append(execute(args, method))
    correct = [[c for d in r["draws"] for c in d["correct"]] for r in records]
    test = mcnemar_exact(*correct)
    print_results(records)
    out.print(f"{args.method_a} right, {args.method_b} wrong: {test['only_a']}; "
              f"{args.method_b} right, {args.method_a} wrong: {test['only_b']}; "
              f"exact McNemar p = {test['p_value']:.3g} over {len(correct[0])} paired trials", soft_wrap=True)
    if args.gallery:
        from .failures import disagreements
        from .pictures import comparison_gallery, source_for

        only_a, only_b = disagreements(*records)
        path = comparison_gallery(*records, only_a.head(args.limit), only_b.head(args.limit),
                                  source_for(records[0], args.data_root), Path(args.gallery))
        console.print(f"wrote {path}")


# ------------------------------------------------------------------ show

def find_record(store: Path, run_id: str | None, method: str | None, protocol: str | None,
                preset: str | None = None) -> dict:
    """A stored run by id, else the newest of ``method`` (and/or ``protocol``, ``preset``)."""
    from .records import load_records

    records = load_records(store)
    if run_id:
        match = [r for r in records if r["run_id"] == run_id.removesuffix(".json")]
        if not match:
            raise UserError(f"no run {run_id!r} in {store}; `bench table --store {store}` lists what is there")
        return match[0]
    if not (method or protocol):
        raise UserError("name a run: RUN_ID, or --method and/or --protocol for the newest such run")
    match = [r for r in records if (not method or r["method"] == method) and (not protocol or r["protocol"] == protocol)
             and (not preset or r.get("preset") == preset)]
    if not match:
        raise UserError(f"no run of {method or 'any method'}{f' ({preset})' if preset else ''} on "
                        f"{protocol or 'any protocol'} in {store}")
    return match[-1]


def cmd_show(args) -> None:
    from .failures import confused_characters, failures, per_alphabet, verification_errors
    from .pictures import failure_gallery, learning_curves, source_for, verification_gallery
    from .records import store_dir

    record = find_record(store_dir(args.store), args.run_id, args.method, args.protocol, args.preset)
    print_results([record])
    console.print(f"run {record['run_id']}", highlight=False)
    source = source_for(record, args.data_root)
    if record["protocol"] == "verification" or "first" in record["draws"][0]:
        false_accepts, false_rejects = verification_errors(record)
        out.print(f"{len(false_accepts)} false accepts, {len(false_rejects)} false rejects "
                  f"of {record['n_trials']} pairs")
        if args.gallery:
            half = max(1, args.limit // 2)
            console.print(f"wrote {verification_gallery(record, false_accepts.head(half), false_rejects.head(half), source, Path(args.gallery))}")
    else:
        table = Table(title="accuracy per alphabet (hardest first)", title_justify="left")
        for col in ("alphabet", "trials", "accuracy"):
            table.add_column(col, justify="left" if col == "alphabet" else "right", no_wrap=True)
        for alphabet, row in per_alphabet(record).iterrows():
            table.add_row(alphabet, str(int(row["trials"])), f"{row['accuracy']:.1f}%")
        out.print(table)
        confused = confused_characters(record)
        table = Table(title="most confused characters", title_justify="left")
        for col in ("character", "confused with", "times"):
            table.add_column(col, no_wrap=True, justify="right" if col == "times" else "left")
        for row in confused.itertuples():
            table.add_row(row.character, row.confused_with, str(row.times))
        out.print(table)
        if args.gallery:
            wrong = failures(record, args.limit)
            console.print(f"wrote {failure_gallery(record, wrong, source, Path(args.gallery))}")
    if args.curves:
        console.print(f"wrote {learning_curves([record], Path(args.curves))}")


# ------------------------------------------------------------------ report

def cmd_report(args) -> None:
    from .records import load_records, store_dir
    from .report import write_report

    records = load_records(store_dir(args.store))
    if not records:
        raise UserError(f"no run records in {store_dir(args.store)}; run `bench run ...` first")
    path = write_report(records, Path(args.out), Path(args.tables), args.data_root, args.limit)
    console.print(f"wrote {path}")


# ------------------------------------------------------------------ reproduce

def cmd_reproduce(args) -> None:
    from .progress import StageProgress
    from .records import store_dir
    from .reproduce import reproduce

    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    command = f"bench reproduce {args.table} --preset {args.preset} --seeds {args.seeds}"
    with StageProgress(console) as progress:
        reproduce(args.table, args.preset, args.seeds, store_dir(args.store), Path(args.out),
                  Path(args.data_root) if args.data_root else None, progress, command, on=args.on,
                  address=args.address)
    out.print((Path(args.out) / f"{args.table}.md").read_text(), highlight=False, soft_wrap=True)
    console.print(f"wrote {args.out}/{args.table}.csv, .md" + (", .png" if (Path(args.out) / f"{args.table}.png").exists() else ""))


# ------------------------------------------------------------------ sweep

def cmd_sweep(args) -> None:
    import pandas as pd

    from .records import store_dir
    from .sweep import SweepProgress, parse_grid, plan, read_spec, run_local, run_ray, summary

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
    store = store_dir(args.store)
    from .data import data_root

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


# ------------------------------------------------------------------ speed

def cmd_speed(args) -> None:
    from . import speed
    from .data import data_root

    root = data_root(args.data_root)
    kwargs = {"preset": args.preset} if args.preset and args.name in ("train", "eval") else {}
    result = getattr(speed, {"eval": "evaluate"}.get(args.name, args.name))(root, **kwargs)
    out.print_json(data=result)


if __name__ == "__main__":
    sys.exit(main())
