"""``bench tune``: Bayesian optimisation (Optuna TPE) of a method's options on validation data."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from fewshot_bench.cli.common import console, data_root_arg, device_arg, say, store_arg, writable_folder
from fewshot_bench.errors import UserError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "tune", help="choose a method's options by Bayesian optimisation on validation data (Optuna)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the method once per trial with options Optuna's TPE sampler suggests, score each "
                    "training by its best validation accuracy over epochs on the protocol's validation data "
                    "(validation alphabets or val classes: never a test class), prune trials that trail, and "
                    "write the best trial as a named preset. The study lives in the store: rerun the same "
                    "command to resume it; tunes sharing a store cooperate on one study.",
        epilog="examples:\n"
               "  bench tune --method conv_siamese --preset koch_cpu --protocol omniglot20 --trials 40\n"
               "  bench tune --method protonet --preset cpu_1shot --protocol vinyals \\\n"
               "      --protocol-set way=20 --space adam_lr=log:1e-4:1e-2 --trials 20 --on ray\n"
               "  bench tune --method mlp_siamese --preset koch_schedule --protocol omniglot20 \\\n"
               "      --pruner halving --min-epochs 2 --trials 40 --threads 1\n"
               "  bench tune --method conv_siamese --preset koch_cpu --protocol omniglot20 --report\n"
               "  bench tune --method conv_siamese --preset koch_cpu --protocol omniglot20 --trials 40 \\\n"
               "      --history results/tune/tune-conv_siamese-koch_cpu-omniglot20.csv   # a lost store")
    p.add_argument("--method", required=True, help="method name (see `bench list`)")
    p.add_argument("--preset", help="the preset whose other options every trial keeps")
    p.add_argument("--protocol", default="omniglot20", help="whose validation data scores trials: omniglot20 or "
                                                             "verification (validation alphabets), vinyals (val "
                                                             "classes); default omniglot20")
    p.add_argument("--protocol-set", dest="protocol_options", action="append", metavar="KEY=VALUE",
                   help="a protocol option (repeatable): the background and episode shape")
    p.add_argument("--set", dest="fixed", action="append", metavar="KEY=VALUE",
                   help="a method option every trial keeps (repeatable)")
    p.add_argument("--space", action="append", metavar="NAME=RANGE",
                   help="narrow, widen or add a range: log:LOW:HIGH, float:LOW:HIGH, int:LOW:HIGH[:STEP], "
                        "choice:A|B, or off (repeatable; the method's declared space otherwise)")
    p.add_argument("--space-file", metavar="SPACE.toml", help="ranges as TOML: NAME = \"log:1e-4:1e-1\"")
    p.add_argument("--trials", type=int, default=30, help="finished trials the study should hold (default 30); "
                                                          "a resumed study runs only the rest")
    p.add_argument("--val-trials", type=int, default=3200, help="validation trials scoring each epoch "
                                                                 "(default 3,200: Koch's 320 swing by ~2.5 points)")
    p.add_argument("--seed", type=int, default=0, help="training seed of every trial and the sampler's (default 0)")
    p.add_argument("--pruner", choices=["median", "halving", "hyperband"], default="median",
                   help="median (default): stop a trial trailing the median at its epoch; halving (successive "
                        "halving) or hyperband: multi-fidelity, epochs the resource: most trials stop after "
                        "--min-epochs, the best run to the preset's epochs")
    p.add_argument("--min-epochs", type=int, default=1, help="--pruner halving or hyperband: epochs every trial gets "
                                                             "before its first cut (default 1)")
    p.add_argument("--study", help="study name (default METHOD-PRESET-PROTOCOL)")
    p.add_argument("--preset-name", help="name of the preset the best trial becomes (default: the study's name)")
    p.add_argument("--threads", type=int, help="torch threads per trial (two tunes of one study with 1 each use "
                                               "2 cores best)")
    p.add_argument("--on", choices=["local", "ray"], default="local", help="trials here (default) or as Ray tasks")
    p.add_argument("--workers", type=int, default=None, help="--on ray: trials at once (default: CPUs / threads)")
    p.add_argument("--address", help="--on ray: join this Ray cluster instead of starting one")
    p.add_argument("--grace", type=int, default=180, help="seconds without a heartbeat after which a running "
                                                         "trial counts as dead and is queued again (default 180)")
    p.add_argument("--history", metavar="TUNE.csv", help="seed a new study with the trials of a history a tune "
                                                          "wrote (results/tune/tune-STUDY.csv), so a study whose "
                                                          "store was lost goes on without retraining them")
    p.add_argument("--report", action="store_true", help="write the study's files and preset, run no trial")
    p.add_argument("--out", default="results/tune", help="where the history CSV, figure and summary go "
                                                         "(default results/tune)")
    store_arg(p)
    device_arg(p)
    data_root_arg(p)
    p.set_defaults(func=command)


def read_space_file(path: str) -> dict:
    from fewshot_bench.config import read_toml

    data = read_toml(path, "--space-file")
    return {k: str(v) for k, v in data.get("space", data).items()}


def command(args) -> None:
    import os

    from fewshot_bench.config import parse_assignments
    from fewshot_bench.experiments import tune
    from fewshot_bench.records import store_dir

    if args.trials < 1:
        raise UserError(f"--trials must be >= 1, got {args.trials}")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if args.on == "local" and (args.address or args.workers):
        raise UserError("--address and --workers are for Ray: add --on ray")
    store = store_dir(args.store)
    writable_folder(str(store), "--store")
    writable_folder(args.out, "--out")
    changes = {**(read_space_file(args.space_file) if args.space_file else {}), **parse_assignments(args.space)}
    setup = tune.make_setup(args.method, args.preset, args.protocol, parse_assignments(args.protocol_options),
                               parse_assignments(args.fixed), changes, args.val_trials, args.seed,
                               Path(args.data_root) if args.data_root else None, args.pruner, args.min_epochs)
    tuning_trials = tune.check_data(setup)
    name = args.study or tune.study_name(setup)
    url = tune.storage_url(store, name)
    (store / "tune").mkdir(parents=True, exist_ok=True)
    if args.grace < 3:
        raise UserError(f"--grace must be >= 3 seconds, got {args.grace}")
    study = tune.open_study(url, name, setup, grace=args.grace)
    if args.history:
        imported = tune.import_history(study, setup, Path(args.history))
        say(f"tune {name}: {imported} trials imported from {args.history}")
    runner = tune.TrialRunner(setup, store, args.threads)
    left = tune.trials_left(study, args.trials)
    if not args.report:
        say(f"tune {name}: {args.trials - left} of {args.trials} trials finished; running {left} "
            f"{'here' if args.on == 'local' else 'on Ray'}, each scored on {tuning_trials:,} validation trials "
            f"(study: {url.removeprefix('sqlite:///')})")
        if left and args.on == "ray":
            workers = args.workers or max(1, (os.cpu_count() or 1) // (args.threads or 1))
            tune.optimize_on_ray(url, name, runner, args.trials, workers, args.address, args.grace)
        elif left:
            tune.optimize_here(study, runner, args.trials, progress=_printer())
    # the command that runs (or resumes) the study: a --report rerun names the tune, not itself
    command_line = "bench " + " ".join(shlex.quote(a) for a in _without(sys.argv[1:], "--report", "--history")) \
        if sys.argv[1:2] == ["tune"] else f"bench tune --method {args.method} --protocol {args.protocol}"
    written = tune.write_outputs(study, name, store, Path(args.out), args.preset_name or name, command_line)
    best = tune.best_trial(study)
    if best is not None:
        console.print(f"best: trial {best.number}, {100 * best.value:.2f}% validation "
                      f"(epoch {best.user_attrs.get('best_epoch')})", highlight=False)
    for kind, path in written.items():
        say(f"{kind}: {path}")


def _without(argv: list[str], flag: str, option: str) -> list[str]:
    """The command line less a flag and an option with its value (``--history X`` or ``--history=X``):
    the command that resumes the study."""
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif a != flag and not a.startswith(option + "="):
            kept.append(a)
    return kept


def _printer():
    def progress(study, trial):
        value = "" if trial.value is None else f" {100 * trial.value:.2f}%"
        say(f"trial {trial.number}: {trial.state.name.lower()}{value} "
            f"({trial.user_attrs.get('epochs', 0)} epochs, {trial.user_attrs.get('train_seconds', '-')} s)")
    return progress
