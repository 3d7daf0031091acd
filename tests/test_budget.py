"""The controlled comparison (issue 26): trainings to a FLOP budget, read at shares of it."""
import pandas as pd
import pytest

from fewshot_bench.api import METHODS
from fewshot_bench.imageset import ImageSet
from fewshot_bench.learning.sampling import CharacterIndex
from fewshot_bench.experiments import reproduce as rep
from fewshot_bench.records import epoch_gflop, load_records, training_budget
from fewshot_bench.tables import budget
from tests.test_every_plugin import synthetic_background


def test_a_budget_sets_the_steps_and_snapshots_read_it_at_shares(tmp_path):
    cls = METHODS.get("protonet")
    background = synthetic_background(alphabets=3, characters=8)
    options = {"budget_gflop": "0.5", "epochs": "4", "patience": "4", "snapshots": "1,4", "schedule": "constant"}
    fitted = {}
    for keep in ("epoch1", "epoch4"):
        method = cls(cls.make_config("tiny_episodes", {**options, "keep": keep}), seed=0, preset="tiny_episodes",
                     work_dir=tmp_path)
        fitted[keep] = method.fit(background)
    first, last = fitted["epoch1"], fitted["epoch4"]
    assert last.reused_checkpoint_ and first.checkpoint_key_ == last.checkpoint_key_  # one training, read twice
    history = first.history_
    steps = {h["steps"] for h in history}
    assert len(steps) == 1 and len(history) == 4  # the same steps every epoch, set from the budget
    spent = sum(h["step_gflop"] * h["steps"] for h in history)
    # the steps per epoch: the budget's quarter over one step's FLOPs, rounded to whole steps
    step_gflop = history[0]["step_gflop"]
    assert steps == {max(1, round(0.5 / 4 / step_gflop))}
    # and one step's FLOPs as torch counts a forward and backward of a batch of the same shape
    from torch.utils.flop_counter import FlopCounterMode

    from fewshot_bench.imageset import as_batch, to_tensor
    from fewshot_bench.learning.networks import build_network
    from fewshot_bench.learning.sampling import CharacterIndex

    probe = cls(cls.make_config("tiny_episodes", options), seed=0, preset="tiny_episodes")
    objective = probe.objective_for(CharacterIndex(background))
    probe.model_ = build_network(probe.config, objective.n_classes(), 1)
    loss = objective.bare_loss(as_batch(to_tensor(background.images, probe.config.input_size)))
    with FlopCounterMode(display=False) as counter:
        loss().backward()
    assert step_gflop == pytest.approx(counter.get_total_flops() / 1e9, rel=1e-6)
    # episodes of one size: counting per image gives the same spend as counting per step
    assert sum(map(epoch_gflop, history)) == pytest.approx(spent)
    w1 = first.model_.layers[0][0].weight
    w4 = last.model_.layers[0][0].weight
    assert not (w1 == w4).all()  # epoch 1's weights are not the final ones
    with pytest.raises(Exception, match="keep must be"):
        cls.make_config("tiny_episodes", {**options, "keep": "epoch3"})


def test_an_epochs_compute_counts_the_images_its_varying_batches_held():
    # the counted first step held 10 images at 2 GFLOP; the epoch's 5 steps held 50 in all
    assert epoch_gflop({"step_gflop": 2.0, "step_images": 10, "images": 50, "steps": 5}) == 10.0
    assert epoch_gflop({"step_gflop": 2.0, "step_images": 20, "images": 50, "steps": 2}) == 5.0
    assert epoch_gflop({"step_gflop": 2.0, "images": 50, "steps": 5}) == 10.0  # recorded before step_images


def test_budget_table_tiny_path(data_root, tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "ROWS", (("Prototypical nets", "protonet", "tiny_episodes", {}),
                                         ("SimpleShot", "simpleshot", "tiny", {})))
    monkeypatch.setattr(budget, "TASKS", (("5w1s", "vinyals", {"way": 5, "shot": 1, "episodes": 20}),))
    monkeypatch.setattr(budget, "FRACTIONS", {1: "1/2", 2: "1"})
    monkeypatch.setattr(budget, "EPOCHS", 2)
    monkeypatch.setattr(budget, "SEEDS", 1)
    monkeypatch.setattr(budget, "BUDGET_GFLOP", 0.4)
    monkeypatch.setattr(budget, "TUNE_EPOCHS", 1)
    monkeypatch.setattr(budget, "LR_FACTORS", (0.5, 2.0))
    monkeypatch.setattr(budget, "EXTEND", 0)  # two rates: the grid's growth is tested on its own below
    monkeypatch.setattr(budget, "TUNE_TASK", ("vinyals", {"way": 5, "shot": 1, "episodes": 20, "test_split": "val"}))
    monkeypatch.setattr(budget, "plan_cells", lambda preset, stored=None, real=budget.plan_cells: real("cpu", stored))
    out = tmp_path / "results"
    frame = rep.reproduce("budget", "cpu", 1, tmp_path / "store", out, command="bench reproduce budget")
    everything = load_records(tmp_path / "store")
    # first each method's rate, chosen on val episodes: two rates a method, each its own training
    tuning = [r for r in everything if r["protocol_config"].get("test_split") == "val"]
    assert len(tuning) == 4 and not any(r["training"]["reused_checkpoint"] for r in tuning)
    records = [r for r in everything if r not in tuning]
    for method in ("protonet", "simpleshot"):
        val = {r["method_config"]["adam_lr"]: r["accuracy"] for r in tuning if r["method"] == method}
        assert len(val) == 2
        best = max(val, key=val.get)
        assert {r["method_config"]["adam_lr"] for r in records if r["method"] == method} == {best}
    assert len(records) == 4 and sum(not r["training"]["reused_checkpoint"] for r in records) == 2  # two trainings
    # FLOPs grow with the steps: the full budget's point spent about twice the half's
    for system, part in frame.groupby("system"):
        half, full = part.sort_values("epoch")["gflop"]
        assert full == pytest.approx(2 * half) and full == pytest.approx(0.4, rel=0.6)
    # every method saw the same episodes
    episodes = {r["method"]: [(s["queries"], s["support"]) for d in r["draws"] for s in d["sets"]] for r in records}
    assert episodes["protonet"] == episodes["simpleshot"]
    assert all(training_budget(r)["steps"] > 0 for r in records)
    md = (out / "budget.md").read_text()
    assert "## 5w1s" in md and "Top two at each budget" in md and (out / "budget.png").is_file()
    assert "## Learning rates, chosen on the val classes" in md and md.count("**") == 4  # one bold rate a method
    assert "Chosen at the edge of the grid" in md  # two rates: either choice is an edge
    assert set(frame["share"]) == {"1/2", "1"} and not pd.isna(frame["accuracy"]).any()


def test_the_rate_grid_grows_while_its_best_rate_lies_at_its_edge(monkeypatch):
    monkeypatch.setattr(budget, "ROWS", (("Prototypical nets", "protonet", "tiny_episodes", {}),))

    def stored_by(accuracy_of):
        return lambda cell, protocol, options, seed: {"accuracy": accuracy_of(cell.options["adam_lr"])}

    def rates(stored):
        return [c.options["adam_lr"] for c in budget.tuning_cells("cpu", stored)]

    base = [c.options["adam_lr"] for c in budget.tuning_cells("cpu")]
    assert len(base) == len(budget.LR_FACTORS)
    assert rates(stored_by(lambda lr: -abs(lr - base[1]))) == base  # best inside: the grid stays
    rising = rates(stored_by(lambda lr: lr))  # best always the largest: up to EXTEND more, then stop
    assert rising[:len(base)] == base and len(rising) == len(base) + budget.EXTEND
    assert rising[-1] == pytest.approx(base[-1] * 3 ** budget.EXTEND, rel=1e-2)
    falling = rates(stored_by(lambda lr: -lr))
    assert falling[-len(base):] == base and len(falling) == len(base) + budget.EXTEND
    # a grown grid's new rate not yet stored: no choice, so no budget training is planned
    def partial(cell, *_):
        return {"accuracy": cell.options["adam_lr"]} if cell.options["adam_lr"] in base else None

    assert len(rates(partial)) == len(base) + 1
    assert not [c for c in budget.plan_cells("cpu", partial) if not c.options.get("keep") == "last"]


def test_the_notes_say_which_pairs_change_order_and_set_the_full_budget_beside_table4():
    def run(row, epoch, hits):  # a stored 5w1s run of 400 trials, ``hits`` of them right (the first ones)
        cell = budget.Cell(row, "protonet", "cpu_1shot", {"keep": f"epoch{epoch}"})
        record = {"draws": [{"correct": [1] * hits + [0] * (400 - hits)}]}
        return budget.PlannedRun(cell, "vinyals", {"way": 5, "shot": 1}, 0, record)

    runs = [run("Prototypical nets (60-way)", 1, 300), run("SimpleShot (classifier)", 1, 200),
            run("Prototypical nets (60-way)", 8, 320), run("SimpleShot (classifier)", 8, 380)]
    frame = pd.DataFrame([{"system": "SimpleShot (classifier)", "task": "5w1s", "share": "1", "accuracy": 95.0},
                          {"system": "Prototypical nets (60-way)", "task": "5w1s", "share": "1", "accuracy": 80.0}])
    table4 = pd.DataFrame([{"system": "SimpleShot", "5w1s": 97.1, "5w1s_gflop": 36_800.0},
                           {"system": "Prototypical nets", "5w1s": float("nan"), "5w1s_gflop": float("nan")}])
    text = "\n".join(budget.reading_lines(frame, runs, table4))
    assert ("at 1/8 of the budget: (1) Prototypical nets (60-way) (2) SimpleShot (classifier); at 1: "
            "(1) SimpleShot (classifier) (2) Prototypical nets (60-way)") in text
    assert "  - SimpleShot (classifier) passes Prototypical nets (60-way): at 1/8 Prototypical nets (60-way) > " in text
    assert "| SimpleShot (classifier) | 5w1s | 95.0 | SimpleShot | 97.1 | 36,800 | -2.1 |" in text
    assert "| Prototypical nets (60-way) | 5w1s | 80.0 | Prototypical nets | not run | | |" in text
    assert "no table4.csv" in "\n".join(budget.reading_lines(frame, runs, None))


def test_a_cell_says_its_seeds_where_they_differ_from_the_table():
    frame = pd.DataFrame([{"accuracy": 90.0, "ci95_seeds": 1.5, "seeds": 3},
                          {"accuracy": 80.0, "ci95_seeds": 2.0, "seeds": 3},
                          {"accuracy": 70.0, "ci95_seeds": float("nan"), "seeds": 1},
                          {"accuracy": float("nan"), "ci95_seeds": float("nan"), "seeds": 0}])
    usual = budget.usual_seeds(frame)
    assert usual == 3 and "mean over 3 training seeds ± the 95% t-interval over seeds" in budget.seeds_line(usual)
    texts = [budget.cell_text(row, usual) for _, row in frame.iterrows()]
    assert texts == ["90.0 ± 1.5", "80.0 ± 2.0", f"70.0 (1 of {budget.SEEDS} seeds)", "not run"]
    assert "one training seed" in budget.seeds_line(budget.usual_seeds(frame.iloc[2:]))


def test_a_budget_sizes_varying_trial_batches_by_their_mean_not_by_the_probes_draw():
    # one alphabet of 3 characters beside two of 8: a 5-way group holds 3 or 5 characters, so the
    # probe's batch held 24, 32 or 40 images as it happened to draw; the steps must not follow it
    full = synthetic_background(alphabets=3, characters=8)
    keep = ~((full.meta["alphabet"] == "Synthetic0") & (full.meta["character"] > "character03")).to_numpy()
    background = ImageSet(full.images[keep], full.meta[keep].reset_index(drop=True))
    cls = METHODS.get("conv_siamese")
    options = {"budget_gflop": "0.4", "epochs": "1", "patience": "1", "rotations": "false"}
    steps, spent = [], []
    for seed in range(4):
        method = cls(cls.make_config("tiny", options), seed=seed, preset="tiny").fit(background)
        (epoch,) = method.history_
        steps.append(epoch["steps"])
        spent.append(epoch_gflop(epoch))
        objective = method.objective_for(CharacterIndex(background))
        assert objective.mean_images() == 2 * 4 * (3 + 5 + 5) / 3  # groups x drawers x mean way
    assert max(steps) <= 1.05 * min(steps)
    assert all(0.8 * 0.4 < s < 1.2 * 0.4 for s in spent)  # what the epochs held, counted, near the budget
