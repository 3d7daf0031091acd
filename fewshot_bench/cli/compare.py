"""``bench compare A B``: two methods on the same trials, with McNemar's exact test."""
from __future__ import annotations

from pathlib import Path

from fewshot_bench.cli.run import execute
from fewshot_bench.cli.common import data_root_arg, out, plugin_arg, print_results, say, store_arg


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("compare", help="two methods on the same trials, with an exact McNemar test")
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
    p.set_defaults(func=command)


def command(args) -> None:
    from fewshot_bench.records import load_records, store_dir
    from fewshot_bench.seeding import parse_seeds
    from fewshot_bench.stats import mcnemar_exact

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
        from fewshot_bench.pictures.failures import disagreements
        from fewshot_bench.pictures.figures import comparison_gallery, source_for

        only_a, only_b = disagreements(*records)
        path = comparison_gallery(*records, only_a.head(args.limit), only_b.head(args.limit),
                                  source_for(records[0], args.data_root), Path(args.gallery))
        say(f"wrote {path}")
