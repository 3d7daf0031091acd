"""``bench run``: fit a method, evaluate it on a protocol's trial draws, store and print the record."""
from __future__ import annotations

import json

from fewshot_bench.cli.common import (console, data_root_arg, device_arg, out, plugin_arg, print_results, say, store_arg,
                                      writable_store)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("run", help="fit a method and evaluate it on a protocol",
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
    device_arg(p)
    data_root_arg(p)
    plugin_arg(p)
    p.set_defaults(func=command)


def command(args) -> None:
    record = execute(args, args.method, show_progress=not args.no_progress)
    print_results([record], console if args.json else out)  # --json: stdout holds the record alone
    if args.json:
        print(json.dumps(record, separators=(",", ":")))


def execute(args, method: str, show_progress: bool = True) -> dict:
    """``bench run``'s work, through the Python API's ``run`` (never reusing a stored run: the command
    scores again), with progress bars and what a user should know said on stderr."""
    from fewshot_bench.api import PROTOCOLS
    from fewshot_bench.config import parse_assignments
    from fewshot_bench.experiments import python_api
    from fewshot_bench.progress import StageProgress
    from fewshot_bench.records import write_atomic
    from fewshot_bench.seeding import format_seeds, parse_seeds

    protocol_options = parse_assignments(getattr(args, "protocol_options", None))
    if getattr(args, "runs", None):
        protocol_options["runs"] = args.runs
    store = writable_store(args)  # before any work: a training is not thrown away for a bad path
    trial_seeds = parse_seeds(args.trial_seed) if args.trial_seed is not None else None
    if trial_seeds and len(trial_seeds) > 1 and PROTOCOLS.get(args.protocol).fixed_trials:
        console.print(f"note: {args.protocol} is one fixed set of trials; --trial-seed {args.trial_seed} ignored "
                      "(one evaluation, its CI over that set)", highlight=False, markup=False)
    with StageProgress(console, enabled=show_progress) as progress:
        result = python_api.run(method, args.protocol, getattr(args, "preset", None), trial_seeds, seed=args.seed,
                                protocol_options=protocol_options, store=store, data_root=args.data_root,
                                reuse=False, progress=progress,
                                **parse_assignments(getattr(args, "method_options", None)))
    record = result.record
    if record.get("resumed_draws"):
        say(f"resumed: trial seeds {format_seeds(record['resumed_draws'])} were scored by an interrupted run")
    say(f"run record: {result.path}")
    warn_if_not_learned(record)
    split = (record.get("protocol_data") or {}).get("split")
    if split is not None:  # a folder's split: the classes each part held, beside the record
        split_path = store / "splits" / f"{record['run_id']}.json"
        write_atomic(split_path, json.dumps(split, indent=1) + "\n")
        say(f"split: {split_path}")
    return record


def warn_if_not_learned(record: dict) -> None:
    """One line where the training failed the learning check: the accuracy is not the method's."""
    from fewshot_bench.records import did_not_learn, learning_check

    flag = did_not_learn(record)
    if flag:
        why = learning_check(record["training"]["history"], record["method_config"])["reason"]
        say(f"warning: {record['method']} ({record['preset']}) {flag}: {why}; its accuracy is an untrained "
            "network's, not the method's")
