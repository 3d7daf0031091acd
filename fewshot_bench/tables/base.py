"""What every table of results shares: the ``TABLES`` registry, a table's contract (which cells
to run on which protocols, how to summarise and write them), and the cell statistics.

A table is one module in ``tables/`` with a registered `Table` subclass; ``bench
reproduce`` and the CLI's choices read the registry, so adding a table touches nothing else.
"""
from __future__ import annotations

import os
import platform
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fewshot_bench.records import did_not_learn, epoch_seconds, training_budget
from fewshot_bench.registry import Registry
from fewshot_bench.stats import mcnemar_exact, p_text, t_interval  # noqa: F401 (p_text: the tables' import)

FAR = 3.0  # points from the paper beyond which a cell is marked and explained in results/README.md


@dataclass
class Cell:
    """One row of a table: a method (preset and options) that is run on each of the table's protocols."""

    row: str  # the system, as the table names it
    method: str
    preset: str | None = None
    options: dict = field(default_factory=dict)
    learns: bool = True
    paper: float | None = None
    # the protocols this cell runs on (the table's, where None; the first fits, the others reuse), and
    # its training seeds (``--seeds``, where None): a table whose models differ by setting says so
    protocols: tuple | None = None
    seeds: int | None = None


@dataclass
class PlannedRun:
    """One run a table needs, with its record once stored (None while it is not)."""

    cell: Cell
    protocol: str
    protocol_options: dict
    seed: int
    record: dict | None = None


@dataclass
class Provenance:
    """How a table was made, for its header."""

    command: str
    preset: str
    seeds: int
    seconds: float  # wall time of this reproduce
    missing: int = 0  # planned runs not in the store (a table written with --stored)

    def missing_line(self, planned: int) -> list[str]:
        if not self.missing:
            return []
        return [f"- incomplete: {self.missing} of the {planned} planned runs are not yet in the store (written "
                "from the stored runs with `--stored`; the command above runs the rest and resumes where it stopped)"]


class Table:
    """A table of results. Subclasses set ``summary`` and implement the three steps."""

    name: str = "?"  # set by the registry
    summary: str = ""

    def plan(self, preset: str, stored=None) -> tuple[tuple, list[Cell]]:
        """The protocols (names, or (name, options) pairs) and the cells of this table for a preset
        family. Every cell runs on each protocol: the first fits the method, the others reuse its weights.

        ``stored(cell, protocol, options, seed)`` gives a planned run's record, or None while it is not
        in the store (``stored`` is None before any run): a table whose later cells depend on its
        earlier results (a learning rate chosen on validation runs) plans them once those are stored,
        and ``bench reproduce`` plans again after each round until nothing new is planned."""
        raise NotImplementedError

    def summarise(self, runs: list[PlannedRun], records: list[dict]) -> pd.DataFrame:
        """One row per system from the planned runs (``records``: the whole store, to find what a
        reused checkpoint's training cost)."""
        raise NotImplementedError

    def write(self, frame: pd.DataFrame, runs: list[PlannedRun], records: list[dict], out_dir: Path,
              about: Provenance) -> None:
        """``<name>.csv``, ``.md`` and (with matplotlib) ``.png`` in ``out_dir``."""
        raise NotImplementedError

    # what ``bench table`` shows of a table beside our runs: (column title, protocols, figures, our method ->
    # the published row it reproduces); None for a table that adds no paper column there
    store_figures: tuple | None = None


TABLES = Registry("table", "fewshot_bench.tables", "fewshot_bench.tables", Table)


# ------------------------------------------------------------------ cells

def cell(records: list[dict]) -> dict:
    """One table cell from the runs of one (method, preset, protocol): a single run shows its
    CI over trial sets; several training seeds show mean and t-interval over seeds. ``learning``:
    "did not learn at N TFLOP" where a training failed the learning check, else None."""
    flag = learning_flag(records)
    if len(records) == 1:
        r = records[0]
        return {"accuracy": 100 * r["accuracy"], "ci95": 100 * r["ci95"], "seeds": 1,
                "trials": r["n_trials"], "draws": len(r["trial_seeds"]), "learning": flag}
    mean, half = t_interval([r["accuracy"] for r in records])
    return {"accuracy": 100 * mean, "ci95": 100 * half, "seeds": len(records),
            "trials": sum(r["n_trials"] for r in records), "draws": sum(len(r["trial_seeds"]) for r in records),
            "learning": flag}


def learning_flag(records: list[dict]) -> str | None:
    """"did not learn at N TFLOP" where any of the runs' trainings failed the learning check
    (``records.learning_check``): such a cell is no figure of its method, and tables show the flag
    where its accuracy would stand."""
    return next((flag for flag in map(did_not_learn, records) if flag), None)


def withhold(entry: dict, figures: list[str]) -> dict:
    """A table row whose training did not learn: its figures blanked (the first kept apart as
    ``accuracy_not_learned``, what the untrained network's level scored), the flag in ``learning``."""
    return {**entry, "accuracy_not_learned": entry.get(figures[0]), **{k: None for k in figures if k in entry}}


def rounded_cell(runs: list[dict]) -> tuple[float, float, str]:
    """Accuracy (%), 95% half-width (`cell`) rounded for a table, and what the interval is over."""
    c = cell(runs)
    return round(c["accuracy"], 2), round(c["ci95"], 2), runs[0]["ci_unit"] if len(runs) == 1 else "training seeds"


# the ↑ of a TFLOP cell, as the tables' legends define it (records.still_improving decides it)
IMPROVING_MARK = ("↑ = still improving when it stopped: its best validation accuracy in the last quarter of epochs "
                  "beat the best before by more than the validation's 95% interval")


# what a row flagged by the learning check means, as the tables' legends say it
LEARNING_LEGEND = ("did not learn at N TFLOP: a training whose best validation accuracy stayed inside the untrained "
                   "network's 95% interval on the same trials, or whose loss never fell 1% below a constant guess's; "
                   "its accuracy is no figure of the method (the CSV keeps it apart as "
                   "`accuracy_not_learned`) and is left out of the figure and of the paired claims")


def verdict(value) -> bool | None:
    """A still-improving verdict as read back from a frame: bool (or numpy bool), else None (unknown)."""
    return bool(value) if isinstance(value, (bool, np.bool_)) else None


def any_improving(verdicts: list) -> bool | None:
    """True if any training was still improving, None if none could tell (all too short)."""
    known = [v for v in verdicts if v is not None]
    return any(known) if known else None


def alphabet_columns(records: list[dict]) -> dict:
    """Koch's task: the 95% half-width over the 10 test alphabets (``ci95_alphabets``, mean over
    seeds), beside the interval over trial sets; nothing for other protocols."""
    halves = [r["ci95_alphabets"] for r in records if "ci95_alphabets" in r]
    return {"ci95_alphabets": round(100 * sum(halves) / len(halves), 2)} if halves else {}


def correct_by_row(runs: list[PlannedRun], keep) -> dict[str, dict[int, list[int]]]:
    """Per row and training seed, the per-trial correctness of the stored runs ``keep(run)`` selects."""
    out: dict[str, dict[int, list[int]]] = {}
    for run in runs:
        if run.record is not None and keep(run):
            out.setdefault(run.cell.row, {})[run.seed] = [c for d in run.record["draws"] for c in d["correct"]]
    return out


def by_accuracy(correct: dict[str, dict[int, list[int]]]) -> list[str]:
    """Rows from the most to the least accurate, all their seeds' trials pooled."""
    return sorted(correct, key=lambda row: -sum(map(sum, correct[row].values())) / sum(map(len, correct[row].values())))


def paired_test(a: dict[int, list[int]], b: dict[int, list[int]]) -> dict:
    """McNemar's exact test of two rows on identical trials: seed k against seed k, where both have it."""
    seeds = sorted(set(a) & set(b))
    return mcnemar_exact([c for s in seeds for c in a[s]], [c for s in seeds for c in b[s]])


def accuracy_by_seed(runs: list[PlannedRun], row: str, protocol: str) -> dict[int, float]:
    """A row's stored accuracy (%) on one protocol, per training seed."""
    return {r.seed: 100 * r.record["accuracy"] for r in runs
            if r.cell.row == row and r.protocol == protocol and r.record is not None}


def step_columns(links: list[PlannedRun], before: str, after: str, protocol: str) -> dict:
    """The step from link ``before`` to ``after`` on one protocol: per-seed paired differences."""
    a, b = accuracy_by_seed(links, before, protocol), accuracy_by_seed(links, after, protocol)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return {}
    differences = [b[s] - a[s] for s in seeds]
    mean, half = t_interval(differences) if len(seeds) > 1 else (differences[0], float("nan"))
    correct = correct_by_row(links, lambda r: r.protocol == protocol)
    test = paired_test(correct[after], correct[before])
    return {f"{protocol}_step": round(mean, 2), f"{protocol}_step_ci95": round(half, 2),
            f"{protocol}_p": test["p_value"], f"{protocol}_paired_seeds": len(seeds)}


def budget_columns(fits: list[dict]) -> dict:
    """A learned row's training budget (its first seed's: the seeds train alike) and whether any
    seed's training was still improving at its end (``records.training_budget``)."""
    budgets = [b for b in (training_budget(r) for r in fits) if b is not None]
    if not budgets:
        return {}
    return {"steps": budgets[0]["steps"], "images": budgets[0]["images"], "gflop": round(budgets[0]["gflop"], 1),
            "still_improving": any_improving([b["still_improving"] for b in budgets])}


def machine_line(runs: list[PlannedRun]) -> str:
    """The machine writing the table and, where its runs are stored, what they ran on: a pack
    (``bench store``) brings runs from other machines, a CPU's or a GPU's."""
    line = f"- machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    where = Counter(map(ran_on, stored_records(runs)))
    if where:
        line += "; its runs ran on " + ", ".join(f"{kind} ({n})" for kind, n in where.most_common())
    return line


def compute_line(runs: list[PlannedRun]) -> str:
    """What the stored runs cost, summed over runs however many machines and sessions ran them:
    trainings (a run that reused another's weights is not one), their epochs' own seconds (a
    training resumed across processes counts each epoch once), and the seconds spent scoring."""
    records = stored_records(runs)
    trainings = [r["training"]["history"] for r in records
                 if r.get("training") and not r["training"].get("reused_checkpoint")]
    training, scoring = sum(map(epoch_seconds, trainings)), sum(r.get("eval_seconds", 0.0) for r in records)
    plural = "s" * (len(trainings) != 1)
    return (f"- compute of the {len(records)} stored runs: {len(trainings)} training{plural}, {duration_text(training)} "
            f"of training epochs and {duration_text(scoring)} of scoring (sums, whatever ran side by side)")


def stored_records(runs: list[PlannedRun]) -> list[dict]:
    """The planned runs' stored records, each once: cells planned alike share one (the bridge's
    pair link at its chosen rate is its rate grid's run)."""
    return list({r.record.get("run_id") or id(r.record): r.record for r in runs if r.record is not None}.values())


def duration_text(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def ran_on(record: dict) -> str:
    """A run's device in a few words: its GPU, else its CPU's architecture and vector ISA."""
    env = record.get("environment", {})
    return env.get("gpu") or f"{(env.get('machine') or '?').split()[0]} CPU, {env.get('cpu_isa') or '?'}"


def num(value, fmt: str) -> str:
    return "" if value is None or pd.isna(value) else format(value, fmt)


def plus_minus(row, mean: str, half: str) -> str:
    return "" if pd.isna(row.get(mean)) else f"{row[mean]:.1f} ± {row[half]:.1f}"


def pyplot():
    """matplotlib's pyplot on the Agg backend, or None without matplotlib (``pip install .[plot]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt
