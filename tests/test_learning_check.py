"""Every training says whether it learned: the untrained network's validation score and the loss
of a constant guess are recorded before the first step, and a run that never beat them is flagged
in `bench run`, in the tables and in their CSV, never shown as its method's figure."""
import json
import math

import pytest

from fewshot_bench.cli.main import main
from fewshot_bench.records import learning_check

SMALL = ["--protocol", "omniglot20", "--protocol-set", "sets_per_alphabet=1", "--no-progress"]


def epoch(loss, accuracy, **first):
    return {"loss": loss, "validation_accuracy": accuracy, **first}


def test_a_best_validation_inside_the_untrained_interval_did_not_learn():
    history = [epoch(0.5, 0.36, untrained_validation=0.345, untrained_ci95=0.02, constant_loss=math.log(2)),
               epoch(0.4, 0.34)]
    check = learning_check(history)
    assert check["learned"] is False and "within the untrained network's 34.5 ± 2.0%" in check["reason"]


def test_a_loss_never_one_percent_below_a_constant_guess_did_not_learn():
    history = [epoch(0.75, 0.60, untrained_validation=0.10, untrained_ci95=0.02, constant_loss=math.log(2)),
               epoch(0.690, 0.62)]  # it may start above the guess: it never got below it
    check = learning_check(history)
    assert check["learned"] is False and "never 1% below a constant guess's 0.693 (lowest 0.690)" in check["reason"]
    assert learning_check([history[0], epoch(0.60, 0.62)])["learned"] is True  # a loss that moved


def test_a_pair_training_recorded_before_the_check_takes_ln_2_from_its_config():
    history = [epoch(0.70, 0.30), epoch(0.691, 0.31)]  # no baselines recorded
    assert learning_check(history)["learned"] is None
    assert learning_check(history, {"objective": "pairs", "loss": "bce"})["learned"] is False
    assert learning_check(history, {"objective": "trials"})["learned"] is None  # ln c depends on the data


def test_a_member_that_did_not_learn_flags_its_ensemble():
    good = [epoch(0.3, 0.8, untrained_validation=0.1, untrained_ci95=0.02, constant_loss=1.0, member=0)]
    bad = [epoch(1.0, 0.1, untrained_validation=0.1, untrained_ci95=0.02, constant_loss=1.0, member=1)]
    assert learning_check(good)["learned"] is True
    assert learning_check(good + bad)["learned"] is False


def test_a_training_without_baselines_is_unchecked():
    assert learning_check([epoch(0.5, 0.5), epoch(0.4, 0.6)])["learned"] is None


def run_json(capsys, *args) -> tuple[dict, str]:
    assert main(["run", *args, *SMALL, "--json"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out.strip().splitlines()[-1]), " ".join(captured.err.split())


def test_a_network_at_learning_rate_zero_is_flagged_in_run_table_and_csv(data_root, tmp_path, capsys):
    store = str(tmp_path / "store")
    record, err = run_json(capsys, "--method", "conv_siamese", "--preset", "tiny_koch", "--set", "lr=0",
                           "--store", store)
    first = record["training"]["history"][0]
    assert 0 <= first["untrained_validation"] <= 1 and first["constant_loss"] == pytest.approx(math.log(2), abs=0.01)
    assert record["training"]["learning"]["learned"] is False
    assert "warning: conv_siamese (tiny_koch) did not learn at" in err and "not the method's" in err

    learned, err = run_json(capsys, "--method", "conv_siamese", "--preset", "tiny", "--set", "steps_per_epoch=20",
                            "--set", "epochs=3", "--set", "patience=3", "--store", store)
    check = learned["training"]["learning"]
    assert check["learned"] is True and check["best_validation"] > check["untrained_validation"] + check["untrained_ci95"]
    assert "did not learn" not in err

    assert main(["table", "--store", store, "--out", str(tmp_path / "tables")]) == 0
    md = (tmp_path / "tables/results.md").read_text()
    assert "| conv_siamese (tiny_koch lr=0.0) | did not learn at " in md
    rows = {line.split(",")[1]: line for line in (tmp_path / "tables/results.csv").read_text().splitlines()[1:]}
    flagged = rows["tiny_koch lr=0.0"].split(",")
    assert flagged[3] == "" and "did not learn at" in flagged[8] and float(flagged[9]) == pytest.approx(
        100 * record["accuracy"], abs=0.01)  # the accuracy kept apart, never in the accuracy column
    assert "did not learn" not in rows[next(k for k in rows if k.startswith('"tiny'))]
