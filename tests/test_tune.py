"""bench tune: Optuna studies on validation data only, resumable, pruned, on Ray, ending in a preset."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from fewshot_bench.errors import UserError

optuna = pytest.importorskip("optuna")

# the tiny Koch recipe (pairs, layer-wise SGD), only the learning rates searched: fast trials
TINY = dict(method="conv_siamese", preset="tiny_koch", protocol="omniglot20", protocol_options={}, fixed={},
            space_changes={"channels": "off", "kernels": "off", "fc_units": "off", "momentum": "off", "l2": "off"},
            val_trials=200, seed=0)


def tiny_setup(data_root, **changes):
    from fewshot_bench.experiments import tune

    return tune.make_setup(**{**TINY, **changes, "data_root": data_root})


def tiny_study(tmp_path, setup, name="s"):
    from fewshot_bench.experiments import tune

    (tmp_path / "tune").mkdir(exist_ok=True)
    url = tune.storage_url(tmp_path, name)
    return url, tune.open_study(url, name, setup), tune.TrialRunner(setup, tmp_path)


def states(study):
    return [t.state.name for t in study.get_trials()]


def test_a_tune_ends_in_a_preset_that_bench_run_runs(data_root, tmp_path):
    from fewshot_bench.cli.main import main
    from fewshot_bench.records import load_records

    store, out = tmp_path / "store", tmp_path / "out"
    args = ["tune", "--method", "conv_siamese", "--preset", "tiny_koch", "--trials", "2", "--val-trials", "200",
            "--store", str(store), "--out", str(out), "--preset-name", "mine", "--data-root", str(data_root)]
    args += [a for k in ("channels", "kernels", "fc_units") for a in ("--space", f"{k}=off")]
    assert main(args) == 0
    study = optuna.load_study(study_name="conv_siamese-tiny_koch-omniglot20",
                              storage=f"sqlite:///{store / 'tune' / 'conv_siamese-tiny_koch-omniglot20.db'}")
    best = max(study.trials, key=lambda t: t.value)
    assert states(study) == ["COMPLETE", "COMPLETE"]
    # history, figure and summary written; the preset holds the best trial's per-layer values
    name = "tune-conv_siamese-tiny_koch-omniglot20"
    assert {p.name for p in out.iterdir()} == {f"{name}.csv", f"{name}.png", f"{name}.md"}
    preset = (store / "presets" / "conv_siamese" / "mine.toml").read_text()
    assert f"trial = {best.number}" in preset and 'study = "conv_siamese-tiny_koch-omniglot20"' in preset
    assert main(["run", "--method", "conv_siamese", "--preset", "mine", "--protocol", "omniglot20", "--store",
                 str(store), "--no-progress", "--data-root", str(data_root)]) == 0
    record = load_records(store)[0]
    assert record["preset"] == "mine"
    assert list(record["method_config"]["lr"]) == [best.params[f"lr.{i}"] for i in range(4)]
    assert list(record["method_config"]["momentum"]) == [best.user_attrs["options"]["momentum"][i] for i in range(4)]
    # the same preset by its file's path
    path = store / "presets" / "conv_siamese" / "mine.toml"
    assert main(["run", "--method", "conv_siamese", "--preset", str(path), "--protocol", "omniglot20", "--store",
                 str(store), "--no-progress", "--data-root", str(data_root)]) == 0


def test_trials_are_scored_by_their_best_validation_epoch(data_root, tmp_path):
    setup = tiny_setup(data_root)
    _, study, runner = tiny_study(tmp_path, setup)
    from fewshot_bench.experiments.tune import optimize_here

    optimize_here(study, runner, 1)
    trial = study.trials[0]
    assert trial.value == max(trial.intermediate_values.values())
    assert len(trial.intermediate_values) == 3 == trial.user_attrs["epochs"]
    assert trial.user_attrs["best_epoch"] - 1 == max(trial.intermediate_values, key=trial.intermediate_values.get)
    # the last epoch's training loss goes with it, into the history (a plateau at ln 2 shows there)
    assert 0 < trial.user_attrs["loss"] < 5
    from fewshot_bench.experiments.tune import history_frame
    assert history_frame(study)["loss"].tolist() == [trial.user_attrs["loss"]]


def test_a_tune_never_draws_test_trials(data_root, tmp_path, monkeypatch):
    """The protocol's test draws are never asked for, and every tuning image is a validation image."""
    from fewshot_bench.api import PROTOCOLS
    from fewshot_bench.data.splits import VALIDATION_ALPHABETS, VALIDATION_DRAWERS
    from fewshot_bench.experiments.tune import optimize_here

    def refuse(*args, **kwargs):
        raise AssertionError("a tune drew test trials")

    monkeypatch.setattr(PROTOCOLS.get("omniglot20"), "trial_sets", refuse)
    _, study, runner = tiny_study(tmp_path, tiny_setup(data_root))
    optimize_here(study, runner, 1)
    assert states(study) == ["COMPLETE"]
    for ts in PROTOCOLS.get("omniglot20")(data_root=data_root).tuning_sets(3200):
        for image in ts.query_ids + ts.support_ids:
            alphabet, _, drawer = image.split("/")
            assert alphabet in VALIDATION_ALPHABETS and int(drawer) in VALIDATION_DRAWERS


def test_a_tune_refuses_protocols_whose_validation_is_not_held_out(data_root):
    # Vinyals' trainval trains on the val classes: nothing would be left to tune on
    with pytest.raises(UserError, match="train_split=train"):
        from fewshot_bench.experiments.tune import check_data

        check_data(tiny_setup(data_root, protocol="vinyals", protocol_options={"train_split": "trainval"}))
    # a protocol that gives no validation data (a plugin's, say) cannot be tuned on
    from fewshot_bench.api import Protocol

    with pytest.raises(UserError, match="no validation data to tune on"):
        Protocol().tuning_sets(100)


def test_vinyals_tuning_episodes_hold_val_classes_only(data_root):
    from fewshot_bench.api import PROTOCOLS
    from fewshot_bench.data.vinyals_split import base_alphabet, characters, class_set

    sets = PROTOCOLS.get("vinyals")(data_root=data_root, way=20).tuning_sets(400)
    val, test = characters(class_set(data_root, "val")), characters(class_set(data_root, "test"))
    seen = {(base_alphabet(i.split("/")[0]), i.split("/")[1]) for ts in sets for i in ts.query_ids + ts.support_ids}
    assert sum(len(ts.answer) for ts in sets) >= 400 and seen <= val and not seen & test


def test_the_pruner_stops_a_trial_that_trails(data_root, tmp_path, monkeypatch):
    """Five trials whose validation reads 0.5 every epoch, then one reading 0.1: stopped at the
    first epoch the pruner judges (n_warmup_steps=2: the third), its training cut short."""
    from fewshot_bench.experiments.tune import optimize_here
    from fewshot_bench.learning.trainer import TrainingLoop

    monkeypatch.setattr(TrainingLoop, "_validate", lambda self, validation: 10 * self.config.lr[0])
    setup = tiny_setup(data_root, fixed={"epochs": "6", "patience": "6"})
    _, study, runner = tiny_study(tmp_path, setup)
    for lr in [0.05] * 5 + [0.01]:
        study.enqueue_trial({f"lr.{i}": lr for i in range(4)})
    optimize_here(study, runner, 6)
    assert states(study) == ["COMPLETE"] * 5 + ["PRUNED"]
    pruned = study.trials[-1]
    assert pruned.user_attrs["epochs"] == 3 and sorted(pruned.intermediate_values) == [0, 1, 2]
    assert all(t.user_attrs["epochs"] == 6 for t in study.trials[:5])


def test_successive_halving_cuts_the_trailing_trial_at_its_first_rung(data_root, tmp_path, monkeypatch):
    """Multi-fidelity, epochs the resource: three trials at 0.5 promoted past the rung at epoch 2 (step 1),
    a fourth at 0.1 outside the best third there, stopped after 2 of its 6 epochs."""
    from fewshot_bench.experiments.tune import optimize_here
    from fewshot_bench.learning.trainer import TrainingLoop

    monkeypatch.setattr(TrainingLoop, "_validate", lambda self, validation: 10 * self.config.lr[0])
    setup = tiny_setup(data_root, fixed={"epochs": "6", "patience": "6"}, pruner="halving", min_epochs=1)
    _, study, runner = tiny_study(tmp_path, setup)
    assert type(study.pruner).__name__ == "SuccessiveHalvingPruner"
    for lr in [0.05] * 3 + [0.01]:
        study.enqueue_trial({f"lr.{i}": lr for i in range(4)})
    optimize_here(study, runner, 4)
    assert states(study) == ["COMPLETE"] * 3 + ["PRUNED"]
    assert [t.user_attrs["epochs"] for t in study.trials] == [6, 6, 6, 2]


def test_a_pruner_is_part_of_a_new_study_and_absent_from_an_old_ones_key(data_root):
    from fewshot_bench.experiments import tune

    assert "pruner" not in tiny_setup(data_root).key()  # studies made before the option resume
    assert tiny_setup(data_root, pruner="hyperband", min_epochs=2).key()["pruner"] == "hyperband"
    assert type(tune.make_pruner(tiny_setup(data_root, pruner="hyperband").key())).__name__ == "HyperbandPruner"
    with pytest.raises(UserError, match="--min-epochs 3 leaves the halving pruner nothing to stop early"):
        tiny_setup(data_root, pruner="halving", min_epochs=3)  # tiny_koch trains 3 epochs
    with pytest.raises(UserError, match="--pruner must be"):
        tiny_setup(data_root, pruner="asha")


def test_a_study_made_with_other_settings_is_not_resumed(data_root, tmp_path):
    from fewshot_bench.experiments import tune

    url, _, _ = tiny_study(tmp_path, tiny_setup(data_root))
    with pytest.raises(UserError, match="val_trials"):
        tune.open_study(url, "s", tiny_setup(data_root, val_trials=400))


def test_bad_search_ranges_are_one_line_errors(data_root):
    for changes, message in [({"lr": "log:0:1"}, "low > 0"), ({"lr": "linear:1:2"}, "not understood"),
                             ({"nope": "log:1e-3:1e-1"}, "not an option"), ({"adam_lr": "choice:"}, "at least one")]:
        with pytest.raises(UserError, match=message):
            tiny_setup(data_root, space_changes={**TINY["space_changes"], **changes})
    with pytest.raises(UserError, match="both fixed"):
        tiny_setup(data_root, fixed={"lr": "0.01"})


def _count(db, query, *args) -> int:
    """A count from the study's database; 0 while Optuna is still creating its tables."""
    try:
        with sqlite3.connect(db) as con:
            return con.execute(query, args).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _finished(db, state):
    return _count(db, "select count(*) from trials where state = ?", state)


def _running_with_epochs(db):
    return _count(db, "select count(*) from trials t join trial_intermediate_values v on t.trial_id = v.trial_id "
                      "where t.state = 'RUNNING'")


def test_a_study_killed_mid_trial_resumes_without_repeating_finished_trials(data_root, tmp_path):
    store = tmp_path / "store"
    db = store / "tune" / "conv_siamese-tiny_koch-omniglot20.db"
    args = [sys.executable, "-m", "fewshot_bench.cli", "tune", "--method", "conv_siamese", "--preset", "tiny_koch",
            "--trials", "3", "--val-trials", "2000", "--store", str(store), "--out", str(tmp_path / "out"),
            "--set", "epochs=8", "--set", "patience=8", "--grace", "3", "--data-root", str(data_root)]
    args += [a for k in ("channels", "kernels", "fc_units", "momentum", "l2") for a in ("--space", f"{k}=off")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:  # kill it once a trial is finished and the next has run an epoch or more
        deadline = time.time() + 240
        while not (db.exists() and _finished(db, "COMPLETE") >= 1 and _running_with_epochs(db) >= 1):
            assert proc.poll() is None and time.time() < deadline, "the tune ended before it could be killed"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    study = optuna.load_study(study_name="conv_siamese-tiny_koch-omniglot20", storage=f"sqlite:///{db}")
    before = {t.number: (t.value, t.datetime_complete) for t in study.trials if t.state.name == "COMPLETE"}
    killed = next(t for t in study.trials if t.state.name == "RUNNING")
    time.sleep(3.5)  # past the grace period: the killed trial's heartbeat has stopped
    assert subprocess.run(args, capture_output=True, env=env).returncode == 0
    study = optuna.load_study(study_name="conv_siamese-tiny_koch-omniglot20", storage=f"sqlite:///{db}")
    trials = {t.number: t for t in study.trials}
    # finished trials kept as they were, not rerun
    assert {n: (trials[n].value, trials[n].datetime_complete) for n in before} == before
    # the killed trial failed and was queued again with its settings; its training resumed from its checkpoint
    assert trials[killed.number].state.name == "FAIL"
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == killed.number)
    assert retry.state.name == "COMPLETE" and retry.params == killed.params
    assert retry.user_attrs["resumed_from_epoch"] >= 1
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 3


@pytest.mark.slow
def test_the_same_study_runs_on_a_local_ray(data_root, tmp_path):
    pytest.importorskip("ray")
    from fewshot_bench.experiments import tune

    setup = tiny_setup(data_root)
    url, study, runner = tiny_study(tmp_path, setup)
    runner.threads = 1
    tune.optimize_on_ray(url, "s", runner, 2, workers=2)
    study = tune.open_study(url, "s", setup)
    # two workers stop once the study holds 2 finished trials; a trial the other worker had started
    # by then finishes too (Optuna's MaxTrialsCallback), so 2 or 3
    done = states(study)
    assert set(done) == {"COMPLETE"} and 2 <= len(done) <= 3
    # the workers wrote every trial's checkpoint into the store
    assert len(list((tmp_path / "checkpoints").glob("conv_siamese-*.pt"))) == len(done)


def test_a_study_goes_on_from_its_committed_history_when_its_store_is_lost(data_root, tmp_path):
    """A new machine has the committed results/tune/tune-STUDY.csv but not the store's study: --history
    seeds a new study with those trials (same numbers, settings, states and scores), trains only the
    rest, and writes the same history back."""
    import pandas as pd

    from fewshot_bench.cli.main import main

    def tune(store, out, trials, *extra):
        args = ["tune", "--method", "conv_siamese", "--preset", "tiny_koch", "--trials", str(trials),
                "--val-trials", "200", "--store", str(store), "--out", str(out), "--data-root", str(data_root)]
        args += [a for k in ("channels", "kernels", "fc_units", "momentum", "l2") for a in ("--space", f"{k}=off")]
        return main(args + list(extra))

    name = "tune-conv_siamese-tiny_koch-omniglot20"
    assert tune(tmp_path / "lost", tmp_path / "first", 2) == 0
    history = tmp_path / "first" / f"{name}.csv"
    assert tune(tmp_path / "new", tmp_path / "second", 3, "--history", str(history)) == 0
    study = optuna.load_study(study_name="conv_siamese-tiny_koch-omniglot20",
                              storage=f"sqlite:///{tmp_path / 'new' / 'tune' / 'conv_siamese-tiny_koch-omniglot20.db'}")
    trials = study.trials
    assert states(study) == ["COMPLETE", "COMPLETE", "COMPLETE"]
    assert [("imported_from" in t.user_attrs) for t in trials] == [True, True, False]  # one trained, two kept
    assert list(trials[2].params) == ["lr.0", "lr.1", "lr.2", "lr.3"]
    old, new = pd.read_csv(history), pd.read_csv(tmp_path / "second" / f"{name}.csv")
    pd.testing.assert_frame_equal(new.iloc[:2].drop(columns="best_so_far"), old.drop(columns="best_so_far"))
    summary = (tmp_path / "second" / f"{name}.md").read_text()
    assert "--history" not in summary  # the command that resumes the study, not the one that seeded it
    # a study that holds trials is never seeded again; a history from another search space is refused
    with pytest.raises(UserError, match="already holds 3 trials"):
        from fewshot_bench.experiments import tune as tuning

        tuning.import_history(study, tiny_setup(data_root), history)
    other = tiny_setup(data_root, space_changes={**TINY["space_changes"], "momentum": "float:0:0.9"})
    url, fresh, _ = tiny_study(tmp_path, other, name="other")
    with pytest.raises(UserError, match="does not fit this study's search space"):
        tuning.import_history(fresh, other, history)
    wider = tmp_path / "wider.csv"
    old.assign(**{"param:margin": 1.0}).to_csv(wider, index=False)  # a parameter this study does not search
    url, fresh, _ = tiny_study(tmp_path, tiny_setup(data_root), name="wider")
    with pytest.raises(UserError, match="trial 0 sets margin, which this study does not search"):
        tuning.import_history(fresh, tiny_setup(data_root), wider)
