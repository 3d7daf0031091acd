"""``bench reproduce TABLE``: plan the runs a table needs (``tables.TABLES``), skip the ones already
stored, run the rest, and write results/TABLE.{csv,md,png} beside the paper's figures.

Runs are keyed by what determines them (method, preset, full config, protocol and its
config, seed, trial seeds), so an interrupted reproduce resumes where it stopped; a lock
file per run key keeps two reproduces sharing a store from running the same run twice.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from fewshot_bench.api import PROTOCOLS
from fewshot_bench.errors import UserError
from fewshot_bench.experiments.runner import RunSpec, by_training, run, spec_key
from fewshot_bench.experiments.sweep import SweepProgress, Training, run_ray
from fewshot_bench.keys import record_key
from fewshot_bench.records import load_records, save_record, stored_keys
from fewshot_bench.tables.base import TABLES, Cell, PlannedRun, Provenance

TRIAL_SEEDS = list(range(10))  # the draws of a protocol whose trials are drawn anew (Protocol.redrawn)


def specs(table: str, preset: str, seeds: int, data_root, work_dir,
          records: list[dict] | None = None) -> list[tuple[Cell, RunSpec]]:
    """The runs of a table in the order they run: every cell's first seed before any cell's second.
    ``records`` (the store's runs) let the table plan cells that depend on stored results."""
    by_key = None if records is None else {record_key(r): r for r in records}

    def stored(cell: Cell, protocol: str, options: dict, seed: int) -> dict | None:
        return by_key.get(spec_key(_spec(cell, protocol, options, seed, data_root, work_dir)))

    protocols, cells = TABLES.get(table)().plan(preset, None if by_key is None else stored)
    out = []
    for c in cells:
        n_seeds = c.seeds if c.seeds is not None else seeds if c.learns else 1
        for seed in range(n_seeds):
            for entry in c.protocols or protocols:  # the first fits, the others reuse the stored weights
                protocol, options = (entry, {}) if isinstance(entry, str) else entry  # name or (name, options)
                out.append((c, _spec(c, protocol, options, seed, data_root, work_dir)))
    return sorted(out, key=lambda pair: pair[1].seed)  # stable: cells keep their order within a seed


def _spec(c: Cell, protocol: str, options: dict, seed: int, data_root, work_dir) -> RunSpec:
    trial_seeds = TRIAL_SEEDS if PROTOCOLS.get(protocol).redrawn else None
    return RunSpec(c.method, protocol, c.preset, {k: str(v) for k, v in c.options.items()}, dict(options), seed,
                   trial_seeds, data_root, work_dir)


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
              retries: int = 2, run_missing: bool = True) -> pd.DataFrame:
    """Run what is missing (here, or ``on="ray"`` as the Ray tasks of ``bench sweep``), then write
    the table; ``run_missing=False`` writes it from the stored runs alone (missing cells empty).
    ``progress`` has stage/start/advance."""
    maker = TABLES.get(table)()
    start = time.perf_counter()

    def plan():  # the table's runs, their keys, and the store's records they were planned from
        records = _records(store)
        planned = specs(table, preset, seeds, data_root, store / "checkpoints", records)
        return planned, [spec_key(spec) for _, spec in planned], records

    planned, keys, records = plan()
    while run_missing:  # a round per plan: a table may plan more once some results are stored
        if on == "ray":
            run_on_ray(planned, keys, store, address, retries)
        _run_here(table, planned, keys, store, progress, poll, grown=lambda: bool(set(plan()[1]) - set(keys)))
        before = set(keys)
        planned, keys, records = plan()
        if set(keys) <= before <= {record_key(r) for r in records}:
            break  # nothing new planned, everything stored
    by_key = {record_key(r): r for r in records}
    runs = [PlannedRun(cell, spec.protocol, spec.protocol_options, spec.seed, by_key.get(key))
            for key, (cell, spec) in zip(keys, planned)]
    frame = maker.summarise(runs, records)
    maker.write(frame, runs, records, out_dir, Provenance(command, preset, seeds, time.perf_counter() - start,
                                                          missing=sum(r.record is None for r in runs)))
    return frame


def _run_here(table: str, planned, keys, store: Path, progress, poll: float, grown=lambda: False) -> None:
    """Run the planned runs the store lacks, one training at a time: the runs of one network (one
    cell's protocols, or cells that differ only in how it is scored, such as a curve's snapshots) go
    to one process in plan order (the first fits, the others reuse its weights), so two reproduces
    never train the same network side by side. After each training, ``grown()`` says whether the table now
    plans more (a choice its new results made): then the round stops, so the new plan's order holds."""
    if progress:
        progress.stage(f"reproduce {table} ({len(planned)} runs)")
        progress.start(len(planned))
    pending = by_training([(key, cell, spec) for key, (cell, spec) in zip(keys, planned)], lambda run: run[2])
    while pending:
        done = stored_keys(store)
        waiting = []
        for group in pending:
            missing = [(key, cell, spec) for key, cell, spec in group if key not in done]
            if progress:
                for key, cell, spec in group:
                    if key in done:
                        progress.advance(f"{cell.method} on {spec.protocol}, seed {spec.seed}: stored")
            if not missing:
                continue
            lock = Lock(store / "locks" / f"{group[0][0]}.lock")
            if not lock.acquire():  # another reproduce is running this training: come back later
                waiting.append(missing)
                continue
            try:
                for key, cell, spec in missing:
                    ran = key not in stored_keys(store)  # else another reproduce stored it meanwhile
                    if ran:
                        save_record(run(spec), store)
                    if progress:
                        progress.advance(f"{cell.row} ({cell.method}) on {spec.protocol}, seed {spec.seed}: "
                                         + ("ran" if ran else "stored"), log=ran)
            finally:
                lock.release()
            if grown():
                return
        pending = waiting
        if pending:
            time.sleep(poll)


def run_on_ray(planned, keys, store: Path, address: str | None, retries: int) -> None:
    """The table's missing runs as sweep trainings (one per network, all the runs that score it), on Ray."""
    done = stored_keys(store)
    groups = by_training([(spec, key) for key, (_, spec) in zip(keys, planned)], lambda run: run[0])
    trainings = [Training.of([s for s, _ in group], [k for _, k in group], done) for group in groups]
    todo = [t for t in trainings if t.owed]
    with SweepProgress(None, len(trainings), len(trainings) - len(todo), enabled=False) as progress:
        run_ray(todo, store, progress, address, retries)
    failed = [f"{t.name}: {t.error}" for t in todo if t.error]
    if failed:
        raise UserError(f"{len(failed)} runs failed on Ray ({'; '.join(failed)}); the others are stored")


def _records(store: Path) -> list[dict]:
    return load_records(store) if store.is_dir() else []
