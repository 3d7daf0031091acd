"""What the subcommands share: the two consoles, the common arguments, the results table."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fewshot_bench.errors import UserError

console = Console(stderr=True)  # human output on stderr, so --json's stdout stays machine-readable
out = Console()


def say(text: str) -> None:
    """A message on stderr, printed verbatim (paths and names may hold [brackets]) and never wrapped
    (a path stays one line to copy)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def writable_file(path: str, option: str) -> None:
    """Check before any work that a file can be written at ``path``: not a folder, and its folder
    exists or can be made, and takes a new file (tried, not guessed: root may write anywhere but
    /proc)."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file path such as {target / 'picture.png'}")
    _try_writing(target.parent, option, path)


def writable_folder(path: str, option: str) -> None:
    """Check before any work that ``path`` is (or can be made) a folder to write files in."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise UserError(f"{option} {path} is a file; give a folder (it is made if missing)")
    _try_writing(target, option, path)


def _try_writing(folder, option: str, path: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot write in {folder} ({exc.strerror or exc}); "
                        "choose a folder you can write to") from None


class RegistryNames:
    """argparse choices read from a registry only when argparse needs them (checking the value, a
    subcommand's --help), so ``bench --help`` imports no table, method or protocol."""

    def __init__(self, module: str, registry: str):
        self.module, self.registry = module, registry

    def names(self) -> list[str]:
        import importlib

        return getattr(importlib.import_module(self.module), self.registry).names()

    def __contains__(self, name) -> bool:
        return name in self.names()

    def __iter__(self):
        return iter(self.names())


def data_root_arg(p) -> None:
    p.add_argument("--data-root", help="datasets folder (default: $FEWSHOT_BENCH_DATA, then a per-user cache)")


def store_arg(p) -> None:
    p.add_argument("--store", help="results store folder (default: $FEWSHOT_BENCH_STORE, then ./runs)")


def writable_store(args) -> Path:
    """The store a writing subcommand will write in, checked before any work (see writable_folder)."""
    from fewshot_bench.records import store_dir

    store = store_dir(args.store)
    writable_folder(str(store), "--store" if args.store else f"the store ({store}, from $FEWSHOT_BENCH_STORE or "
                                                             "the default ./runs; or pass --store)")
    os.environ["FEWSHOT_BENCH_STORE"] = str(store)  # tuned presets are looked up in the store this command uses
    return store


def device_arg(p) -> None:
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where networks train and score: auto (default: a CUDA GPU where there is one, else the "
                        "CPU), cpu or cuda; a config that names its device keeps it")


def use_device(args) -> None:
    """``--device``, checked before any work (cuda without a CUDA GPU is one line, exit 2) and handed to
    every network method whose config says ``device=auto``: where it runs is not part of what it is, so
    run and training keys stay the same on either."""
    from fewshot_bench.learning.devices import choose_device

    choose_device(getattr(args, "device", "auto"))


def plugin_arg(p) -> None:
    p.add_argument("--plugin", action="append", metavar="FILE.py",
                   help="load methods/protocols from a Python file (repeatable)")


RESULT_COLUMNS = ("method", "protocol", "accuracy", "trials", "draws", "spread", "train s", "eval s")
DROP_FIRST = ("spread", "draws", "train s", "eval s", "trials")  # when the console is narrow


def print_results(records: list[dict], stream: Console = out) -> None:
    """The results table, on stdout (results) unless ``stream`` says otherwise; names and accuracies are never cut or wrapped: on a narrow console
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
        natural = stream.measure(table, options=stream.options.update_width(10_000)).maximum
        if natural <= stream.width:
            break
    stream.print(table)
    spread = "; spread = std of accuracy over draws" if "spread" in columns else ""
    stream.print(f"[dim]accuracy ± 95% CI over {records[0]['ci_unit']}{spread}[/]")
    for r in records:  # Koch's task: what the accuracy says about new alphabets
        if "ci95_alphabets" in r:
            stream.print(f"[dim]{r['method']} on {r['protocol']}: ± {100 * r['ci95_alphabets']:.2f} over its "
                         f"{r['alphabets']} alphabets (what generalises to new alphabets)[/]", soft_wrap=True)
