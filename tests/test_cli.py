import argparse
import json
import os
import subprocess
import sys

import pytest

from fewshot_bench.cli.main import main, make_parser


def bench(*args, env=None, cwd=None):
    """Run the real console entry point in a subprocess (as a user would)."""
    return subprocess.run([sys.executable, "-m", "fewshot_bench.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=300)


COMMANDS = {"list", "data", "run", "table", "compare", "show", "report", "reproduce", "sweep", "tune", "store", "speed"}


def test_help_lists_every_subcommand_with_its_help():
    subcommands = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subcommands.choices) == COMMANDS
    out = bench("--help")
    assert out.returncode == 0
    listing = out.stdout.split("examples:")[0]  # the epilog's examples name commands too: not counted
    for action in subcommands._choices_actions:
        assert action.help and action.dest in listing and " ".join(action.help.split()[:3]) in " ".join(listing.split())


def test_list_shows_methods_and_protocols_with_descriptions(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "pixel_1nn" in out and "omniglot20" in out and "modified Hausdorff" in out


def test_unknown_method_is_one_line_without_traceback():
    out = bench("run", "--method", "pixel_nn", "--protocol", "omniglot20")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "unknown method 'pixel_nn'. Did you mean 'pixel_1nn'?" in " ".join(out.stderr.split())


def test_bad_config_value_names_the_option():
    out = bench("run", "--method", "mhd", "--protocol", "omniglot20", "--set", "threshold=abc")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "method mhd option threshold: 'abc' is not a valid float" in " ".join(out.stderr.split())


def test_missing_data_says_where_and_how(tmp_path):
    out = bench("run", "--method", "pixel_1nn", "--protocol", "omniglot20", "--data-root", str(tmp_path))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "bench data fetch" in out.stderr and str(tmp_path) in " ".join(out.stderr.split())


def test_store_pack_and_unpack_mistakes_are_one_line_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("not a pack")
    for args, says in ((("unpack", str(tmp_path / "none.jsonl.gz")), "no pack at"),
                       (("unpack", str(tmp_path / "notes.txt")), "is not a pack of run records"),
                       (("pack", str(tmp_path / "p.jsonl.gz"), "--store", str(tmp_path / "empty")), "no results store at")):
        out = bench("store", *args, "--store", str(tmp_path / "store")) if args[0] == "unpack" else bench("store", *args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert says in " ".join(out.stderr.split())


def test_run_json_prints_the_record_as_the_last_stdout_line(data_root, tmp_path):
    out = bench("run", "--method", "pixel_1nn", "--protocol", "omniglot20", "--trial-seed", "0-1",
                "--json", "--store", str(tmp_path / "store"))
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["method"] == "pixel_1nn" and record["trial_seeds"] == [0, 1]
    assert record["n_trials"] == 800 and len(record["draws"]) == 2
    assert 0 < record["ci95"] < 0.2 and record["protocol_version"] == "1"
    assert len(record["draws"][0]["correct"]) == 400
    assert list((tmp_path / "store").glob("*.json"))


def test_two_concurrent_runs_both_keep_their_records(data_root, tmp_path):
    store = str(tmp_path / "store")
    cmd = [sys.executable, "-m", "fewshot_bench.cli", "run", "--method", "pixel_1nn", "--protocol", "omniglot20",
           "--store", store, "--no-progress"]
    procs = [subprocess.Popen(cmd + ["--seed", str(s)], stdout=subprocess.PIPE, stderr=subprocess.PIPE) for s in (0, 1)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    records = sorted((tmp_path / "store").glob("*.json"))
    assert len(records) == 2
    assert {json.loads(r.read_text())["seed"] for r in records} == {0, 1}
    assert not list((tmp_path / "store").glob(".*.tmp"))


def test_table_writes_csv_and_markdown(data_root, tmp_path, capsys):
    store = str(tmp_path / "store")
    for method in ("pixel_1nn", "mhd"):
        assert main(["run", "--method", method, "--protocol", "omniglot20", "--store", store, "--no-progress",
                     "--protocol-set", "sets_per_alphabet=1"]) == 0
    assert main(["table", "--store", store, "--out", str(tmp_path / "tables")]) == 0
    md = (tmp_path / "tables/results.md").read_text()
    assert "| method | omniglot20 (sets_per_alphabet=1) |" in md and "pixel_1nn" in md and "±" in md
    csv = (tmp_path / "tables/results.csv").read_text().splitlines()
    assert csv[0] == "method,preset,protocol,accuracy,ci95,seeds,trials,draws,learning,accuracy_not_learned,trained" \
        and len(csv) == 3


def test_compare_reports_mcnemar_on_identical_trials(data_root, tmp_path, capsys):
    store = str(tmp_path / "store")
    small = ["--protocol", "episodes", "--protocol-set", "episodes=40", "--store", store]  # 200 trials
    code = main(["compare", "pixel_1nn", "mhd", *small, "--run-missing"])
    assert code == 0
    out = capsys.readouterr().out
    assert "exact McNemar p =" in out and "over 200 paired trials" in out
    assert main(["compare", "pixel_1nn", "mhd", *small]) == 0  # stored now
    capsys.readouterr()
    assert main(["compare", "pixel_1nn", "mhd", *small, "--trial-seed", "1"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # other draws are stored: the error names them
    assert "stored on episodes: mhd --protocol-set episodes=40 --seed 0 --trial-seed 0, pixel_1nn " in err
    # other trials (the protocol's default 400 episodes) are not paired with these
    assert main(["compare", "pixel_1nn", "mhd", "--protocol", "episodes", "--store", store]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "has no run of pixel_1nn or mhd on episodes with seed 0" in err


def test_compare_never_runs_what_the_store_lacks_unless_asked(tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["compare", "pixel_1nn", "mhd", "--protocol", "omniglot20", "--store", str(store)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"bench run --method pixel_1nn --protocol omniglot20 --seed 0 --store {store}" in err
    assert "bench run --method mhd" in err and "--run-missing" in err
    assert not store.exists()  # nothing was run or written


@pytest.mark.parametrize("args, message", [
    (["show", "--method", "mhd", "--gallery", "/proc/x.png"], "--gallery /proc/x.png: cannot write in /proc"),
    (["compare", "a", "b", "--protocol", "omniglot20", "--gallery", "/proc/x.png"], "cannot write in /proc"),
    (["report", "--out", "/proc/rep"], "--out /proc/rep: cannot write in /proc"),
    (["show", "--method", "mhd", "--curves", "/tmp"], "--curves /tmp is a folder"),
])
def test_unwritable_outputs_are_one_line_errors_before_any_work(args, message, tmp_path):
    out = bench(*args, "--store", str(tmp_path / "store"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert message in " ".join(out.stderr.split())


def test_report_into_a_file_is_an_error(tmp_path):
    existing = tmp_path / "existing.html"
    existing.write_text("x")
    out = bench("report", "--out", str(existing), "--store", str(tmp_path / "store"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"--out {existing} is a file; give a folder" in " ".join(out.stderr.split())


def test_curves_of_a_method_that_does_not_learn_fail_before_any_table(data_root, tmp_path):
    store = str(tmp_path / "store")
    assert main(["run", "--method", "pixel_1nn", "--protocol", "lake_runs", "--store", store, "--no-progress"]) == 0
    out = bench("show", "--method", "pixel_1nn", "--curves", str(tmp_path / "c.png"), "--store", store)
    assert out.returncode == 2 and "no training history" in out.stderr
    assert "accuracy per alphabet" not in out.stdout and not (tmp_path / "c.png").exists()


def test_messages_print_square_brackets_verbatim(capsys, monkeypatch):
    from fewshot_bench.cli import listing
    from fewshot_bench.errors import UserError

    def fail(args):
        raise UserError("needs Ray: pip install -e '.[ray]'")

    monkeypatch.setattr(listing, "command", fail)
    assert main(["list"]) == 2
    assert "pip install -e '.[ray]'" in capsys.readouterr().err


def test_every_subcommand_and_argument_has_help():
    subcommands = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in subcommands.choices.items():
        assert parser.description, f"bench {name} --help has no description"
        for action in parser._actions:
            assert action.help, f"bench {name}: {'/'.join(action.option_strings) or action.dest} has no help"


def test_table_without_records_is_a_user_error(tmp_path):
    assert main(["table", "--store", str(tmp_path / "empty")]) == 2


def test_table_shows_published_figures_marked_as_such(tmp_path):
    from fewshot_bench.tables.store import wide_table

    record = {"method": "pixel_1nn", "preset": None, "protocol": "omniglot20", "seed": 0, "accuracy": 0.15,
              "ci95": 0.03, "n_trials": 400, "trial_seeds": [0], "finished": "x"}
    wide = wide_table([record])
    assert wide.loc["pixel_1nn", "omniglot20"] == "15.0 ± 3.0"
    assert wide.loc["pixel_1nn", "Table 2 (Koch 2015)"] == "21.7"
    assert wide.loc["Humans (published)", "Table 2 (Koch 2015)"] == "95.5"
    assert wide.loc["Humans (published)", "omniglot20"] == ""  # never a figure of ours


def test_table_puts_lake_runs_beside_the_same_methods_draws():
    from fewshot_bench.tables.store import wide_table

    base = {"method": "pixel_1nn", "preset": None, "seed": 0, "ci95": 0.01, "n_trials": 400,
            "trial_seeds": [0], "finished": "x", "method_config": {}}
    wide = wide_table([{**base, "protocol": "verification", "accuracy": 0.5},
                       {**base, "protocol": "lake_runs", "accuracy": 0.19},
                       {**base, "protocol": "omniglot20", "accuracy": 0.14}])
    assert list(wide.columns) == ["omniglot20", "lake_runs", "Table 2 (Koch 2015)", "verification"]
    assert wide.loc["pixel_1nn", "lake_runs"] == "19.0 ± 1.0" and wide.loc["pixel_1nn", "omniglot20"] == "14.0 ± 1.0"


def test_runs_of_one_preset_with_different_configs_get_separate_rows():
    from fewshot_bench.api import METHODS
    from fewshot_bench.tables.store import long_table

    cls = METHODS.get("conv_siamese")
    current = cls(cls.make_config("cpu"), preset="cpu").config_dict()
    base = {"method": "conv_siamese", "preset": "cpu", "protocol": "omniglot20", "seed": 0, "ci95": 0.01,
            "n_trials": 400, "trial_seeds": [0], "finished": "x"}
    records = [{**base, "accuracy": 0.85, "method_config": current},
               {**base, "accuracy": 0.8, "method_config": {**current, "input_size": 56}},
               {**base, "accuracy": 0.9, "method_config": {**current, "input_size": 56, "epochs": 3, "way": 5,
                                                            "members": 1}}]
    table = long_table(records).set_index("preset")
    assert table.loc["cpu", "accuracy"] == 85.0  # the preset as the code defines it now: the plain label
    assert table.loc["cpu input_size=56", "accuracy"] == 80.0  # a few options: named
    many = [p for p in table.index if p.startswith("cpu ") and "cfg " in p]  # many: the telling ones and a hash
    assert many == [f"cpu epochs=3, way=5, input_size=56 +1 more, cfg {many[0][-6:]}"] and len(table) == 3


def test_runs_on_other_protocol_options_are_other_columns():
    from fewshot_bench.tables.store import wide_table

    base = {"method": "mhd", "preset": None, "seed": 0, "ci95": 0.01, "n_trials": 400, "trial_seeds": [0],
            "finished": "x", "method_config": {}, "protocol": "omniglot20"}
    wide = wide_table([{**base, "accuracy": 0.5, "protocol_config": {"drawers": [17, 18, 19, 20]}},
                       {**base, "accuracy": 0.6, "protocol_config": {"drawers": [1, 2, 3, 4]}}])
    assert wide.loc["mhd", "omniglot20"] == "50.0 ± 1.0"
    assert wide.loc["mhd", "omniglot20 (drawers=1,2,3,4)"] == "60.0 ± 1.0"


def test_table_with_two_paper_protocols_keeps_published_rows():
    from fewshot_bench.tables.store import wide_table

    base = {"method": "pixel_1nn", "preset": None, "seed": 0, "accuracy": 0.2, "ci95": 0.01, "n_trials": 400,
            "trial_seeds": [0], "finished": "x", "method_config": {}}
    wide = wide_table([{**base, "protocol": "omniglot20"}, {**base, "protocol": "mnist10"}])
    assert wide.loc["pixel_1nn", "Table 3 (Koch 2015)"] == "26.5"
    assert wide.loc["Humans (published)", "Table 3 (Koch 2015)"] == ""


def test_results_table_at_80_columns_never_cuts_names(data_root, tmp_path):
    out = bench("run", "--method", "pixel_1nn", "--protocol", "lake_runs", "--set", "input_size=28",
                "--store", str(tmp_path / "store"), "--no-progress", env={"COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()  # results on stdout, messages on stderr
    row = next(line for line in lines if line.startswith("│ pixel_1nn"))
    assert "…" not in row and len(row) <= 80 and "%" in row  # accuracy on the same line as the names
    assert max(len(line) for line in lines) <= 80


def test_run_evaluates_a_fixed_set_of_trials_once_whatever_the_trial_seeds(tmp_path):
    from helpers import lake_runs_folder

    runs = lake_runs_folder(tmp_path / "runs")
    out = bench("run", "--method", "pixel_1nn", "--protocol", "lake_runs", "--runs", str(runs), "--trial-seed", "0-9",
                "--json", "--store", str(tmp_path / "store"), "--no-progress")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["trial_seeds"] == [0] and record["n_trials"] == 8  # 2 runs of 4 trials, scored once
    assert "lake_runs is one fixed set of trials; --trial-seed 0-9 ignored" in " ".join(out.stderr.split())


@pytest.mark.parametrize("table", ["table1", "table2", "table3", "table4"])
def test_reproduce_stored_writes_a_partial_table_and_runs_nothing(table, tmp_path, data_root):
    store, out = tmp_path / "store", tmp_path / "out"
    result = bench("reproduce", table, "--stored", "--store", str(store), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert not list(store.glob("*.json")) and not (store / "checkpoints").exists()  # nothing ran
    md = (out / f"{table}.md").read_text()
    assert "incomplete: " in md and "not yet in the store" in md and (out / f"{table}.csv").is_file()
    if table == "table4":
        assert "| Prototypical nets | not run (98.8) |" in md


def test_reproduce_stored_refuses_ray(tmp_path):
    result = bench("reproduce", "table4", "--stored", "--on", "ray", "--store", str(tmp_path))
    assert result.returncode == 2 and "--stored runs nothing" in result.stderr


def test_reproduce_replot_redraws_the_figure_from_the_csv_alone(tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "table3.csv").write_text(
        "system,method,preset,ours,ci95,ci_over,seeds,train_s,paper,source\n"
        "1-Nearest Neighbor,pixel_1nn,-,41.93,1.53,trials,1,0.0,26.5,our runs\n"
        "Convolutional Siamese Net,conv_siamese,cpu35,78.45,1.27,trials,1,1462.1,70.3,our runs\n")
    result = bench("reproduce", "table3", "--replot", "--out", str(tmp_path), "--store", str(tmp_path / "store"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "table3.png").stat().st_size > 10_000 and not (tmp_path / "store").exists()  # nothing ran
    missing = bench("reproduce", "table1", "--replot", "--out", str(tmp_path))
    assert missing.returncode == 2 and "--replot needs" in missing.stderr and "table1.csv" in missing.stderr


@pytest.mark.parametrize("command", [["run", "--method", "pixel_1nn", "--protocol", "omniglot20"],
                                     ["speed", "train"], ["reproduce", "table3"], ["sweep", "--method", "pixel_1nn", "--protocol", "omniglot20"],
                                     ["tune", "--method", "conv_siamese"]])
def test_device_cuda_without_a_gpu_is_one_line_before_any_work(command, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("FEWSHOT_BENCH_DEVICE", raising=False)
    assert main([*command, "--device", "cuda"]) == 2
    assert "FEWSHOT_BENCH_DEVICE" not in os.environ


def test_device_cpu_is_where_every_auto_config_runs(monkeypatch):
    from fewshot_bench.api import METHODS
    from fewshot_bench.learning.devices import choose_device

    monkeypatch.delenv("FEWSHOT_BENCH_DEVICE", raising=False)
    method = METHODS.get("conv_siamese")(preset="tiny")
    choose_device("cpu")
    assert method.device.type == "cpu" and method.config.device == "auto"  # keys keep "auto"
    assert METHODS.get("conv_siamese")(METHODS.get("conv_siamese").make_config("tiny", {"device": "cpu"})).device.type == "cpu"
    monkeypatch.delenv("FEWSHOT_BENCH_DEVICE")


def test_runs_trained_on_a_gpu_are_a_column_of_their_own_that_says_what_training_they_got():
    from fewshot_bench.tables.store import wide_table

    base = {"method": "conv_siamese", "preset": "paper", "seed": 0, "ci95": 0.02, "n_trials": 4000,
            "trial_seeds": list(range(10)), "finished": "x", "method_config": {}, "protocol": "omniglot20"}
    history = [{"epoch": e, "loss": 0.3, "validation_accuracy": 0.5 + e / 10, "seconds": 176.0, "steps": 10547,
                "images": 2_700_000, "step_gflop": 1364.0, "step_images": 256} for e in range(3)]
    gpu = {**base, "accuracy": 0.53, "environment": {"gpu": "NVIDIA H200"},
           "training": {"epochs": 3, "history": history}}
    wide = wide_table([{**base, "accuracy": 0.25, "environment": {"gpu": None}}, gpu])
    assert wide.loc["conv_siamese (paper)", "omniglot20"] == "25.0 ± 2.0"
    assert wide.loc["conv_siamese (paper)", "omniglot20 on GPU"] == "53.0 ± 2.0 (3 epochs, 43,157.8 TFLOP)"
