"""The bookkeeping under every number: the results store (records.py), the run record
(runner.py), scoring trial sets (evaluation.py), checkpoints and early stopping, and the held-out
checks of the data. Fast: no training, no real data. Mutation testing runs these (see
tests/mutation_report.py), so each test pins exact values."""
import gzip
import json
import os
import platform
import re
import resource
import stat
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fewshot_bench.api import Method, TrialSet
from fewshot_bench.errors import UserError
from fewshot_bench.imageset import ImageSet
import fewshot_bench
from fewshot_bench import records
from fewshot_bench.stats import set_interval
from fewshot_bench.records import (epoch_gflop, epoch_seconds, load_records, new_run_id, save_record, still_improving,
                                   store_dir, stored_keys, temp_beside, training_budget, training_precision,
                                   training_seconds, write_atomic)


# ---------------------------------------------------------------- the store

def test_the_store_is_the_option_else_the_environment_else_runs(monkeypatch):
    monkeypatch.setenv("FEWSHOT_BENCH_STORE", "/from/env")
    assert store_dir("mine") == Path("mine")
    assert store_dir() == Path("/from/env")
    monkeypatch.delenv("FEWSHOT_BENCH_STORE")
    assert store_dir() == Path("runs")
    monkeypatch.setenv("HOME", "/home/someone")
    assert store_dir("~/store") == Path("/home/someone/store")


def test_a_run_id_names_the_run_and_never_repeats():
    ids = {new_run_id("conv_siamese", "omniglot20", 3) for _ in range(50)}
    assert len(ids) == 50
    assert all(re.fullmatch(r"\d{8}-\d{6}-conv_siamese-omniglot20-s3-[0-9a-f]{6}", i) for i in ids)


def test_a_temporary_file_sits_beside_its_target_with_a_plain_files_mode(tmp_path):
    old = os.umask(0o027)
    try:
        fd, tmp = temp_beside(tmp_path / "r.json")
        os.close(fd)
    finally:
        os.umask(old)
    assert Path(tmp).parent == tmp_path and Path(tmp).name.startswith(".r.json.") and tmp.endswith(".tmp")
    assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o640  # 0666 less the umask, not mkstemp's 0600
    old = os.umask(0)
    try:
        fd, tmp = temp_beside(tmp_path / "r.json")
        os.close(fd)
        assert os.umask(0) == 0  # the umask is left as it was
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o666  # never executable


def test_an_atomic_write_makes_the_folder_and_takes_text_or_bytes(tmp_path):
    path = tmp_path / "a" / "b" / "f"
    write_atomic(path, "text")
    assert path.read_text() == "text"
    write_atomic(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    assert [p.name for p in path.parent.iterdir()] == ["f"]


def test_a_record_is_saved_compact_under_its_run_id(tmp_path):
    path = save_record({"run_id": "r7", "a": [1, 2]}, tmp_path)
    assert path == tmp_path / "r7.json"
    assert path.read_text() == '{"run_id":"r7","a":[1,2]}'


def test_records_load_oldest_first_skipping_other_schemas_and_reporting_unreadable_files(tmp_path, capsys):
    with pytest.raises(UserError, match="no results store at"):
        load_records(tmp_path / "missing")
    for name, finished, schema in (("a", "2026-01-02", 1), ("b", "2026-01-01", 1), ("c", "2026-01-03", 2),
                                   ("d", "2026-01-04", 1)):
        save_record({"run_id": name, "finished": finished, "schema": schema}, tmp_path)
    save_record({"run_id": "e", "schema": 1}, tmp_path)  # no stamp: oldest
    (tmp_path / "broken.json").write_text("{not json")  # sorted between b and c: the files after it still load
    assert [r["run_id"] for r in load_records(tmp_path)] == ["e", "b", "a", "d"]
    assert "warning: skipping unreadable run record" in capsys.readouterr().out


def test_stored_keys_are_the_records_keys_and_follow_a_changed_file(tmp_path):
    from fewshot_bench.keys import record_key

    assert stored_keys(tmp_path / "missing") == set()
    base = {"schema": 1, "method": "pixel_1nn", "preset": None, "method_config": {}, "protocol": "omniglot20",
            "protocol_config": {"a": 1}, "seed": 0, "trial_seeds": [0]}
    save_record({**base, "run_id": "r1"}, tmp_path)
    save_record({**base, "run_id": "old", "schema": 0}, tmp_path)
    (tmp_path / "broken.json").write_text("{")
    assert stored_keys(tmp_path) == {record_key(base)}
    changed = {**base, "seed": 5}
    save_record({**changed, "run_id": "r1"}, tmp_path)
    assert stored_keys(tmp_path) == {record_key(changed)}


def test_stored_keys_parse_a_file_again_only_when_it_changed(tmp_path, monkeypatch):
    base = {"schema": 1, "method": "m", "preset": None, "method_config": {}, "protocol": "p",
            "protocol_config": {}, "seed": 0, "trial_seeds": [0]}
    for k in range(3):
        save_record({**base, "seed": k, "run_id": f"r{k}"}, tmp_path)
    parsed = []
    loads = json.loads
    monkeypatch.setattr(records.json, "loads", lambda text: (parsed.append(1), loads(text))[1])
    first = stored_keys(tmp_path)
    assert len(first) == 3 and len(parsed) == 3
    assert stored_keys(tmp_path) == first and len(parsed) == 3  # polling an unchanged store parses nothing
    save_record({**base, "seed": 9, "run_id": "r0"}, tmp_path)
    assert len(stored_keys(tmp_path)) == 3 and len(parsed) == 4


# ---------------------------------------------------------------- what a training cost

def test_a_pack_carries_a_stores_runs_without_their_pictures_and_never_replaces_a_run(tmp_path):
    from fewshot_bench.keys import record_key
    from fewshot_bench.records import pack_records, unpack_records

    base = {"schema": 1, "method": "pixel_1nn", "preset": None, "method_config": {}, "protocol": "omniglot20",
            "protocol_config": {}, "trial_seeds": [0], "accuracy": 0.5, "finished": "2026-01-01"}
    draw = {"trial_seed": 0, "correct": [1, 0], "groups": ["A#1", "A#1"], "predictions": [3, 1],
            "answers": [3, 2], "score_correct": [0.9, 0.2], "score_chosen": [0.9, 0.4], "sets": [{"group": "A#1"}]}
    here, there = tmp_path / "here", tmp_path / "there"
    for seed in (0, 1):
        save_record({**base, "run_id": f"r{seed}", "seed": seed, "draws": [draw]}, here)
    pack = tmp_path / "runs.jsonl.gz"
    assert pack_records(here, pack) == 2
    first = pack.read_bytes()
    pack_records(here, pack)
    assert pack.read_bytes() == first  # the same runs make the same bytes
    # a run of seed 0 done there already stays as it is; seed 1 arrives without its pictures' fields
    save_record({**base, "run_id": "mine", "seed": 0, "draws": [draw]}, there)
    assert unpack_records(pack, there) == (1, 1)
    assert unpack_records(pack, there) == (0, 2)
    by_id = {r["run_id"]: r for r in load_records(there)}
    assert sorted(by_id) == ["mine", "r1"] and "packed" not in by_id["mine"]
    assert by_id["r1"]["draws"] == [{"trial_seed": 0, "correct": [1, 0], "groups": ["A#1", "A#1"]}]
    assert by_id["r1"]["packed"] and record_key(by_id["r1"]) == record_key({**base, "seed": 1})
    with pytest.raises(UserError, match="not a pack of run records"):
        unpack_records(tmp_path / "here" / "r0.json", there)
    with pytest.raises(UserError, match="no pack at"):
        unpack_records(tmp_path / "missing.jsonl.gz", there)
    # a pack with a record of another schema writes nothing, not the records before it
    pack.write_bytes(gzip.compress("".join(json.dumps({**base, "run_id": f"r{s}", "seed": s, "schema": 1 + (s == 9)})
                                           + "\n" for s in (5, 9)).encode()))
    with pytest.raises(UserError, match="record schema 2"):
        unpack_records(pack, tmp_path / "third")
    assert not (tmp_path / "third").exists()


def epochs(*seconds, member=None, **extra):
    return [{"seconds": s, "member": member, **extra} for s in seconds]


def test_training_seconds_of_a_reused_checkpoint_are_the_training_runs():
    history = epochs(3.0, 4.0)
    trained = {"train_seconds": 50.0, "training": {"reused_checkpoint": False, "history": history}}
    reused = {"train_seconds": 0.5, "training": {"reused_checkpoint": True, "history": history, "epoch_seconds": 9.0}}
    assert training_seconds(trained) == 50.0
    assert training_seconds({"train_seconds": 2.0}) == 2.0
    other = {"train_seconds": 80.0, "training": {"reused_checkpoint": False, "history": epochs(1.0)}}
    assert training_seconds(reused, [other, trained]) == 50.0
    assert training_seconds(reused, [reused, other, trained]) == 50.0  # another reuse is not the training
    assert training_seconds(reused, [other]) == 7.0  # the recorded epochs
    empty = {"train_seconds": 0.5, "training": {"reused_checkpoint": True, "history": [], "epoch_seconds": 9.0}}
    assert training_seconds(empty) == 9.0


def test_an_ensembles_epoch_seconds_are_its_slowest_members():
    assert epoch_seconds(epochs(3.0, 2.0, member=0) + epochs(4.0, member=1)) == 5.0
    assert epoch_seconds(epochs(1.0, 2.0)) == 3.0
    assert epoch_seconds([]) == 0.0


def test_an_epochs_gflop_counts_the_images_of_all_its_steps():
    assert epoch_gflop({"step_gflop": 2.0, "step_images": 4, "images": 10, "steps": 3}) == 5.0
    assert epoch_gflop({"step_gflop": 2.0, "steps": 3}) == 6.0
    assert epoch_gflop({"step_gflop": 2.0, "step_images": 0, "steps": 3}) == 6.0
    assert epoch_gflop({"step_gflop": 2.0, "step_images": 4}) == 0.0
    assert epoch_gflop({}) == 0.0
    assert epoch_gflop({"steps": 3}) == 0.0 and epoch_gflop({"step_gflop": 2.0}) == 0.0


def test_precision_names_what_every_epoch_ran_in():
    assert training_precision([{"bf16": True}, {"bf16": True}]) == "bf16"
    assert training_precision([{"bf16": False}, {}]) == "fp32"
    assert training_precision([{"bf16": True}, {}]) == "bf16+fp32"
    assert training_precision([]) == "fp32"


def test_a_training_budget_sums_every_epoch():
    history = [{"steps": 2, "images": 8, "step_gflop": 1.0, "step_images": 4, "seconds": 1.5, "bf16": True},
               {"steps": 3, "images": 12, "step_gflop": 1.0, "step_images": 4, "seconds": 2.5, "bf16": True}]
    assert training_budget({"training": None}) is None
    assert training_budget({}) is None
    assert training_budget({"training": {"history": history}}) == {
        "steps": 5, "images": 20, "gflop": 5.0, "seconds": 4.0, "precision": "bf16", "still_improving": None}
    assert training_budget({"training": {"history": [{"seconds": 1.0}]}})["steps"] == 0
    # the verdict reads the validation's trial count: with it the accuracies decide (still improving),
    # without it the (flat) loss does
    rising = [{**h, "seconds": 1.0} for h in curve(.1, .2, .3, .4, .5, .5, .5, .56)]
    assert training_budget({"training": {"history": rising, "validation_trials": 400}})["still_improving"] is True
    assert training_budget({"training": {"history": rising}})["still_improving"] is False
    falling = [{**h, "loss": 1.0 - k / 10} for k, h in enumerate(rising)]  # and no trial count: the loss decides
    assert training_budget({"training": {"history": falling}})["still_improving"] is True
    assert training_budget({"training": {"history": [{"seconds": 1.0}]}})["images"] == 0


def curve(*accuracies, member=None):
    return [{"validation_accuracy": a, "loss": 1.0, "member": member} for a in accuracies]


def test_still_improving_compares_the_last_quarter_with_the_validations_own_noise():
    # 8 epochs: the last 2 against the 6 before; 400 trials: half-width at 0.5 is 0.049
    assert still_improving(curve(.1, .2, .3, .4, .5, .5, .5, .56)) is False  # no trial count: the (flat) loss decides
    assert still_improving(curve(.1, .2, .3, .4, .5, .5, .5, .56), 400) is True
    assert still_improving(curve(.1, .2, .3, .4, .5, .5, .5, .54), 400) is False
    assert still_improving(curve(.1, .2, .3, .4, .5, .5, .5, .54), 100_000) is True
    assert still_improving(curve(.1, .2, .3), 400) is None  # under 4 epochs: unknown
    falling = [{**h, "loss": loss} for h, loss in zip(curve(.5, .5, .5, .5), (1.0, 1.0, 1.0, 0.5))]
    assert still_improving(falling) is True  # no trial count: the loss, not the (flat) accuracies
    assert still_improving(curve(.1, .2, .3, .9), 400) is True  # 4 epochs: the last against 3
    # one member still improving is enough
    flat = curve(.5, .5, .5, .5, member=0)
    assert still_improving(flat + curve(.1, .1, .1, .9, member=1), 400) is True
    assert still_improving(flat + curve(.1, .1, .1, .1, member=1), 400) is False
    # members are judged apart: pooled, member 1's plateau would hide member 0's rise
    assert still_improving(curve(.1, .2, .3, .4, member=0) + curve(.9, .9, .9, .9, member=1), 400) is True
    # a member too short to judge is skipped, not the end of the judging
    assert still_improving(curve(.1, .2, .3, member=0) + curve(.1, .1, .1, .9, member=1), 400) is True


def test_without_validation_still_improving_asks_whether_the_loss_fell_five_percent():
    def losses(*values):
        return [{"validation_accuracy": None, "loss": v} for v in values]
    assert still_improving(losses(9, 9, 9, 9, 1.0, 1.0, 0.94, 0.94), 400) is True
    assert still_improving(losses(9, 9, 9, 9, 1.0, 1.0, 0.96, 0.96), 400) is False
    assert still_improving(losses(9, 9, 9, 9, 1.0, 1.0, 0.95, 0.95), 400) is False  # exactly 5%: not below
    assert still_improving(losses(5, 1.0, 1.0, 0.94)) is True  # 4 epochs: the last against the one before
    assert still_improving(losses(9, 9, 1.0, 2.0, 1.5)) is True  # 5 epochs: the last (1.5) against the one before (2.0)
    assert still_improving(losses(9, 9, 9, 9, 2.0, 2.0, 1.8, 1.8)) is True
    assert still_improving(losses(9, 9, 9, 9, 2.0, 2.0, 1.95, 1.95)) is False


# ---------------------------------------------------------------- the run record

def test_a_runs_trial_seeds_default_to_its_seed_and_a_fixed_set_is_evaluated_once():
    from fewshot_bench.experiments.runner import RunSpec, trial_seeds

    assert trial_seeds(RunSpec("pixel_1nn", "omniglot20", seed=4)) == [4]
    assert trial_seeds(RunSpec("pixel_1nn", "omniglot20", seed=4, trial_seeds=[0, 1])) == [0, 1]
    assert trial_seeds(RunSpec("pixel_1nn", "lake_runs", seed=4, trial_seeds=[0, 1])) == [4]


def test_a_spec_builds_its_method_at_its_preset_and_its_protocol_on_its_data(tmp_path):
    from fewshot_bench.api import METHODS
    from fewshot_bench.experiments.runner import RunSpec, build

    method, protocol = build(RunSpec("conv_siamese", "omniglot20", seed=3, data_root=tmp_path / "data",
                                     work_dir=tmp_path / "ck", method_options={"epochs": 1}))
    assert method.preset == "cpu" and method.seed == 3 and method.work_dir == tmp_path / "ck"
    assert method.config == METHODS.get("conv_siamese").make_config("cpu", {"epochs": 1})
    assert protocol.data_root == tmp_path / "data"
    tiny, _ = build(RunSpec("conv_siamese", "omniglot20", "tiny"))
    assert tiny.preset == "tiny" and tiny.config.input_size == 16


class Recorder:
    """A protocol and a method that log what the runner hands them."""

    version, ci_unit, fixed_trials = "7", "trial sets", False

    def __init__(self):
        self.calls, self.history_ = [], [{"seconds": 4.0, "validation_accuracy": 0.5}]

    def check_feasible(self, method):
        self.calls.append(("feasible", method))

    def background(self):
        return "the background"

    def check_background(self, background):
        self.calls.append(("check", background))

    def validation(self, seed):
        return f"validation {seed}"

    def fit(self, background, validation):
        self.calls.append(("fit", background, validation, self.progress))

    def evaluate(self, method, trial_seed, progress):
        self.calls.append(("evaluate", method, trial_seed, progress))
        return fake_draw(trial_seed, [1, 0], ["A#1", "A#1"])

    def config_dict(self):
        return {}

    def provenance(self):
        return None


def test_run_checks_then_fits_once_on_the_checked_background_and_evaluates_every_draw(monkeypatch):
    from fewshot_bench.experiments import runner

    method, protocol = Recorder(), Recorder()
    method.preset = None
    monkeypatch.setattr(runner, "build", lambda spec: (method, protocol))
    clock = iter([100.0, 107.5])
    monkeypatch.setattr(runner.time, "perf_counter", lambda: next(clock))
    stages = []

    class Progress:
        def stage(self, label):
            stages.append(label)

    progress = Progress()
    record = runner.run(runner.RunSpec("pixel_1nn", "omniglot20", seed=5, trial_seeds=[1, 2]), progress)
    assert protocol.calls == [("feasible", method), ("check", "the background"),
                              ("evaluate", method, 1, progress), ("evaluate", method, 2, progress)]
    assert method.calls == [("fit", "the background", "validation 5", progress)]
    assert stages == ["pixel_1nn on omniglot20, trial seed 1", "pixel_1nn on omniglot20, trial seed 2"]
    assert record["train_seconds"] == 7.5 and record["trial_seeds"] == [1, 2]
    assert record["training"]["epoch_seconds"] == 4.0 and record["protocol_version"] == "7"


def fake_draw(trial_seed, correct, groups, seconds=1.0):
    return {"trial_seed": trial_seed, "correct": correct, "groups": groups,
            "accuracy": float(np.mean(correct)), "eval_seconds": seconds}


def test_a_record_holds_the_run_its_draws_and_the_spread_between_them():
    from fewshot_bench.experiments.runner import CODE_VERSION, RunSpec, build, make_record
    from fewshot_bench.keys import record_key, run_key
    from fewshot_bench.stats import t_interval

    spec = RunSpec("pixel_1nn", "omniglot20", seed=2, trial_seeds=[0, 1], protocol_options={"sets_per_alphabet": 3})
    method, protocol = build(spec)
    draws = [fake_draw(0, [1, 0, 1, 1], ["A#1", "A#1", "B#1", "B#1"], 1.5),
             fake_draw(1, [0, 0, 1, 0], ["A#1", "A#1", "B#1", "B#1"], 2.0)]
    record = make_record(spec, method, protocol, draws, 12.5)
    assert record["schema"] == records.SCHEMA
    assert (record["method"], record["preset"], record["protocol"], record["seed"]) == ("pixel_1nn", None, "omniglot20", 2)
    assert record["protocol_version"] == protocol.version and record["protocol_config"]["sets_per_alphabet"] == 3
    assert record["method_config"] == method.config_dict()
    assert record["trial_seeds"] == [0, 1] and record["n_trials"] == 8
    assert record["draw_accuracies"] == [0.75, 0.25]
    assert record["draw_std"] == pytest.approx(np.std([0.75, 0.25], ddof=1))
    assert (record["train_seconds"], record["eval_seconds"]) == (12.5, 3.5)
    assert record["ci_unit"] == protocol.ci_unit and record["training"] is None and record["draws"] == draws
    assert record["run_id"].split("-")[2:5] == ["pixel_1nn", "omniglot20", "s2"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", record["finished"])
    # per alphabet (A: 1/4, B: 3/4 over both draws)
    assert record["alphabets"] == 2 and record["ci95_alphabets"] == pytest.approx(t_interval([0.25, 0.75])[1])
    assert "protocol_data" not in record
    env = record["environment"]
    assert env["threads"] == torch.get_num_threads() and env["torch"] == torch.__version__
    assert env["python"].count(".") == 2 and env["numpy"] == np.__version__
    assert env["cpu_isa"] == torch.backends.cpu.get_cpu_capability()
    assert env["fewshot_bench"] == fewshot_bench.__version__
    assert env["machine"] == f"{platform.machine()} {platform.processor() or ''}".strip()
    assert (env["git_commit"], env["git_dirty"]) == CODE_VERSION
    assert record_key(record) == run_key("pixel_1nn", None, method.config_dict(), "omniglot20",
                                         protocol.config_dict(), 2, [0, 1])
    one = make_record(RunSpec("pixel_1nn", "omniglot20"), method, protocol, draws[:1], 0.0)
    assert one["draw_std"] == 0.0


def test_the_environment_keeps_the_peak_memory_in_mib():
    from fewshot_bench.experiments.runner import environment

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    peak = environment()["peak_rss_mib"]
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert before / 1024 <= peak <= after / 1024


def test_the_environment_names_the_processor_where_the_platform_does(monkeypatch):
    from fewshot_bench.experiments import runner

    monkeypatch.setattr(runner.platform, "processor", lambda: "Some CPU")
    assert runner.environment()["machine"] == f"{platform.machine()} Some CPU"
    monkeypatch.setattr(runner.platform, "processor", lambda: "")
    assert runner.environment()["machine"] == platform.machine()


def test_a_folders_record_keeps_its_split():
    from fewshot_bench.experiments.runner import RunSpec, make_record

    class Split:
        version, ci_unit = "1", "episodes"

        def config_dict(self):
            return {}

        def provenance(self):
            return {"split": "kept"}

    method = Method()
    record = make_record(RunSpec("pixel_1nn", "folder"), method, Split(), [fake_draw(0, [1], ["x"])], 0.0)
    assert record["protocol_data"] == {"split": "kept"}
    assert "alphabets" not in record  # sets not named alphabet#k


def test_the_interval_over_alphabets_needs_every_set_named_by_its_alphabet():
    from fewshot_bench.experiments.runner import alphabet_interval

    assert alphabet_interval([], []) == {}
    assert alphabet_interval([1, 0], ["A#1", "episode3"]) == {}
    got = alphabet_interval([1, 1, 0, 1, 0, 0], ["A#1", "A#2", "B#1", "B#1", "C#1", "C#1"])
    assert got["alphabets"] == 3
    # per alphabet 1, 1/2, 0: sd 1/2, t(0.975, 2 df) = 4.3027
    assert got["ci95_alphabets"] == pytest.approx(4.302652729749464 * 0.5 / np.sqrt(3))


def test_a_training_summary_keeps_the_training_runs_cost_and_best_validation():
    from fewshot_bench.experiments.runner import training_summary

    assert training_summary(Method()) is None
    from fewshot_bench.experiments.runner import RunSpec, make_record

    class Split:
        version, ci_unit = "1", "episodes"

        def config_dict(self):
            return {}

        def provenance(self):
            return None

    trained = Method()
    trained.history_ = [{"seconds": 2.0, "validation_accuracy": 0.4}]
    record = make_record(RunSpec("pixel_1nn", "folder"), trained, Split(), [fake_draw(0, [1], ["x"])], 0.0)
    assert record["training"]["epochs"] == 1
    m = Method()
    m.history_ = [{"seconds": 2.0, "validation_accuracy": 0.4}, {"seconds": 3.0, "validation_accuracy": None}]
    m.reused_checkpoint_, m.validation_trials_, m.worker_peak_rss_mib_ = True, 320, [100.0]
    assert training_summary(m) == {"reused_checkpoint": True, "epochs": 2, "epoch_seconds": 5.0,
                                   "best_validation": 0.4, "validation_trials": 320,
                                   "worker_peak_rss_mib": [100.0], "history": m.history_,
                                   "learning": {"learned": None, "reason": None, "untrained_validation": None,
                                                "untrained_ci95": None, "best_validation": 0.4, "final_loss": None,
                                                "constant_loss": None}}
    fresh = Method()
    fresh.history_ = []
    assert training_summary(fresh) == {"reused_checkpoint": False, "epochs": 0, "epoch_seconds": 0.0,
                                       "best_validation": None, "validation_trials": 0,
                                       "worker_peak_rss_mib": [], "history": [],
                                       "learning": {"learned": None, "reason": None}}


def test_dirty_means_a_tracked_file_changed_since_the_commit(tmp_path, monkeypatch):
    from fewshot_bench.experiments import runner

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "code.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "code.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], check=True)
    monkeypatch.setattr(runner, "__file__", str(repo / "runner.py"))  # where the runner asks git
    monkeypatch.chdir(tmp_path)  # not a repository: git must run where the code is
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert runner.git_commit() == commit and runner.git_dirty() is False
    (repo / "notes.txt").write_text("untracked")
    assert runner.git_dirty() is False  # an untracked file does not change the code
    (repo / "code.py").write_text("x = 2\n")
    assert runner.git_dirty() is True


def test_the_code_version_is_the_checkouts_commit_and_whether_it_was_changed(tmp_path, monkeypatch):
    from fewshot_bench.experiments import runner

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(runner.__file__).parent, capture_output=True,
                          text=True)
    if head.returncode:
        pytest.skip("not a git checkout")
    assert runner.git_commit() == head.stdout.strip()
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                            cwd=Path(runner.__file__).parent, capture_output=True, text=True).stdout
    assert runner.git_dirty() is bool(status.strip())
    assert runner._git("no-such-command") is None
    monkeypatch.setattr(runner.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(OSError("no git")))
    assert runner.git_commit() is None and runner.git_dirty() is None


def test_a_specs_key_is_the_key_of_the_record_its_run_makes():
    from fewshot_bench.experiments.runner import RunSpec, build, make_record, spec_key
    from fewshot_bench.keys import record_key

    spec = RunSpec("affine", "omniglot20", preset=None, method_options={"blur_sigma": 2.0}, seed=1, trial_seeds=[2, 3])
    method, protocol = build(spec)
    record = make_record(spec, method, protocol, [fake_draw(2, [1], ["A#1"]), fake_draw(3, [0], ["A#1"])], 0.0)
    assert spec_key(spec) == record_key(record)
    assert method.config.blur_sigma == 2.0 and method.seed == 1
    preset = RunSpec("conv_siamese", "omniglot20", "tiny")  # a preset is part of the key
    method, protocol = build(preset)
    assert spec_key(preset) == record_key(make_record(preset, method, protocol, [fake_draw(0, [1], ["A#1"])], 0.0))


# ---------------------------------------------------------------- scoring trial sets

class Scripted(Method):
    """Scores each query against each support by the negated distance of their mean ink; counts
    the images prepared."""

    def __init__(self, shape=None, value=None):
        super().__init__()
        self.shape, self.value, self.prepared = shape, value, 0

    def prepare(self, images):
        self.prepared += len(images)
        return torch.as_tensor(np.asarray(images), dtype=torch.float32)

    def score(self, queries, support):
        scores = -(queries.mean(dim=(1, 2))[:, None] - support.mean(dim=(1, 2))[None, :]).abs()
        if self.value is not None:
            scores[0, 0] = self.value
        return scores if self.shape is None else scores[: self.shape[0], : self.shape[1]]


def flat(*levels):
    return np.stack([np.full((2, 2), v, np.float32) for v in levels])


def test_evaluation_scores_every_set_and_keeps_each_trials_answer_prediction_and_scores():
    from fewshot_bench.evaluation import evaluate_trial_sets

    one = TrialSet(flat(1, 5), flat(0, 5, 9), np.array([0, 2]), "A#1", query_ids=["q1", "q2"],
                   support_ids=["s0", "s5", "s9"])
    two = TrialSet(flat(9), flat(9, 1), np.array([0]), "B#1")
    calls = []

    class Progress:
        def start(self, n):
            calls.append(("start", n))

        def advance(self):
            calls.append("advance")

    result = evaluate_trial_sets(Scripted(), [one, two], Progress())
    # set A: query 1 picks support 0 (right), query 5 picks support 1 (wrong: answer 2)
    assert result["predictions"] == [0, 1, 0] and result["correct"] == [1, 0, 1]
    assert result["answers"] == [0, 2, 0] and result["groups"] == ["A#1", "A#1", "B#1"]
    assert result["score_correct"] == [-1.0, -4.0, 0.0] and result["score_chosen"] == [-1.0, 0.0, 0.0]
    assert result["accuracy"] == pytest.approx(2 / 3) and result["n_trials"] == 3 and result["n_sets"] == 2
    assert result["sets"] == [{"group": "A#1", "queries": ["q1", "q2"], "support": ["s0", "s5", "s9"]}]
    assert calls == [("start", 2), "advance", "advance"] and result["eval_seconds"] > 0
    assert result["ci95"] == pytest.approx(set_interval([1, 0, 1], ["A#1", "A#1", "B#1"])[1])


def test_evaluation_seconds_are_the_time_it_took(monkeypatch):
    from fewshot_bench import evaluation

    clock = iter([50.0, 52.25])
    monkeypatch.setattr(evaluation.time, "perf_counter", lambda: next(clock))
    result = evaluation.evaluate_trial_sets(Scripted(), [TrialSet(flat(1), flat(1, 2), np.array([0]), "A#1")])
    assert result["eval_seconds"] == 2.25


def test_an_image_shared_by_sets_is_prepared_once():
    from fewshot_bench.evaluation import evaluate_trial_sets, shared_images

    a = TrialSet(flat(1, 2), flat(3, 4), np.array([0, 1]), "a", query_ids=["x1", "x2"], support_ids=["x3", "x4"])
    b = TrialSet(flat(2, 3), flat(4, 1), np.array([0, 1]), "b", query_ids=["x2", "x3"], support_ids=["x4", "x1"])
    c = TrialSet(flat(1), flat(1), np.array([0]), "c")  # no identities: its own rows
    images, indexed = shared_images([a, b, c])
    assert images[:, 0, 0].tolist() == [1, 2, 3, 4, 1, 1]
    assert [(q.tolist(), s.tolist()) for q, s in indexed] == [([0, 1], [2, 3]), ([1, 2], [3, 0]), ([4], [5])]
    assert indexed[0][0].dtype == np.int64
    method = Scripted()
    evaluate_trial_sets(method, [a, b, c])
    assert method.prepared == 6


def test_k_shot_sets_score_each_class_by_the_mean_of_its_shots():
    from fewshot_bench.evaluation import class_means, evaluate_trial_sets

    scores = torch.tensor([[1.0, 3.0, 10.0], [0.0, 2.0, 4.0]])
    torch.testing.assert_close(class_means(scores, torch.tensor([0, 0, 1])), torch.tensor([[2.0, 10.0], [1.0, 4.0]]))
    torch.testing.assert_close(class_means(scores.double(), torch.tensor([1, 1, 0])),
                               torch.tensor([[10.0, 2.0], [4.0, 1.0]], dtype=torch.float64))
    # class 0's shots at 0 and 4, class 1's at 2 and 2: a query at 1.9 is nearer class 1 on average
    k_shot = TrialSet(flat(1.9), flat(0, 4, 2, 2), np.array([1]), "k", support_class=np.array([0, 0, 1, 1]),
                      query_ids=["q"], support_ids=["a", "b", "c", "d"])
    method = Scripted()
    received = []
    score_sets = method.score_sets
    method.score_sets = lambda sets: (received.extend(sets), score_sets(sets))[1]
    result = evaluate_trial_sets(method, [k_shot])
    assert result["predictions"] == [1] and result["correct"] == [1]
    assert received[0][2].tolist() == [0, 0, 1, 1]  # a method that scores classes is told them
    assert result["sets"][0]["support_class"] == [0, 0, 1, 1]


@pytest.mark.parametrize("method, message", [(Scripted(shape=(1, 2)), r"returned shape \(1, 2\), expected \(2, 3\)"),
                                             (Scripted(value=float("nan")), "non-finite scores on A#1"),
                                             (Scripted(value=float("inf")), "non-finite scores on A#1")])
def test_a_method_returning_wrong_scores_is_stopped(method, message):
    from fewshot_bench.evaluation import evaluate_trial_sets

    with pytest.raises(RuntimeError, match=message):
        evaluate_trial_sets(method, [TrialSet(flat(1, 5), flat(0, 5, 9), np.array([0, 2]), "A#1")])


def test_scores_are_kept_to_five_significant_digits():
    from fewshot_bench.evaluation import rounded

    assert rounded([0.123456789, 12345.678, -1.0000049]) == [0.12346, 12346.0, -1.0]
    assert all(type(v) is float for v in rounded(np.array([1, 2], dtype=np.float32)))


# ---------------------------------------------------------------- checkpoints and early stopping

def test_the_data_fingerprint_changes_with_the_pixels_or_the_labels():
    from fewshot_bench.learning.checkpoints import data_fingerprint

    images = np.zeros((2, 3, 3), np.uint8)
    meta = pd.DataFrame({"alphabet": ["A", "A"], "character": ["c1", "c2"]})
    base = data_fingerprint(ImageSet(images, meta))
    assert base == data_fingerprint(ImageSet(images.copy(), meta.copy()))
    changed = images.copy()
    changed[1, 1, 1] = 1
    assert data_fingerprint(ImageSet(changed, meta)) != base
    relabelled = meta.assign(character=["c2", "c1"])
    assert data_fingerprint(ImageSet(images, relabelled)) != base


def test_a_checkpoint_round_trips_and_a_damaged_one_is_retrained(tmp_path):
    from fewshot_bench.learning.checkpoints import Checkpoint

    nowhere = Checkpoint(None, "k")
    nowhere.save({"a": 1})
    assert nowhere.path is None and nowhere.load() is None
    checkpoint = Checkpoint(tmp_path / "ck", "key1")
    assert checkpoint.path == tmp_path / "ck" / "key1.pt" and checkpoint.load() is None
    checkpoint.save({"epoch": 3, "weights": torch.arange(4)})
    loaded = checkpoint.load()
    assert loaded["epoch"] == 3 and torch.equal(loaded["weights"], torch.arange(4))
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["key1.pt"]
    checkpoint.path.write_bytes(b"half a file")
    assert checkpoint.load() is None
    # checkpoints hold more than tensors (numpy arrays, RNG states): they load in full
    checkpoint.save({"rng": np.random.default_rng(0).bit_generator.state, "kept": np.arange(3)})
    assert checkpoint.load()["kept"].tolist() == [0, 1, 2]
    (tmp_path / "folder.pt").mkdir()
    assert Checkpoint(tmp_path, "folder").load() is None


def test_early_stopping_keeps_the_first_best_epoch_and_stops_after_patience():
    from fewshot_bench.learning.checkpoints import EarlyStopping

    model = torch.nn.Linear(1, 1, bias=False)
    stopping = EarlyStopping(patience=2)
    assert (stopping.best_score, stopping.best_epoch, stopping.best_state) == (-float("inf"), -1, None)
    decisions = []
    for epoch, score in enumerate([0.5, 0.7, 0.7, 0.6]):
        with torch.no_grad():
            model.weight.fill_(epoch)
        decisions.append(stopping.update(epoch, score, model))
    assert decisions == [False, False, False, True]  # a tie is no improvement
    assert stopping.best_epoch == 1 and stopping.best_score == 0.7
    assert stopping.best_state["weight"].item() == 1.0
    assert stopping.update(4, float("-inf"), model) is True
    again = EarlyStopping(patience=5)
    again.load_state_dict(stopping.state_dict())
    assert (again.best_score, again.best_epoch, again.patience) == (0.7, 1, 5)
    assert again.best_state["weight"].item() == 1.0
    assert EarlyStopping(patience=1).update(0, -5.0, model) is False


# ---------------------------------------------------------------- the held-out checks

def omniglot_meta(*pairs):
    return ImageSet(np.zeros((len(pairs), 2, 2), np.uint8),
                    pd.DataFrame({"alphabet": [a for a, _ in pairs], "character": [c for _, c in pairs]}))


def test_the_alphabet_firewall_names_every_leaked_alphabet():
    from fewshot_bench.api import check_alphabets

    background = omniglot_meta(("Latin", "c1"), ("Greek", "c1"), ("Korean", "c2"))
    check_alphabets(background, {"Tibetan", "Atemayar"})
    check_alphabets(background, [])
    with pytest.raises(RuntimeError, match=re.escape("held-out alphabets reached training data: ['Greek', 'Korean']")):
        check_alphabets(background, ["Korean", "Greek", "Tibetan"])


def test_characters_and_class_keys_see_through_rotations():
    from fewshot_bench.data.folders import FLAT_GROUP, class_keys
    from fewshot_bench.data.vinyals_split import characters

    images = omniglot_meta(("Latin", "c1"), ("Latin@rot090", "c1"), ("Latin@rot180", "c2"), ("Greek", "c1"))
    assert characters(images) == {("Latin", "c1"), ("Latin", "c2"), ("Greek", "c1")}
    meta = pd.DataFrame({"alphabet": ["Latin@rot270", FLAT_GROUP], "character": ["c1", "cat"]})
    assert class_keys(meta) == ["Latin/c1", "cat"]


def test_an_interrupted_run_scores_only_the_trial_seeds_it_lacks_when_run_again(data_root, tmp_path, monkeypatch):
    """`bench run` (and `bench compare --run-missing`, which runs through it) keeps each scored draw as
    it finishes: killed during trial seed 2, the rerun scores seed 2 alone and stores the same record."""
    from fewshot_bench.api import PROTOCOLS
    from fewshot_bench.cli.main import main

    protocol = PROTOCOLS.get("omniglot20")
    real, scored = protocol.evaluate, []

    def evaluate(self, method, trial_seed, progress=None):
        scored.append(trial_seed)
        if trial_seed == 2 and scored.count(2) == 1:
            raise KeyboardInterrupt  # the user's ctrl-c during the third draw
        return real(self, method, trial_seed, progress)

    monkeypatch.setattr(protocol, "evaluate", evaluate)
    store = tmp_path / "store"
    args = ["run", "--method", "pixel_1nn", "--protocol", "omniglot20", "--protocol-set", "sets_per_alphabet=1",
            "--trial-seed", "0-3", "--store", str(store), "--no-progress"]
    assert main(args) == 130
    assert scored == [0, 1, 2] and len(list((store / "partial").glob("*.json"))) == 1
    assert main(args) == 0
    assert scored == [0, 1, 2, 2, 3]  # seeds 0 and 1 came from the interrupted run
    (record,) = load_records(store)
    assert record["trial_seeds"] == [0, 1, 2, 3] and record["resumed_draws"] == [0, 1]
    assert not list((store / "partial").glob("*.json"))  # kept only until the record is stored
