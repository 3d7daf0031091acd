"""bench sweep: planning and resume, identical results here and on a real local Ray, failures
reported while the other runs land, killed Ray workers retried, and Ctrl-C / SIGTERM leaving no
process behind."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fewshot_bench.experiments import sweep
from fewshot_bench.experiments.runner import trial_seeds
from fewshot_bench.cli.main import main
from fewshot_bench.errors import UserError
from fewshot_bench.records import load_records

ray = pytest.importorskip("ray", reason="the ray extra: pip install -e '.[ray]'")

TINY = ["--method", "conv_siamese", "--preset", "tiny", "--protocol", "omniglot20,lake_runs", "--no-progress"]


def processes(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if int(p) != os.getpid()]


def test_sweep_plans_the_grid_and_a_rerun_skips_stored_runs(data_root, tmp_path):
    store = tmp_path / "store"
    trainings = sweep.plan(["pixel_1nn"], [], ["omniglot20", "lake_runs"], "0", "0-1",
                           {"metric": ["euclidean", "cosine"], "input_size": ["14", "28"]}, store)
    assert len(trainings) == 4 and all(len(t.specs) == 2 for t in trainings)
    assert {tuple(trial_seeds(t.specs[1])) for t in trainings} == {(0,)}  # Lake's runs: one fixed set, scored once
    assert {tuple(t.specs[0].trial_seeds) for t in trainings} == {(0, 1)}
    args = ["sweep", "--method", "pixel_1nn", "--protocol", "omniglot20,lake_runs", "--trial-seed", "0-1",
            "--grid", "metric=euclidean,cosine", "--store", str(store), "--no-progress"]
    assert main(args) == 0
    assert len(load_records(store)) == 4
    again = sweep.plan(["pixel_1nn"], [], ["omniglot20", "lake_runs"], "0", "0-1", {"metric": ["euclidean", "cosine"]},
                       store)
    assert all(not t.owed for t in again)  # resumed: nothing left to run
    assert main(args) == 0 and len(load_records(store)) == 4
    table = sweep.summary(again, store)
    assert len(table) == 4 and set(table["setting"]) == {"metric=euclidean", "metric=cosine"}


def test_sweep_spec_file_and_bad_input_are_one_line_errors(tmp_path):
    spec = tmp_path / "sweep.toml"
    spec.write_text('method = "pixel_1nn"\nprotocol = ["lake_runs"]\nseeds = "0"\n[grid]\nmetric = ["l1", "dot"]\n')
    assert sweep.read_spec(spec)["grid"] == {"metric": ["l1", "dot"]}
    (tmp_path / "bad.toml").write_text("method = [\n")
    with pytest.raises(UserError, match="not valid TOML"):
        sweep.read_spec(tmp_path / "bad.toml")
    with pytest.raises(UserError, match="metric must be one of"):
        sweep.plan(["pixel_1nn"], [], ["lake_runs"], "0", None, {"metric": ["l3"]}, tmp_path / "store")
    assert main(["sweep", "--method", "pixel_1nn", "--protocol", "lake_runs", "--address", "auto"]) == 2


def test_ray_and_local_give_identical_records(data_root, tmp_path):
    # two networks (two rates), each scored two ways (test_symmetries does not change the training)
    # on both protocols
    grid = ["--seeds", "0", "--grid", "adam_lr=1e-3,2e-3", "--grid", "test_symmetries=1,4"]
    assert main(["sweep", *TINY, *grid, "--store", str(tmp_path / "local")]) == 0
    assert main(["sweep", *TINY, *grid, "--store", str(tmp_path / "ray"), "--on", "ray"]) == 0

    def key(record):
        config = record["method_config"]
        return record["protocol"], record["seed"], config["adam_lr"], config.get("test_symmetries", 1)

    local = sorted(load_records(tmp_path / "local"), key=key)
    remote = sorted(load_records(tmp_path / "ray"), key=key)
    assert len(local) == len(remote) == 8
    for a, b in zip(local, remote):
        assert a["accuracy"] == b["accuracy"]
        assert [d["predictions"] for d in a["draws"]] == [d["predictions"] for d in b["draws"]]
        assert [d["score_chosen"] for d in a["draws"]] == [d["score_chosen"] for d in b["draws"]]
    # each network trained once, also on Ray: the grid points scoring it shared one task
    for records in (local, remote):
        assert sum(not r["training"]["reused_checkpoint"] for r in records) == 2
    # the workers' checkpoints came back to the driver's store
    assert sorted(p.name for p in (tmp_path / "ray/checkpoints").glob("*.pt")) == \
        sorted(p.name for p in (tmp_path / "local/checkpoints").glob("*.pt"))


def test_a_ray_rerun_reuses_the_drivers_checkpoints_for_new_protocols(data_root, tmp_path):
    store = str(tmp_path / "store")
    base = ["sweep", "--method", "conv_siamese", "--preset", "tiny", "--no-progress", "--store", store, "--on", "ray"]
    assert main([*base, "--protocol", "omniglot20"]) == 0
    assert main([*base, "--protocol", "omniglot20,lake_runs"]) == 0  # only lake_runs is owed
    records = {r["protocol"]: r for r in load_records(tmp_path / "store")}
    assert len(records) == 2
    assert records["lake_runs"]["training"]["reused_checkpoint"]  # shipped to the worker, not retrained
    assert records["lake_runs"]["training"]["history"] == records["omniglot20"]["training"]["history"]


@pytest.mark.parametrize("on", ["local", "ray"])
def test_a_failing_run_is_reported_while_the_others_land(data_root, tmp_path, capsys, on):
    # MAML draws a task's classes from all background characters: 2,000 cannot be drawn from 964, and
    # that training fails when it samples its first batch
    store = tmp_path / "store"
    code = main(["sweep", "--method", "maml", "--preset", "tiny", "--protocol", "omniglot20", "--no-progress",
                 "--grid", "way=20,2000", "--store", str(store), "--on", on])
    assert code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "failed: maml (tiny) way=2000 seed 0" in err and "1 of 2 trainings failed" in err
    assert "way=2000 needs 2000 background classes; the background has 964" in err
    assert {r["method_config"]["way"] for r in load_records(store)} == {20}


def test_a_killed_ray_worker_is_retried_and_the_sweep_completes(data_root, tmp_path):
    store = tmp_path / "store"
    # 20 epochs: the training runs for several seconds, so a kill a second in lands mid-training
    trainings = sweep.plan(["conv_siamese"], ["tiny"], ["omniglot20"], "0", None,
                           {"epochs": ["20"], "patience": ["20"]}, store)
    killed = []

    def running_the_task(pid: int) -> bool:  # Ray titles a worker by the task it runs, IDLE between tasks
        try:
            return b"ray::_remote_training" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    def kill_first_worker():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            pids = processes("ray::_remote_training")
            if pids:
                time.sleep(1.0)  # mid-run
                if running_the_task(pids[0]):  # still training, not finished: the kill cuts a training short
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
            time.sleep(0.2)

    thread = threading.Thread(target=kill_first_worker, daemon=True)
    thread.start()
    with sweep.SweepProgress(None, len(trainings), 0, enabled=False) as progress:
        sweep.run_ray(trainings, store, progress, None, retries=2)
    thread.join(timeout=5)
    assert killed, "no Ray worker was seen running the training"
    assert not Path(f"/proc/{killed[0]}").exists()  # it died
    assert trainings[0].error is None and len(load_records(store)) == 1
    # the rerun trained all 20 epochs anew (the driver had no checkpoint to resume from)
    assert load_records(store)[0]["training"]["epochs"] == 20


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_a_ray_sweep_leaves_no_process(data_root, tmp_path, how):
    # the Ray of the tests before (run in this process) may take a moment to go: wait for it, then
    # signal only once a task of this sweep runs (a lingering worker of theirs is named like ours).
    # No early stopping (tiny's patience is 2), so the trainings are still running when the signal
    # comes. Why the sweep once ignored SIGINT in full-suite runs is not known: see _default_sigint
    deadline = time.time() + 60
    while time.time() < deadline and processes("ray::"):
        time.sleep(0.2)
    stale = set(processes("ray::_remote_training"))
    command = [sys.executable, "-m", "fewshot_bench.cli", "sweep", *TINY, "--grid", "epochs=40", "--grid",
               "patience=40", "--seeds", "0-1", "--store", str(tmp_path / "store"), "--on", "ray"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_default_sigint)
    deadline = time.time() + 120
    while time.time() < deadline and not set(processes("ray::_remote_training")) - stale:
        time.sleep(0.2)
    assert set(processes("ray::_remote_training")) - stale, "the sweep never started a Ray task"
    proc.send_signal(how)
    assert proc.wait(timeout=60) == 130
    time.sleep(2)
    assert processes("ray::") == [] and processes("raylet") == [] and processes("gcs_server") == []
    assert not load_records(tmp_path / "store") if (tmp_path / "store").is_dir() else True


def _default_sigint():
    # the sweep starts with SIGINT at its default, as from a terminal: in full-suite runs (never
    # alone) the sweep without this ignored SIGINT and trained to the end (rc 0, 4 runs of 4), though
    # the test process's own SIGINT was not ignored (checked after every test); with it, it passes
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigterm_stops_local_ensemble_workers(data_root, tmp_path):
    command = [sys.executable, "-m", "fewshot_bench.cli", "run", "--method", "conv_siamese", "--preset", "tiny",
               "--set", "members=2", "--set", "epochs=40", "--set", "patience=40", "--protocol", "omniglot20",
               "--store", str(tmp_path / "store"), "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # one thread: members run in turn
    other = set(processes("multiprocessing.spawn"))  # another program's workers on this machine are not ours
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(workers := set(processes("multiprocessing.spawn")) - other) < 2:
        time.sleep(0.2)
    assert len(workers) >= 2, "the ensemble never started its member processes"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    time.sleep(1)
    assert set(processes("multiprocessing.spawn")) & workers == set()
