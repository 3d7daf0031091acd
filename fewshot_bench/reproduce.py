"""``bench reproduce tableN``: plan the runs a table of Koch 2015 needs, skip the ones already
stored, run the rest, and write results/tableN.{csv,md,png} beside the paper's figures.

Runs are keyed by what determines them (method, preset, full config, protocol and its
config, seed, trial seeds), so an interrupted reproduce resumes where it stopped; a lock
file per run key keeps two reproduces sharing a store from running the same run twice.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from .errors import UserError
from .published import TABLE2, TABLE2_TRIALS, TABLE3
from .records import load_records, save_record, training_seconds, write_atomic
from .runner import RunSpec, build, run
from . import tables
from .training import fingerprint

# Table 1: verification accuracy (%) by training pairs, without / with affine distortions x8
TABLE1 = {(30_000, 0): 90.61, (30_000, 8): 91.90, (90_000, 0): 91.54, (90_000, 8): 93.15,
          (150_000, 0): 91.63, (150_000, 8): 93.42}
TRIAL_SEEDS = list(range(10))
CPU_TABLE1_STEPS = 1000  # batches of 128 pairs per epoch for every cpu Table 1 cell (3 epochs: 384k pair views,
# 12.8 passes over the 30k pool, 2.6 over 150k; at 150 steps no cell saw its pool twice)


@dataclass
class Cell:
    row: str  # the system, as the table names it
    method: str
    preset: str | None = None
    options: dict = field(default_factory=dict)
    learns: bool = True
    paper: float | None = None


def plan(table: str, preset: str) -> tuple[tuple[str, ...], list[Cell]]:
    """The protocols and the cells of one table for a preset family (cpu or paper). Every cell is
    run on each protocol, the first one fitting the method and the others reusing its weights."""
    if preset not in ("cpu", "paper"):
        raise UserError(f"--preset must be cpu or paper, got {preset!r}")
    if table == "table1":
        # paper: each epoch passes over all pairs and copies (up to 1.35M views), beyond a CPU; cpu:
        # the same pools of pairs and distortions under one fixed budget of CPU_TABLE1_STEPS batches
        # per epoch, so the table shows what more pairs and distortions buy at equal compute
        base, budget = ("cpu_pairs", {"pair_steps": CPU_TABLE1_STEPS}) if preset == "cpu" else ("paper", {})
        cells = [Cell(f"{pairs // 1000}k pairs, distortions x{d}", "conv_siamese", base,
                      {"pairs": pairs, "distortions": d, **budget}, paper=figure)
                 for (pairs, d), figure in TABLE1.items()]
        return ("verification",), cells
    if table == "table2":
        # our draws (omniglot20) beside Lake's runs, the trials of the paper's baselines
        cells = [Cell("1-Nearest Neighbor", "pixel_1nn", learns=False, paper=TABLE2["1-Nearest Neighbor"]),
                 Cell("Affine model", "affine", learns=False, paper=TABLE2["Affine model"]),
                 # the paper's recipe for both twins: same/different pairs, cross-entropy
                 Cell("Siamese Neural Net (MLP)", "mlp_siamese", "cpu_pairs", paper=TABLE2["Siamese Neural Net (MLP)"]),
                 Cell("Convolutional Siamese Net", "conv_siamese", preset, paper=TABLE2["Convolutional Siamese Net"]),
                 # the MLP twin on the conv twin's cpu recipe (one-shot trials), and the conv twin on pairs:
                 # both twins under both recipes
                 Cell("Siamese MLP, cpu trial recipe (beyond the table)", "mlp_siamese", "cpu"),
                 *([Cell("Convolutional siamese, pair recipe (beyond the table)", "conv_siamese", "cpu_pairs")]
                   if preset == "cpu" else []),
                 Cell("Modified Hausdorff distance (beyond the table)", "mhd", learns=False),
                 Cell("Prototypical networks (beyond the paper)", "protonet", "cpu"),
                 Cell("Contrastive siamese (beyond the paper)", "contrastive_siamese", "cpu"),
                 Cell("Tree metric on protonet (beyond the paper)", "tree_metric", "cpu")]
        return ("omniglot20", "lake_runs"), cells
    if table == "table3":
        return ("mnist10",), [
            Cell("1-Nearest Neighbor", "pixel_1nn", learns=False, paper=TABLE3["1-Nearest Neighbor"]),
            # the paper's MNIST network works on 35x35 images: cpu35 is the cpu preset at that size
            Cell("Convolutional Siamese Net", "conv_siamese", "cpu35" if preset == "cpu" else "mnist",
                 paper=TABLE3["Convolutional Siamese Net"])]
    if table == "table4":
        from .table4 import plan as plan4

        return plan4(preset)
    raise UserError(f"unknown table {table!r}; valid: table1, table2, table3, table4")


DRAWN = ("omniglot20", "mnist10")  # protocols whose trials are drawn: evaluated on TRIAL_SEEDS


def specs(table: str, preset: str, seeds: int, data_root, work_dir) -> list[tuple[Cell, RunSpec]]:
    protocols, cells = plan(table, preset)
    out = []
    for c in cells:
        for seed in range(seeds if c.learns else 1):
            for entry in protocols:  # the first fits, the others reuse the stored weights
                protocol, options = (entry, {}) if isinstance(entry, str) else entry  # name or (name, options)
                out.append((c, RunSpec(c.method, protocol, c.preset, {k: str(v) for k, v in c.options.items()},
                                       dict(options), seed, TRIAL_SEEDS if protocol in DRAWN else None, data_root,
                                       work_dir)))
    return out


def run_key(method, preset, method_config, protocol, protocol_config, seed, trial_seeds) -> str:
    return fingerprint(method, preset, method_config, protocol, protocol_config, seed, list(trial_seeds))


def record_key(r: dict) -> str:
    return run_key(r["method"], r["preset"], r["method_config"], r["protocol"], r["protocol_config"], r["seed"],
                   r["trial_seeds"])


def spec_key(spec: RunSpec) -> str:
    method, protocol = build(spec)
    return run_key(spec.method, method.preset, method.config_dict(), spec.protocol, protocol.config_dict(),
                   spec.seed, spec.trial_seeds or [spec.seed])


class Lock:
    """An exclusive lock file naming its owner's pid; a dead owner's lock is taken over."""

    def __init__(self, path: Path):
        self.path = path

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                return True
            except FileExistsError:
                if self._owner_alive():
                    return False
                self.path.unlink(missing_ok=True)
        return False

    def _owner_alive(self) -> bool:
        try:
            os.kill(int(self.path.read_text() or 0), 0)
            return True
        except (ValueError, ProcessLookupError, FileNotFoundError):
            return False
        except PermissionError:
            return True

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def reproduce(table: str, preset: str, seeds: int, store: Path, out_dir: Path, data_root=None,
              progress=None, command: str = "", poll: float = 5.0, on: str = "local", address: str | None = None,
              retries: int = 2) -> pd.DataFrame:
    """Run what is missing (here, or ``on="ray"`` as the Ray tasks of ``bench sweep``), then write
    the table. ``progress`` has stage/start/advance."""
    planned = specs(table, preset, seeds, data_root, store / "checkpoints")
    keys = [spec_key(spec) for _, spec in planned]
    start = time.perf_counter()
    if on == "ray":
        run_on_ray(planned, keys, store, address, retries)
    if progress:
        progress.stage(f"reproduce {table} ({len(planned)} runs)")
        progress.start(len(planned))
    pending = list(zip(keys, planned))
    while pending:
        done = {record_key(r) for r in _records(store)}
        waiting = []
        for key, (cell, spec) in pending:
            if key in done:
                if progress:
                    progress.advance(f"{cell.method} on {spec.protocol}, seed {spec.seed}: stored")
                continue
            lock = Lock(store / "locks" / f"{key}.lock")
            if not lock.acquire():  # another reproduce is running it: come back later
                waiting.append((key, (cell, spec)))
                continue
            try:
                if key not in {record_key(r) for r in _records(store)}:
                    save_record(run(spec), store)
            finally:
                lock.release()
            if progress:
                progress.advance(f"{cell.method} on {spec.protocol}, seed {spec.seed}: ran")
        pending = waiting
        if pending:
            time.sleep(poll)
    records = _records(store)
    if table == "table4":
        from . import table4

        table_frame = table4.summarise(planned, keys, records)
        table4.write(table_frame, out_dir, time.perf_counter() - start, command)
        return table_frame
    table_frame = summarise(table, preset, planned, keys, records)
    by_key = {record_key(r): r for r in records}
    fits = {k for k, (_, spec) in zip(keys, planned) if spec.protocol == planned[0][1].protocol}
    # training counted once per fitted method (the other protocols reuse its weights)
    compute = sum((training_seconds(by_key[k], records) if k in fits else 0) + by_key[k]["eval_seconds"] for k in keys)
    write_outputs(table, preset, seeds, table_frame, out_dir, time.perf_counter() - start, compute, command)
    return table_frame


def run_on_ray(planned, keys, store: Path, address: str | None, retries: int) -> None:
    """The table's missing runs as sweep trainings (one per cell and seed, all its protocols), on Ray."""
    from .sweep import SweepProgress, Training, run_ray

    done = {record_key(r) for r in _records(store)}
    groups = {}
    for key, (cell, spec) in zip(keys, planned):
        groups.setdefault((cell.row, spec.seed), []).append((spec, key))
    trainings = [Training.of([s for s, _ in group], [k for _, k in group], done) for group in groups.values()]
    todo = [t for t in trainings if t.owed]
    with SweepProgress(None, len(trainings), len(trainings) - len(todo), enabled=False) as progress:
        run_ray(todo, store, progress, address, retries)
    failed = [f"{t.name}: {t.error}" for t in todo if t.error]
    if failed:
        raise UserError(f"{len(failed)} runs failed on Ray ({'; '.join(failed)}); the others are stored")


def _records(store: Path) -> list[dict]:
    return load_records(store) if store.is_dir() else []


PAPER_TRIALS = {"table2": TABLE2_TRIALS}  # which of a table's protocols each published figure was measured on
FAR = 3.0  # points from the paper beyond which a cell is marked and explained in results/README.md


def summarise(table, preset, planned, keys, records) -> pd.DataFrame:
    """One row per system: for the table's first protocol ``ours``/``ci95`` (mean ± CI), for each
    further protocol P the columns ``P``/``P_ci95``; ``paper`` and ``paper_trials`` (the protocol
    the paper's figure was measured on) and ``diff_vs_paper`` on those trials."""
    protocols = list(dict.fromkeys(spec.protocol for _, spec in planned))
    by_key = {record_key(r): r for r in records}
    rows = {}
    for key, (cell, spec) in zip(keys, planned):
        rows.setdefault(cell.row, (cell, {}))[1].setdefault(spec.protocol, []).append(by_key[key])
    trials_of = PAPER_TRIALS.get(table, {})
    out = []
    for row, (cell, runs) in rows.items():
        entry = {"system": row, "method": cell.method, "preset": cell.preset or "-"}
        for i, protocol in enumerate(protocols):
            mean, half, over = _cell(runs[protocol])
            name = "ours" if i == 0 else protocol
            entry.update({name: mean, f"{'ci95' if i == 0 else protocol + '_ci95'}": half})
            if i == 0:
                entry["ci_over"] = over
        if "lake_runs" in protocols:
            entry["lake_runs_minus_ours"] = round(entry["lake_runs"] - entry["ours"], 2)
        fits = runs[protocols[0]]
        entry.update({"seeds": len(fits), "train_s": round(sum(training_seconds(r, records) for r in fits) / len(fits), 1),
                      "paper": cell.paper, "paper_trials": None, "diff_vs_paper": None, "source": "our runs"})
        if cell.paper is not None:
            entry["paper_trials"] = trials_of.get(cell.row, protocols[0])  # a paper row is named as in the paper
            measured = entry["ours"] if entry["paper_trials"] == protocols[0] else entry[entry["paper_trials"]]
            entry["diff_vs_paper"] = round(measured - cell.paper, 2)
        out.append(entry)
    published = {"table2": TABLE2, "table3": TABLE3}.get(table, {})
    ours = {c.paper for c, _ in rows.values()}
    for system, figure in published.items():
        if figure not in ours:
            out.append({"system": f"{system} (published only, not run here)", "method": "", "preset": "",
                        "seeds": 0, "paper": figure, "paper_trials": trials_of.get(system, protocols[0]),
                        "source": "published"})
    return pd.DataFrame(out)


def _cell(runs: list[dict]) -> tuple[float, float, str]:
    """Accuracy (%), 95% half-width (``tables.cell``: one run's CI, several seeds' t-interval) and its unit."""
    c = tables.cell(runs)
    return round(c["accuracy"], 2), round(c["ci95"], 2), runs[0]["ci_unit"] if len(runs) == 1 else "training seeds"


def write_outputs(table, preset, seeds, frame: pd.DataFrame, out_dir: Path, seconds: float, compute: float,
                  command: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / f"{table}.csv", index=False)
    two = "lake_runs" in frame.columns
    lines = [f"# {table}: ours beside Koch et al. 2015", "",
             f"- command: `{command}`", f"- preset: {preset}; training seeds: {seeds}",
             f"- machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
             f"- time: {compute:.0f} s of training and evaluation in the runs below (as recorded; a reused "
             "checkpoint counts its original training, once per method); "
             f"this reproduce took {seconds:.0f} s (stored runs are reused)",
             f"- cells: mean ± 95% CI, a t-interval over {' / '.join(sorted(u for u in frame['ci_over'].dropna().unique() if u))}"
             " (one seed: the units of all its trial draws; several: the seeds)"]
    if two:
        lines.append("- columns: `omniglot20` = our 10 draws of 400 trials (trial seeds 0-9); `lake_runs` = Lake's "
                     "20 official runs (400 trials, CI over the 20 runs), scored with the same fitted weights; "
                     "gap = lake_runs - omniglot20")
    lines.append(f"- Δ paper: ours minus the paper's figure, on the trials that figure was measured on; "
                 f"† = more than {FAR:.0f} points away (explained in results/README.md)")
    header = ["system", "omniglot20 (%)" if two else "ours (%)"] + (["lake_runs (%)", "gap"] if two else []) + \
             ["paper (%)", "paper's trials", "Δ paper", "seeds", "train s"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in frame.iterrows():
        cells = [r["system"], _pm(r, "ours", "ci95")]
        if two:
            cells += [_pm(r, "lake_runs", "lake_runs_ci95"), _num(r.get("lake_runs_minus_ours"), "+.1f")]
        diff = r.get("diff_vs_paper")
        far = "" if pd.isna(diff) or abs(diff) <= FAR else " †"
        cells += [_num(r["paper"], ".1f"), r["paper_trials"] if isinstance(r["paper_trials"], str) else "",
                  _num(diff, "+.1f") + far, str(r["seeds"] or ""), _num(r.get("train_s"), ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += table_notes(table, frame)
    write_atomic(out_dir / f"{table}.md", "\n".join(lines) + "\n")
    plot(table, frame, out_dir / f"{table}.png")


def _num(value, fmt: str) -> str:
    return "" if value is None or pd.isna(value) else format(value, fmt)


def _pm(row, mean: str, half: str) -> str:
    return "" if pd.isna(row.get(mean)) else f"{row[mean]:.1f} ± {row[half]:.1f}"


def table_notes(table: str, frame: pd.DataFrame) -> list[str]:
    """What the reader needs to compare a table's cells with the paper's: which trials, how hard."""
    if table != "table2" or "lake_runs" not in frame.columns:
        return []
    ours = frame[frame["source"] == "our runs"]
    gaps = ", ".join(f"{m}{'' if p == '-' else f' ({p})'} {g:+.1f}"
                     for m, p, g in zip(ours["method"], ours["preset"], ours["lake_runs_minus_ours"]))
    far = ours[ours["diff_vs_paper"].abs() > FAR]
    return ["", "## Notes", "",
            "- Which trials: every figure of the paper's Table 2 but Koch's own two comes from Lake, "
            "Salakhutdinov & Tenenbaum 2013, measured on their 20-way within-alphabet task, the task Lake's 20 "
            "official runs publish: compare those with the `lake_runs` column. Koch's siamese networks (MLP "
            "58.3, conv 92.0) were scored on 400 trials of their own from the same 10 alphabets, which Koch "
            "did not publish: compare those with `omniglot20`, our draws of such trials.",
            "- The two kinds of trials differ: Lake's 20 runs are one fixed draw of 400 trials, queries and "
            "support from drawers 1-8 and the same 20 characters in both runs of an alphabet; `omniglot20` "
            "draws 20 characters per trial set afresh and two drawers from 17-20, ten draws of 400 trials.",
            f"- Difficulty gap, lake_runs minus omniglot20 with the same weights (points): {gaps}; "
            f"mean {ours['lake_runs_minus_ours'].mean():+.1f}.",
            f"- Cells more than {FAR:.0f} points from the paper on the paper's own trials: "
            + (", ".join(f"{s} ({d:+.1f})" for s, d in zip(far["system"], far["diff_vs_paper"])) or "none")
            + "; see results/README.md for what was measured about each."]


def plot(table: str, frame: pd.DataFrame, path: Path) -> bool:
    """A bar chart of ours (each protocol) vs the paper; needs matplotlib (``pip install .[plot]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ours = frame[frame["source"] == "our runs"]
    bars = [("ours", "ci95", "omniglot20 (our draws)" if "lake_runs" in frame else "ours")]
    if "lake_runs" in frame:
        bars.append(("lake_runs", "lake_runs_ci95", "lake_runs (Lake's 20 runs)"))
    bars.append(("paper", None, "Koch 2015"))
    height = 0.8 / len(bars)
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.22 * len(bars) * len(ours)))
    for i, (column, ci, label) in enumerate(bars):
        y = [k + (len(bars) - 1) / 2 * height - i * height for k in range(len(ours))]
        ax.barh(y, ours[column].fillna(0), height=height, xerr=ours[ci] if ci else None, label=label)
    ax.set_yticks(range(len(ours)), ours["system"])
    ax.invert_yaxis()
    ax.set_xlabel("accuracy (%)")
    ax.set_title(table)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: it would hide bars
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
