"""The bridge from our cpu recipe to Koch's tuned recipe: each link changes only its own options,
the far end is reached exactly, the pair loss's rate is chosen on validation, and the whole path
runs on a tiny preset."""
import dataclasses

import pandas as pd
import pytest

from fewshot_bench.api import METHODS
from fewshot_bench.errors import UserError
from fewshot_bench.experiments import reproduce as rep
from fewshot_bench.presets import preset_path, write_preset
from fewshot_bench.records import load_records
from fewshot_bench.tables import bridge


def tuned_koch(**changes) -> dict:
    """A stand-in for bench tune's preset: koch_cpu with other per-layer rates and layers."""
    values = dataclasses.asdict(METHODS.get("conv_siamese").make_config("koch_cpu"))
    values.update(lr=[0.02, 0.01, 0.01, 0.005, 0.001, 0.001], channels=[16, 96, 128, 128], fc_units=1408, **changes)
    write_preset(preset_path("conv_siamese", "conv_siamese-koch_cpu-omniglot20"), "conv_siamese", values,
                 {"study": "conv_siamese-koch_cpu-omniglot20", "trial": 7})
    return values


def test_each_link_changes_only_its_own_options_and_the_chain_ends_at_the_tuned_recipe():
    with pytest.raises(UserError, match="bench tune --method conv_siamese --preset koch_cpu"):
        bridge.chain("cpu")
    tuned_koch()
    steps = bridge.chain("cpu")
    assert steps[0][1] == dataclasses.asdict(METHODS.get("conv_siamese").make_config("cpu"))
    assert [label for label, _ in steps[1:]][:-2] == [link.label for link in bridge.LINKS][:-2]
    for (_, before), link, (label, after) in zip(steps, bridge.LINKS, steps[1:]):
        changed = {k for k in after if after[k] != before[k]}
        assert changed and changed <= set(link.keys) | set(link.values), label
    *_, (_, koch), (label35, at35), (label52, at52) = steps
    end = dataclasses.asdict(METHODS.get("conv_siamese").make_config("conv_siamese-koch_cpu-omniglot20"))
    assert koch == end  # the named links arrive at the tuned recipe exactly
    assert (at35["input_size"], at52["input_size"]) == (35, 52) and at52["budget_gflop"] == end["budget_gflop"]
    assert label35 == "input 28 → 35 (equal compute)" and label52 == "input 35 → 52 (equal compute)"


def test_a_difference_no_link_makes_is_refused():
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
    assert len([c for c in cells if not bridge.is_rate_cell(c)]) == len(bridge.LINKS) + 1


def test_the_bridge_runs_end_to_end_on_a_tiny_preset(data_root, tmp_path, monkeypatch):
    drawers = tuple(range(1, 13))
    monkeypatch.setattr(bridge, "LINKS", (bridge.Link("20 drawers → 12", values={"train_drawers": drawers}),
                                          bridge.Link("rotated alphabets → none", values={"rotations": False})))
    monkeypatch.setattr(bridge, "ENDS", {"tiny": ("tiny", ("tiny",))})
    monkeypatch.setattr(bridge, "SEEDS", 1)
    monkeypatch.setattr(bridge, "PROTOCOLS", (("omniglot20", {"way": 5, "sets_per_alphabet": 1}),
                                              ("verification", {"pairs": 200, "threshold_pairs": 200})))
    monkeypatch.setattr(rep, "TRIAL_SEEDS", [0, 1])
    out = tmp_path / "results"
    frame = rep.reproduce("bridge", "tiny", 1, tmp_path / "store", out, command="bench reproduce bridge --preset tiny")
    records = load_records(tmp_path / "store")
    # verification reuses the omniglot20 fit, except with drawers 13-20: it holds them out of training
    trained = [(r["protocol"], r["method_config"]["train_drawers"][-1]) for r in records
               if not r["training"]["reused_checkpoint"]]
    assert len(records) == 3 * 2 and sorted(trained) == [("omniglot20", 12), ("omniglot20", 12), ("omniglot20", 20),
                                                         ("verification", 20)]
    assert list(frame["link"]) == ["our cpu recipe", "20 drawers → 12", "rotated alphabets → none"]
    # a step is the paired difference on identical trials
    by_link = {(r["method_config"]["train_drawers"][-1], r["method_config"]["rotations"]): r
               for r in records if r["protocol"] == "omniglot20"}
    first, second = by_link[(20, True)], by_link[(12, True)]
    assert [d["trial_seed"] for d in first["draws"]] == [d["trial_seed"] for d in second["draws"]] == [0, 1]
    step = frame.set_index("link").loc["20 drawers → 12"]
    assert step["omniglot20_step"] == pytest.approx(round(100 * (second["accuracy"] - first["accuracy"]), 2))
    assert step["changed"] == "train_drawers: 1-20 → 1-12"
    assert frame.set_index("link").loc["rotated alphabets → none", "changed"] == "rotations: True → False"
    md = (out / "bridge.md").read_text()
    assert "bench reproduce bridge --preset tiny" in md and "| 20 drawers → 12 |" in md
    assert (out / "bridge.png").is_file() and not pd.read_csv(out / "bridge.csv").empty
