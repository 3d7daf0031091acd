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
from .published import TABLE2, TABLE3
from .records import load_records, save_record, training_seconds, write_atomic
from .runner import RunSpec, build, run
from .stats import t_interval
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


def plan(table: str, preset: str) -> tuple[str, list[Cell]]:
    """The protocol and the cells of one table for a preset family (cpu or paper)."""
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
        return "verification", cells
    if table == "table2":
        cells = [Cell("1-Nearest Neighbor", "pixel_1nn", learns=False, paper=TABLE2["1-Nearest Neighbor"]),
                 Cell("Affine model", "affine", learns=False, paper=TABLE2["Affine model"]),
                 Cell("Siamese Neural Net (MLP)", "mlp_siamese", "cpu", paper=TABLE2["Siamese Neural Net (MLP)"]),
                 Cell("Convolutional Siamese Net", "conv_siamese", preset, paper=TABLE2["Convolutional Siamese Net"]),
                 Cell("Modified Hausdorff distance (beyond the table)", "mhd", learns=False),
                 Cell("Prototypical networks (beyond the paper)", "protonet", "cpu"),
                 Cell("Contrastive siamese (beyond the paper)", "contrastive_siamese", "cpu"),
                 Cell("Tree metric on protonet (beyond the paper)", "tree_metric", "cpu")]
        return "omniglot20", cells
    if table == "table3":
        return "mnist10", [
            Cell("1-Nearest Neighbor", "pixel_1nn", learns=False, paper=TABLE3["1-Nearest Neighbor"]),
            # the paper's MNIST network works on 35x35 images: cpu35 is the cpu preset at that size
            Cell("Convolutional Siamese Net", "conv_siamese", "cpu35" if preset == "cpu" else "mnist",
                 paper=TABLE3["Convolutional Siamese Net"])]
    raise UserError(f"unknown table {table!r}; valid: table1, table2, table3")


def specs(table: str, preset: str, seeds: int, data_root, work_dir) -> list[tuple[Cell, RunSpec]]:
    protocol, cells = plan(table, preset)
    trial_seeds = TRIAL_SEEDS if protocol != "verification" else None
    out = []
    for c in cells:
        for seed in range(seeds if c.learns else 1):
            out.append((c, RunSpec(c.method, protocol, c.preset, {k: str(v) for k, v in c.options.items()}, {},
                                   seed, trial_seeds, data_root, work_dir)))
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
              progress=None, command: str = "", poll: float = 5.0) -> pd.DataFrame:
    """Run what is missing, then write the table. ``progress`` has stage/start/advance."""
    planned = specs(table, preset, seeds, data_root, store / "checkpoints")
    keys = [spec_key(spec) for _, spec in planned]
    start = time.perf_counter()
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
                    progress.advance(f"{cell.method} seed {spec.seed}: stored")
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
                progress.advance(f"{cell.method} seed {spec.seed}: ran")
        pending = waiting
        if pending:
            time.sleep(poll)
    records = _records(store)
    table_frame = summarise(table, preset, planned, keys, records)
    by_key = {record_key(r): r for r in records}
    compute = sum(training_seconds(by_key[k], records) + by_key[k]["eval_seconds"] for k in keys)
    write_outputs(table, preset, seeds, table_frame, out_dir, time.perf_counter() - start, compute, command)
    return table_frame


def _records(store: Path) -> list[dict]:
    return load_records(store) if store.is_dir() else []


def summarise(table, preset, planned, keys, records) -> pd.DataFrame:
    by_key = {record_key(r): r for r in records}
    rows = {}
    for key, (cell, spec) in zip(keys, planned):
        rows.setdefault(cell.row, (cell, []))[1].append(by_key[key])
    out = []
    for row, (cell, runs) in rows.items():
        accs = [r["accuracy"] for r in runs]
        if len(runs) == 1:  # one run: its CI over trial sets
            mean, half, over = accs[0], runs[0]["ci95"], runs[0]["ci_unit"]
        else:
            (mean, half), over = t_interval(accs), "training seeds"
        out.append({"system": row, "method": cell.method, "preset": cell.preset or "-", "ours": round(100 * mean, 2),
                    "ci95": round(100 * half, 2), "ci_over": over, "seeds": len(runs),
                    "train_s": round(sum(training_seconds(r, records) for r in runs) / len(runs), 1),
                    "paper": cell.paper, "source": "our runs"})
    published = {"table2": TABLE2, "table3": TABLE3}.get(table, {})
    ours = {c.paper for c, _ in rows.values()}
    for system, figure in published.items():
        if figure not in ours:
            out.append({"system": f"{system} (published only, not run here)", "method": "", "preset": "",
                        "ours": None, "ci95": None, "ci_over": "", "seeds": 0, "train_s": None,
                        "paper": figure, "source": "published"})
    return pd.DataFrame(out)


def write_outputs(table, preset, seeds, frame: pd.DataFrame, out_dir: Path, seconds: float, compute: float,
                  command: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_dir / f"{table}.csv", index=False)
    lines = [f"# {table}: ours beside Koch et al. 2015", "",
             f"- command: `{command}`", f"- preset: {preset}; training seeds: {seeds}",
             f"- machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
             f"- time: {compute:.0f} s of training and evaluation in the runs below (as recorded; a reused "
             "checkpoint counts its original training); "
             f"this reproduce took {seconds:.0f} s (stored runs are reused)",
             f"- cells: mean ± 95% CI, a t-interval over {' / '.join(sorted(u for u in frame['ci_over'].dropna().unique() if u))}"
             " (one seed: the units of all its trial draws; several: the seeds)", "",
             "| system | ours (%) | paper (%) | seeds | train s |", "|---|---|---|---|---|"]
    for _, r in frame.iterrows():
        ours = "" if pd.isna(r["ours"]) else f"{r['ours']:.1f} ± {r['ci95']:.1f}"
        paper = "" if pd.isna(r["paper"]) else f"{r['paper']:.1f}"
        train = "" if pd.isna(r["train_s"]) else f"{r['train_s']:.0f}"
        lines.append(f"| {r['system']} | {ours} | {paper} | {r['seeds'] or ''} | {train} |")
    write_atomic(out_dir / f"{table}.md", "\n".join(lines) + "\n")
    plot(table, frame, out_dir / f"{table}.png")


def plot(table: str, frame: pd.DataFrame, path: Path) -> bool:
    """A bar chart of ours vs the paper; needs the optional matplotlib (``pip install .[plot]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ours = frame[frame["source"] == "our runs"]
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * len(ours)))
    y = range(len(ours))
    ax.barh([i + 0.2 for i in y], ours["ours"], height=0.4, xerr=ours["ci95"], label="ours")
    ax.barh([i - 0.2 for i in y], ours["paper"].fillna(0), height=0.4, label="Koch 2015")
    ax.set_yticks(list(y), ours["system"])
    ax.set_xlabel("accuracy (%)")
    ax.set_title(table)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: it would hide bars
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True

