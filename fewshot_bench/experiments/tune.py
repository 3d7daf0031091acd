"""``bench tune``: Bayesian optimisation of a method's options on validation data alone, as Koch
et al. 2015 tuned their networks (Whetlab then; Optuna's TPE sampler here).

A trial is one training (``fit`` on the protocol's background, the held-out check first) scored on
the protocol's tuning trials (``Protocol.tuning_sets``: validation alphabets or val classes, never a
test class): its score is the best validation accuracy over its epochs, as the paper scored a
trial. Each epoch's accuracy is reported to Optuna, whose median pruner stops trials that trail the
others at the same epoch.

The study lives in the store (``<store>/tune/<study>.db``, Optuna's SQLite storage): a stopped tune
resumes where it stopped, and tunes sharing a store cooperate on one study. A trial whose process
died stops sending heartbeats; the next tune marks it failed and queues it again with the same
settings, whose training resumes from its last epoch's checkpoint (checkpoints are keyed by config).
"""
from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fewshot_bench.api import METHODS, PROTOCOLS
from fewshot_bench.errors import UserError
from fewshot_bench.learning.configs import field_names
from fewshot_bench.records import learning_check, write_atomic
from fewshot_bench.seeding import seed_everything
from fewshot_bench.space import adjusted, parse_param, suggest_options

HEARTBEAT_S = 60  # a running trial's heartbeat; one silent for GRACE_S is taken as dead
GRACE_S = 180
TUNING_TRIALS = 3200  # validation trials a setting is scored on (Koch's 320 swing by about 2.5 points)


@dataclass
class Setup:
    """What a study tunes: it is stored with the study, and a resumed tune must match it."""

    method: str
    preset: str | None
    protocol: str
    protocol_options: dict = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)  # options set for every trial (--set)
    space: dict = field(default_factory=dict)  # name -> range text (Param.text)
    val_trials: int = TUNING_TRIALS
    seed: int = 0  # the training seed of every trial (each process's sampler mixes in its own)
    data_root: str | None = None
    # which trials stop early: "median" (a trial trailing the median of earlier ones at the same epoch),
    # or multi-fidelity with epochs the resource: "halving" (asynchronous successive halving: every
    # trial trains min_epochs, the best third of those 3x as many, and so on up to the config's
    # epochs) or "hyperband" (several such brackets, some starting at more epochs)
    pruner: str = "median"
    min_epochs: int = 1

    def key(self) -> dict:
        """The settings that define the study (where the data lies does not; settings added later
        are left out at their defaults, so that studies made before them resume)."""
        return {k: v for k, v in asdict(self).items()
                if k != "data_root" and not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])}


LATER_SETTINGS = {"pruner": "median", "min_epochs": 1}
PRUNERS = ("median", "halving", "hyperband")


def study_name(setup: Setup) -> str:
    return f"{setup.method}-{setup.preset or METHODS.get(setup.method).default_preset}-{setup.protocol}"


def make_setup(method: str, preset: str | None, protocol: str, protocol_options: dict, fixed: dict,
               space_changes: dict, val_trials: int, seed: int, data_root: Path | None,
               pruner: str = "median", min_epochs: int = 1) -> Setup:
    """Check everything a tune needs before any work: the method, preset, options and search space,
    the protocol's options and the pruner."""
    method_cls = METHODS.get(method)
    protocol_cls = PROTOCOLS.get(protocol)
    if val_trials < 20:
        raise UserError(f"--val-trials must be >= 20, got {val_trials}")
    if pruner not in PRUNERS:
        raise UserError(f"--pruner must be {' or '.join(PRUNERS)}, got {pruner!r}")
    if min_epochs < 1:
        raise UserError(f"--min-epochs must be >= 1, got {min_epochs}")
    protocol_cls.make_config(protocol_options)
    base = method_cls.make_config(preset or method_cls.default_preset, fixed)
    declared = method_cls.search_space_for(base)
    if not declared and not space_changes:
        raise UserError(f"method {method} declares no search space (it learns nothing to tune?); "
                        "give ranges with --space NAME=log:LOW:HIGH")
    space = adjusted(declared, space_changes, field_names(type(base)))
    clash = sorted(set(space) & set(fixed))
    if clash:
        raise UserError(f"{', '.join(clash)} both fixed (--set) and searched; switch the range off with "
                        f"--space {clash[0]}=off, or drop the --set")
    epochs = getattr(base, "epochs", None)
    if pruner != "median" and epochs is not None and min_epochs >= epochs:
        raise UserError(f"--min-epochs {min_epochs} leaves the {pruner} pruner nothing to stop early: the preset trains "
                        f"{epochs} epochs; give fewer, or more epochs with --set epochs=N")
    setup = Setup(method, preset or method_cls.default_preset, protocol, dict(protocol_options), dict(fixed),
                  {k: p.text() for k, p in space.items()}, val_trials, seed,
                  str(data_root) if data_root else None, pruner, min_epochs)
    return setup


def make_pruner(setup: dict):
    """The study's pruner (its setup as stored, where later settings may be absent). The
    multi-fidelity pruners' resource is the epoch (reported from 0): rungs at min_epochs x 3^k."""
    import optuna

    if setup.get("pruner", "median") == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=setup.get("min_epochs", 1), reduction_factor=3)
    if setup.get("pruner", "median") == "hyperband":
        epochs = METHODS.get(setup["method"]).make_config(setup["preset"], setup["fixed"]).epochs
        return optuna.pruners.HyperbandPruner(min_resource=setup.get("min_epochs", 1), max_resource=epochs,
                                              reduction_factor=3)
    # a trial is pruned where its epoch's validation trails the median of earlier trials at that epoch
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)


def check_data(setup: Setup) -> int:
    """Before any trial: the protocol's background passes the held-out check and its tuning trials
    can be drawn (missing data fails here, in one line). Returns the number of tuning trials."""
    protocol_cls = PROTOCOLS.get(setup.protocol)
    protocol = protocol_cls(protocol_cls.make_config(setup.protocol_options),
                            data_root=Path(setup.data_root) if setup.data_root else None)
    protocol.check_background(protocol.background())
    return sum(len(ts.answer) for ts in protocol.tuning_sets(setup.val_trials, setup.seed))


def storage_url(store: Path, name: str) -> str:
    return f"sqlite:///{(store / 'tune' / f'{name}.db').resolve()}"


def open_study(url: str, name: str, setup: Setup | None = None, grace: int = GRACE_S):
    """The study ``name`` in ``url``, made with ``setup`` if new; a stored study must have been made
    with the same setup (else a user error naming the difference). A running trial beats every
    ``grace / 3`` seconds (at most a minute); one silent for ``grace`` seconds is taken as dead."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # bench prints each trial itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats, retries
    storage = optuna.storages.RDBStorage(
        url, engine_kwargs={"connect_args": {"timeout": 60}}, heartbeat_interval=max(1, min(HEARTBEAT_S, grace // 3)),
        grace_period=grace, heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
    # each process samples with its own seed: tunes cooperating on a study with one seed would draw
    # the same random settings while the sampler starts up (TPE's constant liar keeps them apart later)
    seed = int(np.random.SeedSequence([setup.seed if setup else 0, os.getpid(), time.time_ns()]).generate_state(1)[0])
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=8)
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, direction="maximize",
                                load_if_exists=True)
    stored = study.user_attrs.get("setup")
    if setup is not None:
        if stored is None:
            study.set_user_attr("setup", setup.key())
        elif stored != json.loads(json.dumps(setup.key())):
            diff = sorted(k for k in stored if stored.get(k) != json.loads(json.dumps(setup.key())).get(k))
            raise UserError(f"study {name} was made with other settings ({', '.join(diff)} differ); give another "
                            f"--study name, or the same settings to resume it")
    elif stored is None:
        raise UserError(f"no study named {name} in {url.removeprefix('sqlite:///')}")
    study.pruner = make_pruner(study.user_attrs["setup"])  # Ray workers open the study without a setup
    return study


def trial_options(setup: Setup, trial) -> dict:
    """The method options of one trial (an Optuna trial, or a ``FixedTrial`` of stored settings): the
    study's fixed options and each searched range's suggestion (the ranges read back from their text,
    which names a range's layers)."""
    space = {k: parse_param(v) for k, v in setup.space.items()}
    base = METHODS.get(setup.method).make_config(setup.preset, setup.fixed)
    return {**setup.fixed, **suggest_options(trial, space, base)}


class TrialRunner:
    """One Optuna trial: the options it suggests, a training scored on the tuning trials. Picklable,
    so a Ray task can run it."""

    def __init__(self, setup: Setup, store: Path, threads: int | None = None):
        self.setup, self.store, self.threads = setup, Path(store), threads

    def __call__(self, trial) -> float:
        import optuna
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        s = self.setup
        method_cls = METHODS.get(s.method)
        options = trial_options(s, trial)
        try:
            config = method_cls.make_config(s.preset, options)
        except UserError as exc:  # a combination the config refuses: not a setting to score
            trial.set_user_attr("refused", str(exc))
            raise optuna.TrialPruned(f"config refused: {exc}") from None
        method = method_cls(config, seed=s.seed, preset=s.preset, work_dir=self.store / "checkpoints")
        protocol_cls = PROTOCOLS.get(s.protocol)
        root = Path(s.data_root) if s.data_root else None
        protocol = protocol_cls(protocol_cls.make_config(s.protocol_options), data_root=root)
        seed_everything(s.seed)
        background = protocol.background()
        protocol.check_background(background)  # the held-out check before every fit
        tuning = protocol.tuning_sets(s.val_trials, s.seed)
        reported = {}  # epoch -> validation accuracy, as reported to Optuna

        def report(history):
            for h in history:
                if h["epoch"] not in reported and h["validation_accuracy"] is not None:
                    reported[h["epoch"]] = h["validation_accuracy"]
                    trial.report(h["validation_accuracy"], h["epoch"])
            trial.set_user_attr("epochs", len(history))
            # the last epoch's training loss: a twin stuck at a constant guess sits at ln 2 (0.693)
            trial.set_user_attr("loss", round(float(history[-1]["loss"]), 4))
            check = learning_check(history)
            if check["untrained_validation"] is not None:
                trial.set_user_attr("untrained", round(100 * check["untrained_validation"], 2))
            trial.set_user_attr("learned", check["learned"])
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {history[-1]['epoch'] + 1}: validation trails the median")

        method.epoch_callback = report
        start = time.perf_counter()
        trial.set_user_attr("options", json.loads(json.dumps(options)))
        try:
            method.fit(background, tuning)
        except RuntimeError as exc:
            if "non-finite" not in str(exc):
                raise
            # the training diverged (a rate too high): a setting that scores what it reached before
            trial.set_user_attr("diverged", True)
            return max(reported.values(), default=0.0)
        history = method.history_
        scores = [h["validation_accuracy"] for h in history if h["validation_accuracy"] is not None]
        if not scores:
            raise RuntimeError(f"{s.method} recorded no validation accuracy; only trained networks can be tuned")
        best = max(scores)
        trial.set_user_attr("epochs", len(history))
        trial.set_user_attr("best_epoch", scores.index(best) + 1)
        trial.set_user_attr("train_seconds", round(time.perf_counter() - start, 1))
        trial.set_user_attr("epoch_seconds", round(sum(h["seconds"] for h in history), 1))
        trial.set_user_attr("tflop", round(sum(h["step_gflop"] * h["steps"] for h in history) / 1000, 2))
        trial.set_user_attr("resumed_from_epoch", getattr(method, "resumed_epochs_", 0))
        trial.set_user_attr("reused_checkpoint", bool(method.reused_checkpoint_))
        return best


def finished_states():
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED)


def trials_left(study, n_trials: int) -> int:
    done = sum(t.state in finished_states() for t in study.get_trials(deepcopy=False))
    return max(0, n_trials - done)


def optimize_here(study, runner: TrialRunner, n_trials: int, progress=None) -> None:
    """Trials in this process until the study holds ``n_trials`` finished ones (other tunes of the
    same study count: they stop together)."""
    import optuna

    callbacks = [optuna.study.MaxTrialsCallback(n_trials, states=finished_states())]
    if progress:
        callbacks.append(lambda study, trial: progress(study, trial))
    if trials_left(study, n_trials):
        study.optimize(runner, n_trials=trials_left(study, n_trials), callbacks=callbacks, catch=(RuntimeError,),
                       gc_after_trial=True)


def _remote_trials(url: str, name: str, runner: TrialRunner, n_trials: int, grace: int = GRACE_S) -> int:
    """On a Ray worker: trials of the stored study until it holds ``n_trials`` finished ones."""
    study = open_study(url, name, grace=grace)
    optimize_here(study, runner, n_trials)
    return trials_left(study, n_trials)


def optimize_on_ray(url: str, name: str, runner: TrialRunner, n_trials: int, workers: int,
                    address: str | None = None, grace: int = GRACE_S) -> None:
    """``workers`` Ray tasks, each running trials against the study's storage until the study holds
    ``n_trials`` finished trials. The storage must be reachable from the workers: the store's SQLite
    file on a local Ray (or a shared folder); a database URL (--storage) on a cluster."""
    from fewshot_bench.experiments.sweep import start_ray

    ray = start_ray(address)
    try:
        remote = ray.remote(_remote_trials).options(num_cpus=runner.threads or 1, max_retries=2)
        ray.get([remote.remote(url, name, runner, n_trials, grace) for _ in range(workers)])
    finally:
        ray.shutdown()


def import_history(study, setup: Setup, csv_path: Path) -> int:
    """Seed an empty study with the trials of a committed history (the CSV ``write_outputs`` wrote),
    so a study whose store was lost (a new machine) goes on where it stopped without training its
    finished trials again. Each row becomes a trial of the same number, settings and score: complete
    and pruned ones as they ended (with their last validation as their one known epoch's value, for
    the pruner and the sampler), failed ones failed, and one that was running when the store was lost
    failed too (its retry draws anew). Returns the number of trials imported."""
    import optuna
    import pandas as pd
    from optuna.trial import TrialState

    if study.get_trials(deepcopy=False):
        raise UserError(f"--history seeds a new study, but {study.study_name} already holds "
                        f"{len(study.get_trials(deepcopy=False))} trials; drop --history to resume it")
    try:
        frame = pd.read_csv(csv_path)
    except (OSError, ValueError) as exc:
        raise UserError(f"--history {csv_path}: cannot read it ({exc}); give the tune-STUDY.csv a tune wrote") from None
    missing = {"trial", "state", "score", "last_validation"} - set(frame.columns)
    if missing:
        raise UserError(f"--history {csv_path}: no {', '.join(sorted(missing))} column; give the tune-STUDY.csv "
                        "a tune wrote")
    states = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED}
    for row in frame.sort_values("trial").to_dict("records"):
        values = {k.removeprefix("param:"): _plain(v) for k, v in row.items() if k.startswith("param:") and not pd.isna(v)}
        fixed = optuna.trial.FixedTrial(values)
        try:
            options = trial_options(setup, fixed)
        except ValueError as exc:  # a parameter the study searches that the row lacks
            raise UserError(f"--history {csv_path}: trial {row['trial']} does not fit this study's search "
                            f"space ({exc}); give the history of a study with the same settings") from None
        extra = sorted(set(values) - set(fixed.params))
        if extra:
            raise UserError(f"--history {csv_path}: trial {row['trial']} sets {', '.join(extra)}, which this study "
                            "does not search; give the history of a study with the same settings")
        state = states.get(row["state"], TrialState.FAIL)
        last = None if pd.isna(row["last_validation"]) else row["last_validation"] / 100
        epochs = None if pd.isna(row.get("epochs")) else int(row["epochs"])
        attrs = {k: (None if pd.isna(row[k]) else kind(row[k]))
                 for k, kind in (("best_epoch", int), ("train_seconds", float), ("tflop", float),
                                 ("resumed_from_epoch", int), ("loss", float), ("untrained", float),
                                 ("learned", _verdict)) if k in row}
        attrs.update({"epochs": epochs, "options": json.loads(json.dumps(options)),
                      "imported_from": f"{csv_path} trial {row['trial']}"})
        retry = row.get("retry_of")
        trial = optuna.trial.create_trial(
            state=state, value=None if state == TrialState.FAIL or pd.isna(row["score"]) else row["score"] / 100,
            params=fixed.params, distributions=fixed.distributions, user_attrs=attrs,
            system_attrs={} if retry is None or pd.isna(retry) else {"failed_trial": int(retry)},
            intermediate_values={epochs - 1: last} if last is not None and epochs else None)
        study.add_trial(trial)
    return len(frame)


def _verdict(value) -> bool | None:
    """A learning verdict as a CSV gives it back: True/False, or their text."""
    return {"true": True, "false": False}.get(str(value).lower())


def _plain(value):
    """A CSV cell as the Python value a trial suggested (pandas reads whole numbers as floats or
    numpy integers)."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


# ---------------------------------------------------------------- what a study leaves

def history_frame(study):
    """One row per trial: its number, state, score, settings and cost."""
    import pandas as pd
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"trial": t.number, "state": t.state.name.lower(),
                     "score": None if t.value is None else round(100 * t.value, 2),
                     "last_validation": (round(100 * t.intermediate_values[max(t.intermediate_values)], 2)
                                         if t.intermediate_values else None),
                     **{k: t.user_attrs.get(k) for k in ("epochs", "best_epoch", "loss", "untrained", "learned",
                                                         "train_seconds", "tflop", "resumed_from_epoch")},
                     "retry_of": RetryHeartbeatStaleTrialCallback.retried_trial_number(t),
                     **{f"param:{k}": v for k, v in t.params.items()}})
    frame = pd.DataFrame(rows)
    if len(frame):
        done = frame["score"].where(frame["state"] == "complete")
        frame["best_so_far"] = done.cummax().ffill()
    return frame


def best_trial(study):
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    return max(complete, key=lambda t: t.value) if complete else None


def importances(study) -> dict[str, float]:
    """Each searched parameter's share of the score's variance (Optuna's fANOVA), over complete
    trials; empty with fewer than two complete trials or a single parameter value."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2:
        return {}
    try:
        return optuna.importance.get_param_importances(study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}


def write_outputs(study, name: str, store: Path, out: Path, preset_name: str, command: str) -> dict:
    """The study's history (CSV), its figure (PNG), a summary (Markdown) and, once a trial is
    complete, the best trial as a named preset in the store. Returns what was written."""
    from fewshot_bench.presets import preset_path, write_preset

    setup = study.user_attrs["setup"]
    frame = history_frame(study)
    out.mkdir(parents=True, exist_ok=True)
    written = {"csv": out / f"tune-{name}.csv"}
    write_atomic(written["csv"], frame.to_csv(index=False))
    shares = importances(study)
    if plot_study(frame, shares, out / f"tune-{name}.png", name):
        written["png"] = out / f"tune-{name}.png"
    best = best_trial(study)
    if best is not None:
        method_cls = METHODS.get(setup["method"])
        config = method_cls.make_config(setup["preset"], best.user_attrs["options"])
        values = json.loads(json.dumps(asdict(config)))
        path = preset_path(setup["method"], preset_name, store)
        write_preset(path, setup["method"], values, {
            "study": name, "trial": best.number, "storage": str(store / "tune" / f"{name}.db"),
            "score": round(100 * best.value, 2), "scored_on": f"{setup['val_trials']} tuning trials of {setup['protocol']}'s "
                                                               "validation data (best epoch)",
            "base_preset": setup["preset"], "searched": sorted(setup["space"]), "command": command})
        written["preset"] = path
    write_atomic(out / f"tune-{name}.md", summary_markdown(study, name, frame, shares, best, command, preset_name))
    written["md"] = out / f"tune-{name}.md"
    return written


def summary_markdown(study, name, frame, shares, best, command, preset_name) -> str:
    setup = study.user_attrs["setup"]
    counts = frame["state"].value_counts().to_dict() if len(frame) else {}
    lines = [f"# tune: {name}", "", f"- command: `{command}`",
             f"- method {setup['method']} from preset {setup['preset']}; protocol {setup['protocol']} "
             f"{setup['protocol_options'] or ''}; fixed: {setup['fixed'] or 'nothing'}",
             f"- score: the best validation accuracy over a trial's epochs on {setup['val_trials']:,} tuning trials "
             "(validation alphabets or val classes only; no test class scores a trial)",
             f"- trials: {len(frame)} ({', '.join(f'{v} {k}' for k, v in counts.items())})",
             "- search space: " + "; ".join(f"{k} {v}" for k, v in setup["space"].items())]
    if best is not None:
        lines += [f"- best: trial {best.number}, {100 * best.value:.2f}% at epoch {best.user_attrs.get('best_epoch')} "
                  f"of {best.user_attrs.get('epochs')}; preset `{preset_name}` "
                  f"(`bench run --method {setup['method']} --preset {preset_name} ...`)", "",
                  "| parameter | best value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in best.params.items()]
    if shares:
        complete = int((frame["state"] == "complete").sum())
        lines += ["", f"Importances (fANOVA) from {complete} complete trials" +
                  (": with fewer than about ten they mean little." if complete < 10 else "."), "",
                  "| parameter | importance (fANOVA) |", "|---|---|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in shares.items()]
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def plot_study(frame, shares: dict, path: Path, name: str) -> bool:
    """Two panels: each trial's score and the best so far; the parameters' importances."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    if not len(frame):
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    for state, marker, colour in (("complete", "o", "#4c72b0"), ("pruned", "x", "#999999")):
        part = frame[frame["state"] == state]
        values = part["score"] if state == "complete" else part["last_validation"]
        left.plot(part["trial"], values, marker, color=colour, linestyle="none",
                  label=state if state == "complete" else "pruned (last validation)")
    left.step(frame["trial"], frame["best_so_far"], where="post", color="#dd8452", label="best so far")
    left.set_xlabel("trial")
    left.set_ylabel("validation accuracy (%)")
    left.set_title(f"{name}", fontsize=10)
    left.grid(alpha=0.3)
    left.legend(fontsize=8, frameon=False)
    if shares:
        top = list(shares.items())[:12][::-1]
        right.barh([k for k, _ in top], [v for _, v in top], color="#55a868")
        right.set_xlabel("importance (fANOVA share)")
        right.tick_params(axis="y", labelsize=7)
    else:
        right.text(0.5, 0.5, "importances need two\ncomplete trials", ha="center", va="center")
        right.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True

