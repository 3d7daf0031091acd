"""``bench sweep``: methods x presets x settings x training seeds x protocols, run here one after
another (``--on local``) or as Ray tasks across a cluster (``--on ray``), resumable.

The unit of work is a *training*: one method, preset, grid point and seed, evaluated on every
protocol of the sweep with the same fitted weights. On Ray each training is one task that
reserves the CPUs its config uses (an ensemble's members train side by side), and grid points
that fit one network (they differ in how it is scored only) share a task, so it is trained
once and the later points reuse its weights; the worker trains
in a private folder, seeded with the driver's checkpoints of that method, and returns its
records and checkpoints; the driver alone writes the store. Runs already stored are skipped
(the run keys of ``bench reproduce``), so a rerun resumes where a sweep stopped.
"""
from __future__ import annotations

import itertools
import os
import signal
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fewshot_bench.api import PROTOCOLS
from fewshot_bench.config import parse_assignments, read_toml
from fewshot_bench.errors import UserError
from fewshot_bench.records import load_records, save_record, stored_keys, write_atomic
from fewshot_bench.experiments.runner import RunSpec, build, by_training, run, spec_key
from fewshot_bench.keys import record_key
from fewshot_bench.seeding import parse_seeds
from fewshot_bench.stats import t_interval


@dataclass
class Training:
    """One fit (method, preset, grid point, seed) and the runs evaluating it, one per protocol."""

    method: str
    preset: str | None
    options: dict
    seed: int
    specs: list[RunSpec]  # one per protocol
    keys: list[str]  # their run keys
    owed: list[RunSpec]  # the runs not yet stored
    cpus: int = 1
    gpus: int = 0
    error: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, specs: list[RunSpec], keys: list[str], done: set[str]) -> "Training":
        """The training behind ``specs`` (one method, preset, options and seed; one spec per protocol),
        owing the runs whose keys are not ``done``, reserving what its method's config needs."""
        first = specs[0]
        resources = build(first)[0].resources()
        return cls(first.method, first.preset, dict(first.method_options), first.seed, specs, keys,
                   [s for s, k in zip(specs, keys) if k not in done], resources["cpus"], resources["gpus"])

    @property
    def name(self) -> str:
        grid = " ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.method}{f' ({self.preset})' if self.preset else ''}{f' {grid}' if grid else ''} seed {self.seed}"


# ---------------------------------------------------------------- the grid

def parse_grid(items: list[str] | None) -> dict[str, list[str]]:
    """``["adam_lr=1e-3,2e-3", "epochs=14,28"]`` -> {"adam_lr": ["1e-3", "2e-3"], "epochs": ["14", "28"]}."""
    grid = {}
    for key, values in parse_assignments(items).items():
        grid[key] = [v.strip() for v in values.split(",") if v.strip()]
        if not grid[key]:
            raise UserError(f"--grid {key}= lists no values; use e.g. --grid {key}=1,2")
    return grid


def read_spec(path: Path) -> dict:
    """A sweep as TOML: method, preset, protocol (strings or lists), seeds, trial_seeds, [grid]."""
    spec = read_toml(path, "--spec")
    unknown = set(spec) - {"method", "preset", "protocol", "seeds", "trial_seeds", "grid"}
    if unknown:
        raise UserError(f"{path}: unknown keys {sorted(unknown)}; valid: method, preset, protocol, seeds, "
                        "trial_seeds, grid")
    listed = lambda v: [str(x) for x in (v if isinstance(v, list) else [v])]  # noqa: E731
    return {"methods": listed(spec.get("method", [])), "presets": listed(spec.get("preset", [])),
            "protocols": listed(spec.get("protocol", [])), "seeds": str(spec.get("seeds", "0")),
            "trial_seeds": str(spec["trial_seeds"]) if "trial_seeds" in spec else None,
            "grid": {k: listed(v) for k, v in (spec.get("grid") or {}).items()}}


def plan(methods, presets, protocols, seeds, trial_seeds, grid, store: Path, data_root=None) -> list[Training]:
    """Every training of the grid, each with the runs it still owes (stored runs left out)."""
    if not methods or not protocols:
        raise UserError("a sweep needs at least one --method and one --protocol")
    for name in protocols:
        PROTOCOLS.get(name)  # unknown names fail here, listing the valid ones
    done = stored_keys(store)
    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]
    trainings = []
    for method, preset, options, seed in itertools.product(methods, presets or [None], points, parse_seeds(seeds)):
        specs = [RunSpec(method, p, preset, dict(options), {}, seed,
                         None if trial_seeds is None else parse_seeds(trial_seeds), data_root,
                         store / "checkpoints") for p in protocols]
        keys = [spec_key(s) for s in specs]  # builds each config: a bad preset or option fails here
        trainings.append(Training.of(specs, keys, done))
    return trainings


# ---------------------------------------------------------------- one training, wherever it runs

def run_training(specs: list[RunSpec], threads: int) -> list[dict]:
    """Fit once and evaluate on each protocol (the later ones reuse the stored weights)."""
    import torch

    torch.set_num_threads(max(1, threads))  # the same on every executor: identical results
    return [run(spec) for spec in specs]


def _remote_training(specs: list[RunSpec], threads: int, names: list[str], *contents: bytes):
    """On a Ray worker: train in a private folder seeded with the driver's checkpoints of the
    method (``names`` and their ``contents``: top-level arguments, so Ray resolves them from its
    object store); return the records and every checkpoint written or changed there."""
    with tempfile.TemporaryDirectory(prefix="fewshot-sweep-") as folder:
        work = Path(folder)
        for name, content in zip(names, contents):
            (work / name).write_bytes(content)
        before = {p.name: p.stat().st_mtime_ns for p in work.iterdir()}
        # the driver's data root where this node has it too, else the node's own ($FEWSHOT_BENCH_DATA)
        local = [RunSpec(**{**s.__dict__, "work_dir": work,
                            "data_root": s.data_root if s.data_root and Path(s.data_root).is_dir() else None})
                 for s in specs]
        records = run_training(local, threads)
        import ray

        for record in records:  # which node of the cluster ran it
            record["environment"]["ray_node"] = ray.get_runtime_context().get_node_id()
        changed = {p.name: p.read_bytes() for p in work.iterdir()
                   if p.suffix == ".pt" and before.get(p.name) != p.stat().st_mtime_ns}
    return records, changed


# ---------------------------------------------------------------- executors

class SweepProgress:
    """One bar over trainings: done / running / failed / skipped, and the last run's accuracy."""

    def __init__(self, console, total: int, skipped: int, enabled: bool = True):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.counts = {"done": 0, "running": 0, "failed": 0, "skipped": skipped}
        self.bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[info]}"), console=console, disable=not enabled)
        self.task = self.bar.add_task("sweep", total=total, completed=skipped, info="")

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def update(self, event: str, advance: int = 0, last: str = "") -> None:
        if event:
            self.counts[event] += 1
        info = " / ".join(f"{v} {k}" for k, v in self.counts.items()) + (f"  {last}" if last else "")
        self.bar.update(self.task, advance=advance, info=info)


def _store_results(records: list[dict], checkpoints: dict[str, bytes], store: Path) -> None:
    for name, content in checkpoints.items():
        write_atomic(store / "checkpoints" / name, content)
    for record in records:
        save_record(record, store)


def _scores(records: list[dict]) -> str:
    return ", ".join(f"{r['protocol']} {100 * r['accuracy']:.1f}%" for r in records)


def run_local(trainings: list[Training], store: Path, progress: SweepProgress) -> None:
    for t in trainings:
        progress.counts["running"] = 1
        progress.update("", last=f"{t.name}: training")
        progress.counts["running"] = 0
        try:
            records = run_training(t.owed, t.cpus)
            _store_results(records, {}, store)
            progress.update("done", 1, f"{t.name}: {_scores(records)}")
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - reported at the end, the others go on
            t.error = f"{type(exc).__name__}: {exc}"
            progress.update("failed", 1, f"{t.name}: failed")


def ray_module():
    try:
        import ray
    except ImportError:
        raise UserError("--on ray needs Ray: pip install -e '.[ray]'") from None
    return ray


def start_ray(address: str | None):
    """Ray, joined at ``address`` or started here (listening on the loopback address only)."""
    ray = ray_module()
    started_here = address is None
    try:
        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 **({"num_cpus": os.cpu_count(), "_node_ip_address": "127.0.0.1"} if started_here else {}))
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"could not {'start Ray' if started_here else f'join the Ray cluster at {address}'} "
                        f"({str(exc).strip().splitlines()[0]}); check `ray status --address {address or 'auto'}`") from None
    return ray


def run_ray(trainings: list[Training], store: Path, progress: SweepProgress, address: str | None,
            retries: int) -> None:
    """Each training a Ray task reserving its CPUs/GPUs; killed workers are retried ``retries``
    times; Ctrl-C or SIGTERM cancels what is outstanding and, for a Ray started here, stops it."""
    ray = start_ray(address)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    pending = {}
    try:
        remote = ray.remote(_remote_training)
        shipped = {}  # one object-store copy per checkpoint file, shared by the tasks of its method
        for group in by_training(trainings, lambda t: t.specs[0]):  # one Ray task trains a network once
            files = {p.name: p for p in (store / "checkpoints").glob(f"{group[0].method}-*.pt")}
            for name, path in files.items():
                shipped.setdefault(name, ray.put(path.read_bytes()))
            cpus, gpus = max(t.cpus for t in group), max(t.gpus for t in group)
            ref = remote.options(num_cpus=cpus, num_gpus=gpus, max_retries=retries).remote(
                [s for t in group for s in t.owed], cpus, list(files), *(shipped[name] for name in files))
            pending[ref] = group
        progress.counts["running"] = sum(len(group) for group in pending.values())
        progress.update("")
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                group = pending.pop(ref)
                progress.counts["running"] -= len(group)
                try:
                    records, checkpoints = ray.get(ref)
                    _store_results(records, checkpoints, store)
                    for t in group:
                        mine = [r for r in records if record_key(r) in t.keys]
                        progress.update("done", 1, f"{t.name}: {_scores(mine)}")
                except ray.exceptions.RayError as exc:
                    for t in group:
                        t.error = _first_line(exc)
                        progress.update("failed", 1, f"{t.name}: failed")
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        signal.signal(signal.SIGTERM, previous)
        ray.shutdown()


def _first_line(exc: Exception) -> str:
    cause = getattr(exc, "cause", None)
    text = f"{type(cause).__name__}: {cause}" if cause else str(exc)
    return text.strip().splitlines()[-1] if "Traceback" in text else text.strip().splitlines()[0]


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


# ---------------------------------------------------------------- the sweep's table

def summary(trainings: list[Training], store: Path) -> pd.DataFrame:
    """One row per grid point and protocol: mean and 95% t-interval over training seeds, and the
    mean best validation accuracy (the 320 validation trials seen during training); ``selected``
    marks, per method and protocol, the grid point that validation picks, never the test figure."""
    point_of = {key: (t.method, t.preset or "-", " ".join(f"{k}={v}" for k, v in t.options.items()) or "-",
                      spec.protocol) for t in trainings for spec, key in zip(t.specs, t.keys)}
    rows = {}
    for r in load_records(store) if store.is_dir() else []:
        point = point_of.get(record_key(r))
        if point:
            rows.setdefault(point, {})[r["seed"]] = r  # newest per seed
    out = []
    for (method, preset, setting, protocol), by_seed in rows.items():
        runs = list(by_seed.values())
        mean, half = t_interval([r["accuracy"] for r in runs])
        validation = [v for v in ((r.get("training") or {}).get("best_validation") for r in runs) if v is not None]
        out.append({"method": method, "preset": preset, "setting": setting, "protocol": protocol, "seeds": len(runs),
                    "accuracy": 100 * mean, "ci95": 100 * half,
                    "validation": 100 * sum(validation) / len(validation) if validation else None})
    frame = pd.DataFrame(out, columns=["method", "preset", "setting", "protocol", "seeds", "accuracy", "ci95",
                                       "validation"])
    frame["selected"] = False
    for _, group in frame.groupby(["method", "protocol"]):
        if group["validation"].notna().any() and len(group) > 1:
            frame.loc[group["validation"].astype(float).idxmax(), "selected"] = True
    return frame
