"""The ``bench`` command: the parser assembled from one module per subcommand, and the entry
point that turns user mistakes into one line and exit status 2."""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from fewshot_bench import __version__
from fewshot_bench.cli import compare, data, listing, report, reproduce, run, show, speed, store, sweep, table, tune
from rich.markup import escape

from fewshot_bench.cli.common import console, use_device
from fewshot_bench.errors import UserError

SUBCOMMANDS = (listing, data, run, table, compare, show, report, reproduce, sweep, tune, store, speed)  # in --help's order
EPILOG = """examples:
  bench list
  bench data --data-root ../shared/data
  bench run --method pixel_1nn --protocol omniglot20 --trial-seed 0-9
  bench run --method mhd --protocol lake_runs
  bench table --out results/
  bench compare pixel_1nn mhd --protocol omniglot20 --gallery disagree.png
  bench show --method mhd --protocol omniglot20 --gallery failures.png
  bench report --out results/report
  bench tune --method conv_siamese --preset koch_cpu --trials 40
  bench store pack results/bridge-runs.jsonl.gz
  bench speed mhd
"""


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM ends bench as Ctrl-C does: training workers and Ray tasks are stopped on the way out
        signal.signal(signal.SIGTERM, _terminate)
    try:
        from fewshot_bench.registry import load_plugin_file

        for plugin in getattr(args, "plugin", None) or []:
            load_plugin_file(plugin)
        if hasattr(args, "device"):
            use_device(args)  # before any work: --device cuda without a GPU is one line
        return args.func(args) or 0
    except UserError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]; stored runs are complete, a rerun resumes trainings and the trial "
                      "draws a run had scored")
        return 130


def _terminate(signum, frame):
    raise KeyboardInterrupt


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="fewshot-bench: one-shot benchmarks of Koch et al. 2015, with honest confidence intervals.")
    parser.add_argument("--version", action="version", version=f"fewshot-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


if __name__ == "__main__":
    sys.exit(main())
