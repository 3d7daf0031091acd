"""``bench speed``: the project's benchmarks."""
from __future__ import annotations

from fewshot_bench.cli.common import data_root_arg, device_arg, out


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("speed", help="benchmarks: data loading, mhd vs scipy, scoring threads, training "
                                     "throughput, evaluation, sweep here vs on Ray",
                              description="The project's benchmarks, measured on this machine in one run each "
                                          "(medians and ratios); the numbers print as JSON.")
    p.add_argument("name", choices=["load", "mhd", "threads", "train", "eval", "sweep"],
                   help="load: Omniglot cold and warm; mhd: batched vs scipy; threads: scoring beside a busy "
                        "core, on every thread vs the free ones; train: training steps; eval: a column scored "
                        "(--protocol); sweep: here vs on Ray")
    p.add_argument("--preset", help="conv_siamese preset for train (default cpu) and eval (default paper)")
    p.add_argument("--method", default="conv_siamese", help="train: the learned method whose steps are timed "
                                                             "(default conv_siamese)")
    p.add_argument("--protocol", choices=["omniglot20", "vinyals"], default="omniglot20",
                   help="eval: the 400 omniglot20 trials (default) or Table 4's slowest column, 1,000 "
                        "20-way 5-shot Vinyals episodes")
    device_arg(p)
    data_root_arg(p)
    p.set_defaults(func=command)


def command(args) -> None:
    from fewshot_bench.experiments import speed
    from fewshot_bench.data.datasets import data_root

    root = data_root(args.data_root)
    kwargs = {"preset": args.preset} if args.preset and args.name in ("train", "eval") else {}
    if args.name == "train":
        kwargs["method"] = args.method
    if args.name == "eval":
        kwargs["protocol"] = args.protocol
    result = getattr(speed, {"eval": "evaluate"}.get(args.name, args.name))(root, **kwargs)
    out.print_json(data=result)
