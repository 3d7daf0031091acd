"""The bridge from our cpu recipe to Koch's tuned recipe: each link changes only its own options,
the far end is reached exactly, the pair loss's rate is chosen on validation, and the whole path
runs on a tiny preset."""
import dataclasses
import re

import pandas as pd
import pytest

from fewshot_bench.api import METHODS
from fewshot_bench.errors import UserError
from fewshot_bench.experiments import reproduce as rep
from fewshot_bench.presets import preset_path, write_preset
from fewshot_bench.records import epoch_seconds, load_records, pack_records, training_budget, unpack_records
from fewshot_bench.tables import bridge
from fewshot_bench.tables.base import Cell, PlannedRun


def tuned_koch(**changes) -> dict:
    """A stand-in for bench tune's preset: koch_cpu with other per-layer rates and layers."""
    values = dataclasses.asdict(METHODS.get("conv_siamese").make_config("koch_cpu"))
    values.update(lr=[0.02, 0.01, 0.01, 0.005, 0.001, 0.001], channels=[16, 96, 128, 128], fc_units=1408, **changes)
    write_preset(preset_path("conv_siamese", "conv_siamese-koch_cpu-omniglot20"), "conv_siamese", values,
                 {"study": "conv_siamese-koch_cpu-omniglot20", "trial": 7})
    return values


def test_the_bridge_ends_at_the_method_files_tuned_preset_cited_to_its_study():
    assert bridge.far_end("cpu") == "koch_tuned"
    assert bridge.chain("cpu")[-3][1] == dataclasses.asdict(METHODS.get("conv_siamese").make_config("koch_tuned"))
    # Koch's end sits beside the recipe of his that learns, Tables 1-3's preset cited to its study
    assert bridge.koch_row(bridge.chain("cpu")) == bridge.chain("cpu")[-3][0]
    assert bridge.learning_end("cpu")[1] == "koch_adam" and "trial 15" in bridge.end_provenance("koch_adam")
    assert "study `conv_siamese-koch_cpu-omniglot20`, trial 43, 36.94% on" in bridge.end_provenance("koch_tuned")


def test_each_link_changes_only_its_own_options_and_the_chain_ends_at_the_tuned_recipe(monkeypatch):
    # without the method file's tuned preset, the far end is the one bench tune wrote into the store
    monkeypatch.setattr(bridge, "ENDS", {"cpu": ("cpu", bridge.ENDS["cpu"][1][1:])})
    with pytest.raises(UserError, match="bench tune --method conv_siamese --preset koch_cpu"):
        bridge.chain("cpu")
    tuned_koch()
    steps = bridge.chain("cpu")
    assert steps[0][1] == dataclasses.asdict(METHODS.get("conv_siamese").make_config("cpu"))
    # "rotated alphabets → none" changes nothing the pair loss reads: the pair link names it and it goes
    shown = [link for link in bridge.LINKS if link.label != "rotated alphabets → none"]
    assert [label for label, _ in steps[1:]][:-2] == [link.label for link in shown][:-2]
    assert "no rotated alphabets" in bridge.PAIR_LINK
    for (_, before), link, (label, after) in zip(steps, shown, steps[1:]):
        changed = {k for k in after if after[k] != before[k]}
        folded = {"rotations"} if label.startswith("our layers") else set()  # set by the folded link
        assert changed and changed - folded <= set(link.keys) | set(link.values), label
    # more distorted copies at the steps an epoch of the link before: 30k pairs x 2 / 128 = 469
    (_, one), (_, eight) = [(l, c) for l, c in steps if l.startswith("our layers")][0], \
        [(l, c) for l, c in steps if l.startswith("one distortion")][0]
    assert (one["distortions"], one["pair_steps"], eight["distortions"]) == (1, 0, 8)
    assert eight["pair_steps"] == bridge.pair_steps(one) == -(-one["pairs"] * 2 // one["batch_size"])
    *_, (_, koch), (label35, at35), (label52, at52) = steps
    end = dataclasses.asdict(METHODS.get("conv_siamese").make_config("conv_siamese-koch_cpu-omniglot20"))
    assert koch == end  # the named links arrive at the tuned recipe exactly
    assert (at35["input_size"], at52["input_size"]) == (35, 52) and at52["budget_gflop"] == end["budget_gflop"]
    assert label35 == "input 28 → 35 (equal compute)" and label52 == "input 35 → 52 (equal compute)"
    # the far end is cited to its study and trial
    assert "study `conv_siamese-koch_cpu-omniglot20`, trial 7" in bridge.end_provenance(bridge.far_end("cpu"))
    assert bridge.end_provenance("tiny") == ""


def test_a_detour_makes_its_links_change_alone_from_an_earlier_link():
    steps = bridge.chain("cpu")
    rows = dict(steps)
    labels = [label for label, _ in steps]
    links = {link.label: link for link in bridge.LINKS}
    detours = bridge.detours("cpu", steps)
    assert [(link, base) for _, link, base, _ in detours] == list(bridge.DETOURS)
    for row, link, base, config in detours:
        changed = {k for k in config if config[k] != rows[base][k]}
        assert changed and changed <= set(links[link].keys) | set(links[link].values), row
        if link not in labels:  # folded into the pair link, whose loss never reads it: no place of its own
            assert link == "rotated alphabets → none" and all(rows[labels[-1]][k] == config[k] for k in changed)
            continue
        assert labels.index(base) < labels.index(link) - 1, row  # measured away from its place in the chain
        # the same change the chain makes at its own place
        before = rows[labels[labels.index(link) - 1]]
        assert all(config[k] == rows[link][k] for k in changed) and changed <= {k for k in before if before[k] != rows[link][k]}
    assert next(c for r, _, _, c in detours if r.startswith("rotated"))["objective"] == "trials"


def test_a_link_that_changes_nothing_its_training_reads_is_folded_or_refused(monkeypatch):
    steps = dict(bridge.chain("cpu"))
    assert "rotated alphabets → none" not in steps  # folded: the pair link named it
    pair, drawers = steps[bridge.PAIR_LINK], steps["20 drawers → 12"]
    text = bridge.changed_text(steps["two networks → one"], pair)
    assert text.endswith("dropped (the pairs objective never reads them): rotations")
    assert "rotations" not in bridge.changed_text(drawers, steps["our layers → Koch's (tuned)"])
    # a link whose options the objective ignores without an earlier link dropping them, or that changes no option
    for link in (bridge.Link("one network again", values={"members": 1}), bridge.Link("mirror", values={"reflections": True})):
        monkeypatch.setattr(bridge, "LINKS", bridge.LINKS[:3] + (link,) + bridge.LINKS[3:])
        with pytest.raises(UserError, match="changes nothing its training reads"):
            bridge.chain("cpu")


def test_a_links_changes_read_in_a_few_characters():
    assert bridge.changed_text({"rotations": True, "seed": 1}, {"rotations": False, "seed": 1}) == "rotations: True → False"
    assert bridge.changed_text({"train_drawers": tuple(range(1, 21)), "lr": (0.01,)},
                               {"train_drawers": tuple(range(1, 13)), "lr": (0.0131718, 0.00822)}) == \
        "train_drawers: 1-20 → 1-12, lr: (0.01) → (0.0132,0.00822)"
    assert bridge.short(60_000.0) == "60,000" and bridge.short((16, 96, 128)) == "(16,96,128)"


def test_a_difference_no_link_makes_is_refused(monkeypatch):
    monkeypatch.setattr(bridge, "ENDS", {"cpu": ("cpu", bridge.ENDS["cpu"][1][1:])})
    tuned_koch(compile=True)
    with pytest.raises(UserError, match="change no option compile"):
        bridge.chain("cpu")


def test_the_pair_losss_rate_grid_grows_at_its_edge_and_picks_the_best_validation():
    tuned_koch()
    steps = bridge.chain("cpu")
    start, pair = steps[0][1], dict(steps)[bridge.PAIR_LINK]
    validation = {0.000667: 0.30, 0.002: 0.40, 0.006: 0.50, 0.018: 0.45}

    def stored(cell, protocol, options, seed):
        assert (protocol, options, seed) == ("omniglot20", {}, 0)
        return {"training": {"best_validation": validation[cell.options["adam_lr"]]}}

    cells, rate = bridge.rate_cells("cpu", pair, start, None)
    assert rate is None and [c.options["adam_lr"] for c in cells] == [0.000667, 0.002, 0.006]
    cells, rate = bridge.rate_cells("cpu", pair, start, stored)
    assert [c.options["adam_lr"] for c in cells] == [0.000667, 0.002, 0.006, 0.018] and rate == 0.006
    assert all(c.seeds == 1 and c.options["objective"] == "pairs" for c in cells)
    _, cells = bridge.Bridge().plan("cpu", stored)
    link = next(c for c in cells if c.row == bridge.PAIR_LINK)
    assert link.options["adam_lr"] == 0.006 and link.seeds == bridge.SEEDS
    links = [c for c in cells if not bridge.is_rate_cell(c) and not bridge.is_curve_cell(c)
             and not bridge.is_detour_cell(c) and not bridge.is_learning_cell(c)]
    assert len(links) == len(bridge.LINKS)  # the start, and every link but the one the pair link folded in
    learning = [c for c in cells if bridge.is_learning_cell(c)]  # Tables 1-3's preset: their runs, reused
    assert [(c.preset, c.options, c.protocols, c.seeds) for c in learning] == [("koch_adam", {}, None, bridge.SEEDS)]
    detours = [c for c in cells if bridge.is_detour_cell(c)]
    assert len(detours) == len(bridge.DETOURS) and {c.protocols for c in detours} == {("omniglot20", "lake_runs")}
    curves = [c for c in cells if bridge.is_curve_cell(c)]
    assert len(curves) == 2 * len(bridge.FRACTIONS) and {c.options["budget_gflop"] for c in curves} == {bridge.CURVE_GFLOP}
    assert {c.options["keep"] for c in curves} == {f"epoch{e}" for e in bridge.FRACTIONS}
    # the start's own rate chosen (a tie goes to the smaller rate): the link still names it
    validation.update({0.000667: 0.40, 0.002: 0.40, 0.006: 0.30})
    assert bridge.chosen_rate([(0.002, 0.4), (0.000667, 0.4), (0.006, 0.3)]) == 0.000667
    validation[0.000667] = 0.35
    _, cells = bridge.Bridge().plan("cpu", stored)
    assert next(c for c in cells if c.row == bridge.PAIR_LINK).options["adam_lr"] == 0.002


def test_the_bridge_runs_end_to_end_on_a_tiny_preset(data_root, tmp_path, monkeypatch):
    drawers = tuple(range(1, 13))
    monkeypatch.setattr(bridge, "LINKS", (bridge.Link("20 drawers → 12", values={"train_drawers": drawers}),
                                          bridge.Link("rotated alphabets → none", values={"rotations": False})))
    monkeypatch.setattr(bridge, "DETOURS", (("rotated alphabets → none", "our cpu recipe"),))
    monkeypatch.setattr(bridge, "DETOUR_PROTOCOLS", ("omniglot20",))
    monkeypatch.setattr(bridge, "ENDS", {"tiny": ("tiny", ("tiny",))})
    monkeypatch.setattr(bridge, "LEARNING_ENDS", {"tiny": "tiny_koch"})
    monkeypatch.setattr(bridge, "SEEDS", 1)
    monkeypatch.setattr(bridge, "PROTOCOLS", (("omniglot20", {"way": 5, "sets_per_alphabet": 1}),))
    monkeypatch.setattr(rep, "TRIAL_SEEDS", [0, 1])
    monkeypatch.setattr(bridge, "CURVE_PROTOCOLS", bridge.PROTOCOLS[:1])
    monkeypatch.setattr(bridge, "CURVE_EPOCHS", 2)
    monkeypatch.setattr(bridge, "FRACTIONS", {1: "1/2", 2: "1"})
    out = tmp_path / "results"
    frame = rep.reproduce("bridge", "tiny", 1, tmp_path / "store", out, command="bench reproduce bridge --preset tiny")
    records = load_records(tmp_path / "store")
    curves = [r for r in records if r["method_config"].get("snapshots")]
    records = [r for r in records if not r["method_config"].get("snapshots")]
    beside = [r for r in records if r["preset"] == "tiny_koch"]
    records = [r for r in records if r["preset"] != "tiny_koch"]
    assert len(beside) == 1 and len(records) == 4 and not any(r["training"]["reused_checkpoint"] for r in records)
    # the compute curves: each end trained once, read at both snapshots
    assert len(curves) == 2 * 2 and sorted(r["method_config"]["keep"] for r in curves) == ["epoch1", "epoch1",
                                                                                          "epoch2", "epoch2"]
    assert sum(not r["training"]["reused_checkpoint"] for r in curves) == 2
    learning = "Koch's tuned recipe → the recipe of his that learns (tiny_koch)"
    assert list(frame["link"]) == ["our cpu recipe", "20 drawers → 12", "rotated alphabets → none",
                                   "rotated alphabets → none, from our cpu recipe", learning]
    # a step is the paired difference on identical trials
    by_link = {(r["method_config"]["train_drawers"][-1], r["method_config"]["rotations"]): r
               for r in records if r["protocol"] == "omniglot20"}
    first, second = by_link[(20, True)], by_link[(12, True)]
    assert [d["trial_seed"] for d in first["draws"]] == [d["trial_seed"] for d in second["draws"]] == [0, 1]
    step = frame.set_index("link").loc["20 drawers → 12"]
    assert step["omniglot20_step"] == pytest.approx(round(100 * (second["accuracy"] - first["accuracy"]), 2))
    assert step["changed"] == "train_drawers: 1-20 → 1-12"
    # the detour: rotations off from the start, its step beside the chain's (after 12 drawers)
    third, alone = by_link[(12, False)], by_link[(20, False)]
    detour = frame.set_index("link").loc["rotated alphabets → none, from our cpu recipe"]
    here, in_chain = 100 * (alone["accuracy"] - first["accuracy"]), 100 * (third["accuracy"] - second["accuracy"])
    assert detour["omniglot20_step"] == pytest.approx(round(here, 2))
    assert detour["omniglot20_chain_step"] == pytest.approx(round(in_chain, 2))
    assert detour["omniglot20_interaction"] == pytest.approx(round(here - in_chain, 2), abs=0.02)
    assert detour["changed"] == "rotations: True → False"
    # the recipe that learns, beside the chain's last link at the start's input size, paired on its trials
    row = frame.set_index("link").loc[learning]
    assert row["beside"] == "rotated alphabets → none" and "objective: trials → pairs" in row["changed"]
    assert row["omniglot20_step"] == pytest.approx(round(100 * (beside[0]["accuracy"] - third["accuracy"]), 2))
    # each link's training compute, from its record, beside its accuracy
    assert step["gflop"] == pytest.approx(round(training_budget(second)["gflop"], 1))
    md = (out / "bridge.md").read_text()
    assert bridge.training_text(step) and f"| 20 drawers → 12 | {bridge.training_text(step)} | " in md
    assert "| link | TFLOP |" in md
    assert "bench reproduce bridge --preset tiny" in md and "| 20 drawers → 12 |" in md
    assert "| rotated alphabets → none, from our cpu recipe |" in md.split("## Changes that interact")[1]
    section = md.split("## Koch's end beside the recipe of his that learns")[1].split("##")[0]
    assert f"| {learning} | " in section and "| rotated alphabets → none | " in section
    assert f"| {learning} |" not in md.split("## Changes that interact")[0]  # not a link of the chain
    assert (out / "bridge.png").is_file() and not pd.read_csv(out / "bridge.csv").empty
    assert (out / "bridge-curves.png").is_file()
    points = pd.read_csv(out / "bridge-curves.csv")
    assert len(points) == 4 and (points.groupby("end")["gflop"].max() > points.groupby("end")["gflop"].min()).all()
    assert "## Accuracy against compute" in md and "Koch's schedule for 92.0 and 93.4" in md
    n_runs = len(load_records(tmp_path / "store"))
    assert re.search(rf"its runs ran on \S+ CPU, \S+ \({n_runs}\)", md)  # all here, none from a pack
    # what they cost: seven trainings (four links, the recipe that learns, two curve ends); a curve's second snapshot reuses its weights
    trained = [r for r in load_records(tmp_path / "store") if not r["training"]["reused_checkpoint"]]
    minutes = sum(epoch_seconds(r["training"]["history"]) for r in trained) / 60
    assert f"- compute of the {n_runs} stored runs: 7 trainings, {minutes:.1f} min of training epochs" in md
    # the store packed and unpacked on another machine: the same table from the stored runs alone
    pack_records(tmp_path / "store", tmp_path / "bridge-runs.jsonl.gz")
    unpack_records(tmp_path / "bridge-runs.jsonl.gz", tmp_path / "elsewhere")
    rep.reproduce("bridge", "tiny", 1, tmp_path / "elsewhere", tmp_path / "again", run_missing=False,
                  command="bench reproduce bridge --preset tiny")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / "bridge.csv"), pd.read_csv(out / "bridge.csv"))


def test_a_runs_device_is_its_gpu_else_its_cpu_and_isa():
    from fewshot_bench.tables.base import ran_on

    assert ran_on({"environment": {"machine": "x86_64", "cpu_isa": "AVX512", "gpu": None}}) == "x86_64 CPU, AVX512"
    assert ran_on({"environment": {"machine": "x86_64 x86_64", "cpu_isa": "AVX2", "gpu": "NVIDIA H200"}}) == "NVIDIA H200"
    assert ran_on({"environment": {"machine": "aarch64"}}) == "aarch64 CPU, ?"  # recorded before cpu_isa


def test_a_record_two_cells_share_counts_once_in_the_header():
    from fewshot_bench.tables.base import compute_line, machine_line

    trained = {"run_id": "a", "eval_seconds": 60.0, "environment": {"machine": "x86_64", "cpu_isa": "AVX2"},
               "training": {"reused_checkpoint": False, "history": [{"seconds": 1800.0}, {"seconds": 1800.0}]}}
    reused = {**trained, "run_id": "b", "training": {**trained["training"], "reused_checkpoint": True}}
    # the pair link at its chosen rate is its rate grid's run: one record, planned twice
    runs = [PlannedRun(Cell(row, "conv_siamese", "cpu"), "omniglot20", {}, 0, trained) for row in ("grid", "link")]
    runs.append(PlannedRun(Cell("link", "conv_siamese", "cpu"), "lake_runs", {}, 0, reused))
    assert compute_line(runs) == ("- compute of the 2 stored runs: 1 training, 1.0 h of training epochs and "
                                  "2.0 min of scoring (sums, whatever ran side by side)")
    assert machine_line(runs).endswith("its runs ran on x86_64 CPU, AVX2 (2)")


def test_a_training_whose_validation_never_moved_is_named_as_one_that_did_not_learn():
    def record(*scores):
        return {"accuracy": scores[-1] or 0.0, "ci95": 0.02, "n_trials": 400, "trial_seeds": [0], "ci_unit": "trial sets",
                "training": {"history": [{"validation_accuracy": v} for v in scores]}}

    assert bridge.stalled(record(0.05, 0.05, 0.05))
    assert not bridge.stalled(record(0.05, 0.05, 0.0625))  # it moved once: it learned something
    assert not bridge.stalled(record(0.05))  # one epoch says nothing
    assert not bridge.stalled(record(None, None))  # trained without validation
    runs = [PlannedRun(Cell("layers", "conv_siamese", "cpu"), protocol, {}, seed, r)
            for protocol in ("omniglot20", "verification")
            for seed, r in enumerate([record(0.8, 0.85), record(0.05, 0.05), record(0.05, 0.05)])]
    runs[3] = dataclasses.replace(runs[3], record=record(0.05, 0.05))  # verification trains its own network
    columns = {p: bridge.cell_columns(runs, "layers", p)[f"{p}_stalled_seeds"] for p in ("omniglot20", "verification")}
    assert columns == {"omniglot20": "1,2", "verification": "0,1,2"}
    frame = pd.DataFrame([{"link": "layers", "omniglot20_stalled_seeds": "1,2", "lake_runs_stalled_seeds": "1,2",
                           "verification_stalled_seeds": "2"},
                          {"link": "views", "omniglot20_stalled_seeds": ""}])
    why = ("(the learning check: its loss never fell 1% below a constant guess's, or its validation never beat the "
           "untrained network's or never moved; kept in the means, so a step to or from it is no measurement of the "
           "change)")
    assert bridge.stalled_lines(frame) == [f"- did not learn: layers, seeds 1,2 on omniglot20, lake_runs {why}",
                                           f"- did not learn: layers, seed 2 on verification {why}"]


def test_the_trend_recovers_a_saturating_curve_and_where_it_reaches_a_target():
    import numpy as np

    rng = np.random.default_rng(1)
    points = [(seed, g, float(bridge.saturating(g, 90.0, 30.0, 0.4) + rng.normal(0, 0.3)))
              for seed in range(3) for g in (1_000, 2_000, 4_000, 8_000, 16_000)]
    trend = bridge.fit_trend(points, (85.0, 92.0))
    assert trend["a"] == pytest.approx(90.0, abs=1.0) and trend["a_low"] <= trend["a"] <= trend["a_high"]
    exact = 1000 * (30.0 / 5.0) ** (1 / 0.4)  # where 90 - 30 x^-0.4 meets 85
    assert trend["reach_85.0"] == pytest.approx(exact, rel=0.3)
    assert trend["reach_85.0_low"] <= trend["reach_85.0"] <= trend["reach_85.0_high"]
    assert trend["reach_92.0"] == float("inf")  # above the asymptote: never
    assert bridge.fit_trend(points[:3], (85.0,)) is None
    # read at a compute beyond the points: near the curve, and inside its interval
    far = bridge.fit_trend(points, (85.0,), at=1e6)
    assert far["at"] == pytest.approx(float(bridge.saturating(1e6, 90.0, 30.0, 0.4)), abs=1.0)
    assert far["at_low"] <= far["at"] <= far["at_high"] and len(far["at_draws"]) > 100
    # one seed: a fit, but no interval (resampling one seed refits the same points)
    alone = bridge.fit_trend([p for p in points if p[0] == 0], (85.0,), at=1e6)
    assert alone["a"] == pytest.approx(90.0, abs=2.0) and np.isnan(alone["a_low"]) and alone["at_draws"] == []
    assert bridge.interval_text(alone["a_low"], alone["a_high"], str) == " (one seed: no interval)"
    lines = bridge.paper_compute_lines({(bridge.CURVE_ROWS[0], "omniglot20"): alone,
                                        (bridge.CURVE_ROWS[1], "omniglot20"): alone}, 1e6)
    assert lines[2].endswith("ours minus Koch's +0.0 (one seed: no interval)")


def test_at_koch_s_compute_the_two_ends_are_compared_by_their_trends():
    trends = {(bridge.CURVE_ROWS[0], "omniglot20"): {"a": 91.5, "at": 90.0, "at_low": 88.0, "at_high": 91.0, "at_draws": [89.0, 90.0, 91.0]},
              (bridge.CURVE_ROWS[1], "omniglot20"): {"a": 100.0, "at": 60.0, "at_low": 50.0, "at_high": 70.0, "at_draws": [70.0, 60.0, 50.0]}}
    lines = bridge.paper_compute_lines(trends, 2.88e9)
    assert "2,880,000,000 GFLOP" in lines[0]
    line = next(x for x in lines if x.startswith("- omniglot20"))
    assert "our cpu recipe (compute curve): 90.0 [88.0, 91.0];" in line and "ours minus Koch's +30.0 [+19." in line
    # Koch's asymptote sits on the fit's bound: his read at that compute is the bound's, and it says so
    assert "Koch's tuned recipe (compute curve): 60.0 [50.0, 70.0] (asymptote at the fit's bound: not pinned)" in line
    assert next(x for x in lines if x.startswith("- verification")) == "- verification: too few points"
    # read more than 10x past the largest budget measured: no figure, the range named
    (beyond,) = bridge.paper_compute_lines(trends, 2.88e9, measured=480_000)
    assert "6,000x the largest budget measured" in beyond and "beyond the measured range" in beyond
    assert bridge.reach_text([76_222_054_824_917.0, 1e6, float("inf")], 4.8e6) == "beyond the measured range"
    assert bridge.reach_text([252_943.0, 121_504.0, 7.1e7], 4.8e6) == "252,943 GFLOP [121,504, beyond]"
    assert bridge.reach_text([float("inf")] * 3, 4.8e6) == "never [never, never]"


def test_koch_s_schedule_is_counted_by_the_same_flop_counter():
    # the paper's network: 5.33 GFLOP an image forward and backward at 105x105; 28x28 koch_cpu: 0.085
    assert bridge.image_gflop("paper") == pytest.approx(5.334, rel=0.01)
    assert bridge.image_gflop("koch_cpu") == pytest.approx(0.0846, rel=0.01)
    assert bridge.paper_gflop() == pytest.approx(150_000 * 9 * 2 * 200 * bridge.image_gflop("paper"))


def test_the_compute_figure_draws_each_end_s_trend_from_its_seeds(tmp_path):
    import numpy as np

    rng = np.random.default_rng(2)
    rows = [{"end": end, "protocol": "omniglot20", "seed": seed, "epoch": e, "share": bridge.FRACTIONS[e],
             "gflop": 30_000.0 * e, "gflop_per_s": 200.0,
             "accuracy": float(bridge.saturating(30_000.0 * e, a, 30.0, 0.4) + rng.normal(0, 0.3))}
            for end, a in zip(bridge.CURVE_ROWS, (90.0, 60.0)) for seed in range(3) for e in bridge.FRACTIONS]
    points = pd.DataFrame(rows)
    trends = bridge.curve_trends(points, 1e9)
    assert set(trends) == {(end, "omniglot20") for end in bridge.CURVE_ROWS}
    ours = trends[(bridge.CURVE_ROWS[0], "omniglot20")]
    # the band comes from the refits' parameters: they reproduce the refits' reads at Koch's compute
    assert len(ours["draws"]) == len(ours["at_draws"]) > 100
    assert [float(bridge.saturating(1e9, *d)) for d in ours["draws"]] == pytest.approx(ours["at_draws"])
    # the table reads the same trends the figure draws
    md = "\n".join(bridge.curve_lines(points, trends, 1e9))
    assert f"{ours['a']:.1f} [{ours['a_low']:.1f}, {ours['a_high']:.1f}]" in md
    assert "of 3 seeds" not in md.split("Cells:")[0]
    # a share read on fewer seeds says so, as the chain's cells do
    partial = points.drop(points.index[(points["seed"] > 0) & (points["epoch"] == 1)])
    partial_md = "\n".join(bridge.curve_lines(partial, bridge.curve_trends(partial, 1e9), 1e9))
    assert partial_md.split("Cells:")[0].count("(1 of 3 seeds)") == 2
    assert "not pinned" not in md
    assert bridge.compute_figure(points, trends, 1e9, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    assert not bridge.compute_figure(points.iloc[:0], {}, 1e9, tmp_path / "none.png")


def test_an_asymptote_at_the_fit_s_bound_is_marked_as_not_pinned():
    """Points still rising by 10 a doubling put the asymptote on its bound of 100: the table says
    the points do not pin it, instead of printing 100.0 as if measured."""
    import numpy as np

    rows = [{"end": bridge.CURVE_ROWS[1], "protocol": "omniglot20", "seed": seed, "epoch": e,
             "share": bridge.FRACTIONS[e], "gflop": 30_000.0 * e, "gflop_per_s": 200.0,
             "accuracy": 20.0 + 10.0 * np.log2(e) + seed} for seed in range(2) for e in bridge.FRACTIONS]
    points = pd.DataFrame(rows)
    trends = bridge.curve_trends(points, 1e9)
    assert trends[(bridge.CURVE_ROWS[1], "omniglot20")]["a"] == pytest.approx(bridge.ASYMPTOTE_BOUND, abs=0.05)
    assert "100.0" in (md := "\n".join(bridge.curve_lines(points, trends, 1e9))) and "not pinned" in md


def test_a_curve_point_counts_every_members_epochs_up_to_its_snapshot():
    """An ensemble's history holds member 0's epochs, then member 1's: the 1/8 snapshot of a
    two-network end spent both networks' first epoch, not member 0's first two."""
    def epoch(member, n):
        return {"epoch": n, "member": member, "step_gflop": 10.0, "images": 100, "step_images": 10,
                "seconds": 5.0}

    cell = Cell(bridge.CURVE_ROWS[0], "conv_siamese", options={"keep": "epoch1"})
    history = [epoch(m, n) for m in (0, 1) for n in range(8)]
    run = PlannedRun(cell, "omniglot20", {}, 0, {"training": {"history": history}, "accuracy": 0.5})
    point = bridge.curve_points([run]).iloc[0]
    assert point["gflop"] == 200.0 and point["share"] == "1/8" and point["gflop_per_s"] == 20.0
