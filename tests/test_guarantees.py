"""The promises the harness sells, each pinned by a test that fails when its guarding code goes:
the held-out check before every fit, resuming (not retraining), CIs pooled over draws, atomic
records, paired comparisons, the verification threshold, val-class firewalls, early stopping and
retraining on new data."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fewshot_bench.learning.trainer import TrainingLoop
from test_conv_siamese import synthetic_background, tiny


def no_training(*args, **kwargs):
    raise AssertionError("a method was fitted")


# ---------------------------------------------------------------- the held-out check before fit

def test_a_leaking_background_is_refused_by_run_before_any_training(data_root, monkeypatch):
    from fewshot_bench.api import PROTOCOLS
    from fewshot_bench.data.omniglot import omniglot
    from fewshot_bench.experiments.runner import RunSpec, run

    # the protocol hands over every alphabet, test alphabets included
    monkeypatch.setattr(PROTOCOLS.get("omniglot20"), "background", lambda self: omniglot(self.data_root))
    monkeypatch.setattr(TrainingLoop, "train", no_training)
    with pytest.raises(RuntimeError, match="held-out alphabets reached training data"):
        run(RunSpec("conv_siamese", "omniglot20", "tiny", data_root=data_root))


def test_a_leaking_background_is_refused_by_bench_run_before_any_training(data_root, monkeypatch, tmp_path):
    from fewshot_bench.api import METHODS, PROTOCOLS
    from fewshot_bench.cli.main import main
    from fewshot_bench.data.omniglot import omniglot

    monkeypatch.setattr(PROTOCOLS.get("lake_runs"), "background", lambda self: omniglot(self.data_root))
    monkeypatch.setattr(METHODS.get("conv_siamese"), "fit", no_training)
    with pytest.raises(RuntimeError, match="held-out alphabets"):
        main(["run", "--method", "conv_siamese", "--preset", "tiny", "--protocol", "lake_runs", "--no-progress",
              "--store", str(tmp_path / "s")])
    assert not list((tmp_path / "s").glob("*.json"))


# ---------------------------------------------------------------- resuming, not retraining

class Killed(Exception):
    pass


def test_an_interrupted_training_resumes_with_only_the_missing_epochs(tmp_path, monkeypatch):
    bg = synthetic_background()
    steps = []
    step = TrainingLoop._step
    monkeypatch.setattr(TrainingLoop, "_step", lambda self, *a: (steps.append(1), step(self, *a)))

    first = tiny(epochs=3, patience=3)
    first.work_dir = tmp_path

    def die_after_the_first_epoch(history):
        raise Killed

    first.epoch_callback = die_after_the_first_epoch  # after the first epoch's checkpoint is saved
    with pytest.raises(Killed):
        first.fit(bg)
    per_epoch = len(steps)
    steps.clear()
    again = tiny(epochs=3, patience=3)
    again.work_dir = tmp_path
    again.fit(bg)
    assert len(steps) == 2 * per_epoch  # epochs 2 and 3 only, not a retraining
    assert again.resumed_epochs_ == 1 and [h["epoch"] for h in again.history_] == [0, 1, 2]


# ---------------------------------------------------------------- CIs over trial sets, pooled over draws

def test_a_records_interval_pools_the_sets_of_every_draw_kept_apart_by_draw():
    from fewshot_bench.experiments.runner import RunSpec, build, make_record
    from fewshot_bench.stats import t_interval

    spec = RunSpec("pixel_1nn", "omniglot20", trial_seeds=[0, 1])
    method, protocol = build(spec)
    # two draws whose sets share names: draw 0 gets Tibetan#1 right, draw 1 gets it wrong
    draws = [{"trial_seed": 0, "correct": [1, 1, 0, 0], "groups": ["Tibetan#1", "Tibetan#1", "Ge_ez#1", "Ge_ez#1"],
              "accuracy": 0.5, "eval_seconds": 0.0},
             {"trial_seed": 1, "correct": [0, 0, 1, 0], "groups": ["Tibetan#1", "Tibetan#1", "Ge_ez#1", "Ge_ez#1"],
              "accuracy": 0.25, "eval_seconds": 0.0}]
    record = make_record(spec, method, protocol, draws, 0.0)
    per_set = [1.0, 0.0, 0.0, 0.5]  # four sets: each draw's sets are its own
    assert record["accuracy"] == pytest.approx(3 / 8)
    assert record["ci95"] == pytest.approx(t_interval(per_set)[1])
    assert record["draw_accuracies"] == [0.5, 0.25]


# ---------------------------------------------------------------- atomic record writes

def test_a_write_that_fails_midway_leaves_the_old_record_and_no_temporary_file(tmp_path, monkeypatch):
    from fewshot_bench.records import save_record

    record = {"run_id": "r1", "accuracy": 0.5}
    path = save_record(record, tmp_path)
    before = path.read_text()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the new content is half written when this fails
    with pytest.raises(OSError):
        save_record({"run_id": "r1", "accuracy": 0.9, "draws": list(range(10_000))}, tmp_path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r1.json"]


# ---------------------------------------------------------------- paired comparisons

@pytest.fixture()
def paired_store(data_root, tmp_path):
    """Two methods' records on identical trials (pixel_1nn's, and a copy with other answers)."""
    from fewshot_bench.experiments.runner import RunSpec, run
    from fewshot_bench.records import save_record

    a = run(RunSpec("pixel_1nn", "omniglot20", data_root=data_root))
    b = json.loads(json.dumps(a))
    rng = np.random.default_rng(0)
    for draw in b["draws"]:
        draw["correct"] = rng.integers(0, 2, len(draw["correct"])).tolist()
    b.update(method="mhd", run_id="b", finished="9999")
    store = tmp_path / "store"
    save_record(a, store)
    save_record(b, store)
    return store, a, b


def compare(store, *extra):
    from fewshot_bench.cli.main import main

    return main(["compare", "pixel_1nn", "mhd", "--protocol", "omniglot20", "--store", str(store), *extra])


def test_compare_prints_the_exact_mcnemar_of_the_stored_records(paired_store, capsys):
    from fewshot_bench.stats import mcnemar_exact

    store, a, b = paired_store
    assert compare(store) == 0
    test = mcnemar_exact(a["draws"][0]["correct"], b["draws"][0]["correct"])
    printed = " ".join(capsys.readouterr().out.split())
    assert f"pixel_1nn right, mhd wrong: {test['only_a']}; mhd right, pixel_1nn wrong: {test['only_b']}" in printed
    assert f"exact McNemar p = {test['p_value']:.3g} over 400 paired trials" in printed


@pytest.mark.parametrize("change", [{"seed": 1}, {"protocol_version": "0"}, {"trial_seeds": [1]}])
def test_compare_refuses_runs_that_did_not_face_the_same_trials(paired_store, change, capsys):
    from fewshot_bench.records import save_record

    store, _, b = paired_store
    (store / "b.json").unlink()
    save_record({**b, **change}, store)
    assert compare(store) == 2
    assert "has no run of mhd" in capsys.readouterr().err


# ---------------------------------------------------------------- the verification threshold

def test_the_verification_threshold_is_the_best_on_the_validation_pairs(data_root):
    from fewshot_bench.api import METHODS, PROTOCOLS
    from fewshot_bench.protocols.verification import best_threshold

    protocol = PROTOCOLS.get("verification")(data_root=data_root, pairs=400, threshold_pairs=400)
    method = METHODS.get("pixel_1nn")()
    result = protocol.evaluate(method, 0)
    held = protocol.threshold_pairs()
    on_validation = best_threshold(protocol.pair_scores(method, held), held.same)
    test_pairs, _ = protocol.pairs(0)
    on_test = best_threshold(protocol.pair_scores(method, test_pairs), test_pairs.same)
    assert on_validation != on_test  # else the test below could not tell them apart
    assert result["threshold"] == on_validation


# ---------------------------------------------------------------- val classes never reach training

def test_a_val_class_in_a_folders_training_data_is_refused(tmp_path, monkeypatch):
    import pandas as pd

    from fewshot_bench.api import PROTOCOLS
    from fewshot_bench.imageset import ImageSet
    from test_folder import grey_folder

    monkeypatch.setenv("FEWSHOT_BENCH_CACHE", str(tmp_path / "cache"))
    protocol = PROTOCOLS.get("folder")(root=str(grey_folder(tmp_path / "grey", classes=10)))
    train, val, test = protocol.part("train"), protocol.part("val"), protocol.part("test")
    protocol.check_background(train)
    leaky = ImageSet(np.concatenate([train.images, val.images]), pd.concat([train.meta, val.meta], ignore_index=True))
    with pytest.raises(RuntimeError, match="held-out classes of the folder reached training data"):
        protocol.check_background(leaky)
    # every held-out class leaked: the message counts them and names three
    everything = ImageSet(np.concatenate([train.images, val.images, test.images]),
                          pd.concat([train.meta, val.meta, test.meta], ignore_index=True))
    held = val.meta["character"].nunique() + test.meta["character"].nunique()
    assert held > 3
    with pytest.raises(RuntimeError, match=rf"^{held} held-out classes") as error:
        protocol.check_background(everything)
    assert str(error.value).split("e.g. ")[1].count("'") == 2 * 3


def test_a_val_character_in_vinyals_training_data_is_refused_under_train_split_train(data_root, tmp_path,
                                                                                     monkeypatch):
    import pandas as pd

    from fewshot_bench.api import PROTOCOLS
    from fewshot_bench.data.vinyals_split import class_set
    from fewshot_bench.imageset import ImageSet

    protocol = PROTOCOLS.get("vinyals")(data_root=data_root, train_split="train")
    train, val = class_set(data_root, "train"), class_set(data_root, "val")
    one_val = val.select(val.meta["label"] == val.meta["label"].iloc[0])
    leaky = ImageSet(np.concatenate([train.images, one_val.images]),
                     pd.concat([train.meta, one_val.meta], ignore_index=True))
    protocol.check_background(train)
    with pytest.raises(RuntimeError, match="^1 held-out Vinyals characters"):
        protocol.check_background(leaky)
    # test characters stay held out beside the val ones; the check reads the protocol's own data root
    test = class_set(data_root, "test")
    names = test.meta["alphabet"].str.split("@rot").str[0] + "/" + test.meta["character"]
    four = test.select(names.isin(names.unique()[:4]))  # four characters, every rotation
    leaky = ImageSet(np.concatenate([train.images, four.images]), pd.concat([train.meta, four.meta], ignore_index=True))
    monkeypatch.setenv("FEWSHOT_BENCH_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(RuntimeError, match="^4 held-out Vinyals characters") as error:
        protocol.check_background(leaky)
    assert str(error.value).split("e.g. ")[1].count("'") == 2 * 2 * 3  # three (alphabet, character) pairs


# ---------------------------------------------------------------- early stopping

def test_early_stopping_stops_where_the_validation_curve_says_and_keeps_that_epochs_weights(tmp_path, monkeypatch):
    from fewshot_bench.api import TrialSet

    curve = iter([0.1, 0.4, 0.3, 0.35, 0.2, 0.9])  # best at epoch 2; patience 2 stops after epoch 4
    monkeypatch.setattr(TrainingLoop, "_validate", lambda self, validation: next(curve))
    bg = synthetic_background()
    m = tiny(epochs=6, patience=2, keep="best")
    m.work_dir = tmp_path
    weights = []
    m.epoch_callback = lambda history: weights.append({k: v.clone() for k, v in m.model_.state_dict().items()})
    m.fit(bg, [TrialSet(bg.images[:5], bg.images[6:11], np.arange(5), "v")])
    assert [h["validation_accuracy"] for h in m.history_] == [0.1, 0.4, 0.3, 0.35]
    kept = m.model_.state_dict()
    for name, value in weights[1].items():
        torch.testing.assert_close(kept[name], value)
    assert any(not torch.equal(kept[name], weights[-1][name]) for name in kept)


# ---------------------------------------------------------------- new data, new training

def test_other_background_data_gets_its_own_checkpoint_and_a_new_training(tmp_path):
    bg = synthetic_background()
    other = synthetic_background(characters=5)
    runs = []
    for data in (bg, other, bg):
        m = tiny(epochs=1)
        m.work_dir = tmp_path
        m.fit(data)
        runs.append((m.checkpoint_key_, m.reused_checkpoint_))
    (key_a, reused_a), (key_b, reused_b), (key_c, reused_c) = runs
    assert key_a != key_b and not reused_a and not reused_b
    assert key_c == key_a and reused_c
    assert len(list(Path(tmp_path).glob("*.pt"))) == 2

