"""``bench compare A B``: two methods on the same trials, with McNemar's exact test."""
from __future__ import annotations

from pathlib import Path

from fewshot_bench.cli.common import data_root_arg, out, plugin_arg, print_results, say, store_arg, writable_file
from fewshot_bench.cli.run import execute
from fewshot_bench.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("compare", help="two methods on the same trials, with an exact McNemar test",
                              description="Two stored runs on identical trials (the newest of each method on the "
                                          "protocol, its config, the seed and trial draws given): accuracies, the "
                                          "trials only one gets right, and McNemar's exact test on them. Nothing is "
                                          "run unless --run-missing says so.")
    p.add_argument("method_a", help="a method name (see `bench list`)")
    p.add_argument("method_b", help="the method to set against it")
    p.add_argument("--protocol", required=True, help="the protocol both runs were evaluated on")
    p.add_argument("--protocol-set", dest="protocol_options", action="append", metavar="KEY=VALUE",
                   help="the protocol config both runs used, as `bench run --protocol-set` (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="the runs' training seed (default 0)")
    p.add_argument("--trial-seed", help="the runs' trial draws: 3, 0-9 or 0,4,7 (default: the seed)")
    p.add_argument("--run-missing", action="store_true", help="run (and train) what the store lacks, as `bench run` "
                                                              "would, instead of stopping")
    store_arg(p)
    p.add_argument("--gallery", metavar="PATH.png", help="draw the trials only one of the two gets right")
    p.add_argument("--limit", type=int, default=12, help="trials per side in the gallery (default 12)")
    data_root_arg(p)
    plugin_arg(p)
    p.set_defaults(func=command)


def command(args) -> None:
    from fewshot_bench.records import load_records, store_dir
    from fewshot_bench.seeding import parse_seeds
    from fewshot_bench.stats import mcnemar_exact, p_text

    trial_seeds = parse_seeds(args.trial_seed) if args.trial_seed is not None else [args.seed]
    version, config = _protocol_identity(args.protocol, args.protocol_options)
    store = store_dir(args.store)
    stored = load_records(store) if store.is_dir() else []
    if args.gallery:
        writable_file(args.gallery, "--gallery")
    found = {}
    for method in (args.method_a, args.method_b):
        # identical trials: the same protocol version and config, seed and trial draws
        match = [r for r in stored if r["method"] == method and r["protocol"] == args.protocol
                 and r.get("protocol_version") == version and r["protocol_config"] == config
                 and r["seed"] == args.seed and r["trial_seeds"] == trial_seeds]
        found[method] = match[-1] if match else None
    missing = [m for m, r in found.items() if r is None]
    if missing and not args.run_missing:
        seeds = f" --trial-seed {args.trial_seed}" if args.trial_seed is not None else ""
        options = "".join(f" --protocol-set {item}" for item in args.protocol_options or [])
        commands = "; ".join(f"bench run --method {m} --protocol {args.protocol}{options} --seed {args.seed}{seeds}"
                             f" --store {store}" for m in missing)
        described = f"{args.protocol} ({', '.join(args.protocol_options)})" if options else args.protocol
        raise UserError(f"{store} has no run of {' or '.join(missing)} on {described} with seed {args.seed} and "
                        f"trial draws {','.join(map(str, trial_seeds))}: run {commands} (or add --run-missing)"
                        + _stored_elsewhere(stored, missing, args.protocol))
    args.trial_seed = ",".join(map(str, trial_seeds))
    records = [found[m] or execute(args, m) for m in (args.method_a, args.method_b)]
    correct = [[c for d in r["draws"] for c in d["correct"]] for r in records]
    test = mcnemar_exact(*correct)
    print_results(records)
    out.print(f"{args.method_a} right, {args.method_b} wrong: {test['only_a']}; "
              f"{args.method_b} right, {args.method_a} wrong: {test['only_b']}; "
              f"exact McNemar {p_text(test['p_value'])} over {len(correct[0])} paired trials", soft_wrap=True)
    if args.gallery:
        from fewshot_bench.pictures.failures import disagreements
        from fewshot_bench.pictures.figures import comparison_gallery, source_for

        only_a, only_b = disagreements(*records)
        path = comparison_gallery(*records, only_a.head(args.limit), only_b.head(args.limit),
                                  source_for(records[0], args.data_root), Path(args.gallery), test)
        say(f"wrote {path}")


def _protocol_identity(protocol: str, options: list[str] | None) -> tuple[str, dict]:
    """The protocol's version and its config as records keep it, with ``--protocol-set`` applied:
    two runs face identical trials only where these match."""
    from fewshot_bench.api import PROTOCOLS
    from fewshot_bench.config import parse_assignments
    from fewshot_bench.tables.store import as_stored

    cls = PROTOCOLS.get(protocol)
    return cls.version, as_stored(cls(cls.make_config(parse_assignments(options))).config_dict())


def _stored_elsewhere(stored: list[dict], methods: list[str], protocol: str) -> str:
    """A hint naming the protocol options (those off the default), seeds and trial draws the store
    does hold for the missing methods."""
    from fewshot_bench.seeding import format_seeds
    from fewshot_bench.tables.store import changed_protocol_options, option_text

    def options(record: dict) -> str:
        return "".join(f" --protocol-set {k}={option_text(v)}" for k, v in changed_protocol_options(record).items())

    held = sorted({f"{r['method']}{options(r)} --seed {r['seed']} "
                   f"--trial-seed {format_seeds(r['trial_seeds'])}"
                   for r in stored if r["method"] in methods and r["protocol"] == protocol})
    return f"; stored on {protocol}: {', '.join(held)}" if held else ""
