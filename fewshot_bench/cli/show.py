"""``bench show``: what a stored run got wrong: per alphabet, confusions, galleries, curves."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from fewshot_bench.cli.common import console, data_root_arg, out, print_results, say, store_arg, writable_file
from fewshot_bench.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("show", help="what a stored run got wrong: per alphabet, confusions, a gallery",
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
    p.set_defaults(func=command)


def find_record(store: Path, run_id: str | None, method: str | None, protocol: str | None,
                preset: str | None = None) -> dict:
    """A stored run by id, else the newest of ``method`` (and/or ``protocol``, ``preset``)."""
    from fewshot_bench.records import load_records

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


def command(args) -> None:
    from fewshot_bench.pictures.failures import confused_characters, distinct_failures, per_alphabet, verification_errors
    from fewshot_bench.pictures.figures import failure_gallery, learning_curves, source_for, verification_gallery
    from fewshot_bench.records import store_dir

    for option, path in (("--gallery", args.gallery), ("--curves", args.curves)):
        if path:
            writable_file(path, option)
    record = find_record(store_dir(args.store), args.run_id, args.method, args.protocol, args.preset)
    if args.curves and not (record.get("training") or {}).get("history"):
        raise UserError(f"run {record['run_id']} ({record['method']}) has no training history: only learned "
                        "methods have learning curves; drop --curves")
    print_results([record])
    console.print(f"run {record['run_id']}", highlight=False)
    source = source_for(record, args.data_root)
    if record["protocol"] == "verification" or "first" in record["draws"][0]:
        false_accepts, false_rejects = verification_errors(record)
        out.print(f"{len(false_accepts)} false accepts, {len(false_rejects)} false rejects "
                  f"of {record['n_trials']} pairs")
        if args.gallery:
            half = max(1, args.limit // 2)
            say(f"wrote {verification_gallery(record, false_accepts.head(half), false_rejects.head(half), source, Path(args.gallery))}")
    else:
        table = Table(title="accuracy per alphabet (hardest first)", title_justify="left")
        for col in ("alphabet", "trials", "accuracy"):
            table.add_column(col, justify="left" if col == "alphabet" else "right", no_wrap=True)
        for alphabet, row in per_alphabet(record).iterrows():
            table.add_row(alphabet, str(int(row["trials"])), f"{row['accuracy']:.1f} ± {row['ci95']:.1f}%")
        out.print(table)
        confused = confused_characters(record)
        table = Table(title="most confused characters", title_justify="left")
        for col in ("alphabet", "character", "confused with", "times"):  # the alphabet folds; ids are never cut
            table.add_column(col, overflow="fold", justify="right" if col == "times" else "left",
                             no_wrap=col != "alphabet")
        for row in confused.itertuples():
            # both ids of a within-alphabet confusion share the alphabet: said once, in its own column
            first, second = row.character.rpartition("/"), row.confused_with.rpartition("/")
            shared = first[0] == second[0] and first[0]
            table.add_row(first[0] if shared else "", first[2] if shared else row.character,
                          second[2] if shared else row.confused_with, str(row.times))
        out.print(table)
        if args.gallery:
            wrong = distinct_failures(record, args.limit)
            say(f"wrote {failure_gallery(record, wrong, source, Path(args.gallery))}")
    if args.curves:
        say(f"wrote {learning_curves([record], Path(args.curves))}")
