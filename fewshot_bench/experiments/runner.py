"""Run one method on one protocol: fit once, evaluate on each trial draw, build the run record."""
from __future__ import annotations

import json
import platform
import resource
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from fewshot_bench import __version__
from fewshot_bench.api import METHODS, PROTOCOLS
from fewshot_bench.keys import fingerprint, run_key
from fewshot_bench.records import SCHEMA, learning_check, new_run_id, write_atomic
from fewshot_bench.seeding import seed_everything
from fewshot_bench.stats import set_interval, t_interval


@dataclass
class RunSpec:
    method: str
    protocol: str
    preset: str | None = None
    method_options: dict = field(default_factory=dict)
    protocol_options: dict = field(default_factory=dict)
    seed: int = 0
    trial_seeds: list[int] | None = None  # default: [seed]
    data_root: Path | None = None
    work_dir: Path | None = None  # checkpoints of learning methods


def build(spec: RunSpec):
    method_cls = METHODS.get(spec.method)
    protocol_cls = PROTOCOLS.get(spec.protocol)
    preset = spec.preset or method_cls.default_preset
    config = method_cls.make_config(preset, spec.method_options)
    method = method_cls(config, seed=spec.seed, preset=preset, work_dir=spec.work_dir)
    protocol = protocol_cls(protocol_cls.make_config(spec.protocol_options), data_root=spec.data_root)
    return method, protocol


def trial_seeds(spec: RunSpec) -> list[int]:
    """The trial draws a run evaluates: the spec's (default: its seed); one, for a protocol whose
    trials are one fixed published set (trial seeds would draw the same trials again)."""
    if PROTOCOLS.get(spec.protocol).fixed_trials:
        return [spec.seed]
    return list(spec.trial_seeds) if spec.trial_seeds else [spec.seed]


def spec_key(spec: RunSpec) -> str:
    """The key of the run ``spec`` would make (`fewshot_bench.keys.record_key` of its record)."""
    method, protocol = build(spec)
    return run_key(spec.method, method.preset, method.config_dict(), spec.protocol, protocol.config_dict(),
                   spec.seed, trial_seeds(spec))


def training_key(spec: RunSpec) -> str:
    """What ``spec``'s run fits, as a key: runs with one key fit or reuse one model (one method config
    on several protocols; for a network, also configs that differ only in how it is scored or in
    options its training never reads); a protocol whose background differs (verification's drawers)
    fits its own network under another key."""
    method, protocol = build(spec)
    config = method.training_config() if hasattr(method, "training_config") else method.config_dict()
    background = protocol.background_key()
    return fingerprint(spec.method, config, spec.seed, *([] if background is None else [background]))


def by_training(items: list, spec_of=lambda item: item) -> list[list]:
    """``items`` grouped by the model their spec fits (`training_key`), groups and members in
    the order given: each group is one training, its first run fits and the others reuse it."""
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(training_key(spec_of(item)), []).append(item)
    return list(groups.values())


def run(spec: RunSpec, progress=None, partial: Path | None = None) -> dict:
    """Fit ``spec.method`` once (seeded by ``spec.seed``) and evaluate it on every trial seed.

    ``progress`` (optional) has ``stage(label)``, ``start(total)`` and ``advance()``. ``partial``: a
    folder where each trial seed's scored draw is kept as it finishes (one file per run key), so that
    an interrupted run scores only the draws it lacks when run again; the file goes once the run is done.
    """
    method, protocol = build(spec)
    seeds = trial_seeds(spec)
    kept = PartialDraws(partial, spec_key(spec)) if partial else None
    seed_everything(spec.seed)
    protocol.check_feasible(method)  # a protocol that cannot run fails before the training, not after
    background = protocol.background()
    protocol.check_background(background)
    validation = protocol.validation(spec.seed)
    method.progress = progress
    start = time.perf_counter()
    method.fit(background, validation)
    train_seconds = time.perf_counter() - start

    done = kept.load() if kept else {}
    record = make_record(spec, method, protocol, score_draws(spec, method, protocol, progress, kept), train_seconds)
    if kept:
        record["resumed_draws"] = sorted(set(done) & set(seeds))
    return record


def score_draws(spec: RunSpec, method, protocol, progress=None, kept: PartialDraws | None = None) -> list[dict]:
    """A fitted method scored on each of the spec's trial draws; with ``kept``, draws an interrupted run
    scored are taken from it and each new one is kept as it finishes."""
    draws, done = [], kept.load() if kept else {}
    for trial_seed in trial_seeds(spec):
        if trial_seed in done:
            draws.append(done[trial_seed])
            continue
        if progress:
            progress.stage(f"{spec.method} on {spec.protocol}, trial seed {trial_seed}")
        draws.append({"trial_seed": trial_seed, **protocol.evaluate(method, trial_seed, progress)})
        if kept:
            kept.save(draws)
    return draws


class PartialDraws:
    """The draws a run has scored so far, in ``<folder>/<run key>.json``."""

    def __init__(self, folder: Path, key: str):
        self.path = Path(folder) / f"{key}.json"

    def load(self) -> dict[int, dict]:
        try:
            return {d["trial_seed"]: d for d in json.loads(self.path.read_text())}
        except (OSError, ValueError, KeyError, TypeError):  # none yet, or damaged: score them anew
            return {}

    def save(self, draws: list[dict]) -> None:
        write_atomic(self.path, json.dumps(draws, separators=(",", ":")))

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def make_record(spec, method, protocol, draws, train_seconds) -> dict:
    correct = np.concatenate([d["correct"] for d in draws])
    groups = np.concatenate([[f"{d['trial_seed']}/{g}" for g in d["groups"]] for d in draws])
    accuracy, ci95 = set_interval(correct, groups)
    per_draw = [d["accuracy"] for d in draws]
    mean, draw_ci = t_interval(per_draw)
    return {**alphabet_interval(correct, [g for d in draws for g in d["groups"]]),
        "schema": SCHEMA,
        "run_id": new_run_id(spec.method, spec.protocol, spec.seed),
        # microseconds: runs finishing within one second still sort oldest first
        "finished": datetime.now().isoformat(timespec="microseconds"),
        "method": spec.method,
        "preset": method.preset,
        "method_config": method.config_dict(),
        "protocol": spec.protocol,
        "protocol_version": protocol.version,
        "protocol_config": protocol.config_dict(),
        "seed": spec.seed,
        "trial_seeds": [d["trial_seed"] for d in draws],
        "accuracy": accuracy,
        "ci95": ci95,
        "ci_unit": protocol.ci_unit,
        "draw_accuracies": per_draw,
        "draw_std": float(np.std(per_draw, ddof=1)) if len(per_draw) > 1 else 0.0,
        "n_trials": int(len(correct)),
        "train_seconds": train_seconds,
        "eval_seconds": float(sum(d["eval_seconds"] for d in draws)),
        "training": training_summary(method),
        "draws": draws,
        **({"protocol_data": provenance} if (provenance := protocol.provenance()) is not None else {}),
        "environment": environment(),
    }


def alphabet_interval(correct, groups) -> dict:
    """Where trial sets are named ``alphabet#k`` (Koch's task), the 95% interval over alphabets: a
    t-interval over per-alphabet accuracies, every draw pooled. The interval over trial sets says how
    well the method is measured on these 10 alphabets (new draws of them); this one, what the
    accuracy says about new alphabets, of which the task has only these 10."""
    if not len(groups) or not all("#" in g for g in groups):
        return {}
    alphabets = np.array([g.split("#")[0] for g in groups])
    correct = np.asarray(correct, dtype=float)
    per_alphabet = [correct[alphabets == a].mean() for a in dict.fromkeys(alphabets)]
    _, half = t_interval(per_alphabet)
    return {"ci95_alphabets": half, "alphabets": len(per_alphabet)}


def training_summary(method) -> dict | None:
    """A learning method's epochs (loss, validation accuracy, seconds): when its weights came from
    a checkpoint, ``train_seconds`` is only the load, and this keeps the original training's cost."""
    history = getattr(method, "history_", None)
    if history is None:
        return None
    return {"reused_checkpoint": bool(getattr(method, "reused_checkpoint_", False)),
            "epochs": len(history), "epoch_seconds": float(sum(h["seconds"] for h in history)),
            "best_validation": max((h["validation_accuracy"] or 0.0) for h in history) if history else None,
            "validation_trials": getattr(method, "validation_trials_", 0),
            "worker_peak_rss_mib": getattr(method, "worker_peak_rss_mib_", []),  # members trained in processes
            "learning": learning_check(history),
            "history": history}


def environment() -> dict:
    return {
        "fewshot_bench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "threads": torch.get_num_threads(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_isa": torch.backends.cpu.get_cpu_capability(),  # the vector ISA torch's kernels ran with
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "git_commit": CODE_VERSION[0],
        "git_dirty": CODE_VERSION[1],  # tracked files changed since that commit: the code was not the commit's
    }


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def git_commit() -> str | None:
    return _git("rev-parse", "HEAD")


def git_dirty() -> bool | None:
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


# read when the code is imported: a long reproduce keeps running the code it started with while
# commits land, and its records must name that code, not the checkout's HEAD when each run ends
CODE_VERSION = (git_commit(), git_dirty())
