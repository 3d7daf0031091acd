"""The papers' recipes (issue 25): schedules, shot-matched episodes across all training classes,
summed shots, and what a training's budget and convergence verdict record."""
import numpy as np
import pytest
import torch

from fewshot_bench.api import METHODS
from fewshot_bench.learning.networks import build_network
from fewshot_bench.learning.objectives import class_scores
from fewshot_bench.learning.sampling import CharacterIndex, trial_batch
from fewshot_bench.learning.trainer import lr_factor
from fewshot_bench.records import still_improving, training_budget
from tests.test_every_plugin import synthetic_background


def test_schedules_halve_stay_constant_or_anneal():
    halving = lr_factor("halving", 10_000, 2000)
    assert [halving(s) for s in (0, 1999, 2000, 4000, 9999)] == [1, 1, 0.5, 0.25, 0.0625]
    assert lr_factor("constant", 100, 1)(99) == 1.0
    cosine = lr_factor("cosine", 100, 1)
    assert cosine(0) == 1.0 and cosine(50) == pytest.approx(0.5) and cosine(100) == pytest.approx(0.0)


@pytest.mark.parametrize("preset, shot, drawers", [("cpu_1shot", 1, 6), ("cpu_5shot", 5, 10),
                                                   ("paper_1shot", 1, 6), ("paper_5shot", 5, 10)])
def test_snells_episodes_are_60_way_with_5_queries_and_the_test_shot(preset, shot, drawers):
    cfg = METHODS.get("protonet").make_config(preset)
    assert (cfg.way, cfg.shot, cfg.drawers_per_character - cfg.shot) == (60, shot, 5)
    assert cfg.across_alphabets and cfg.alphabets_per_batch == 1 and cfg.schedule == "halving"
    assert cfg.halve_every == 2000 and cfg.channels == (64,) * 4 and cfg.input_size == 28


def test_60_way_episodes_draw_their_classes_across_all_training_classes():
    index = CharacterIndex(synthetic_background(alphabets=8, characters=10, drawers=20))
    rng = np.random.default_rng(0)
    alphabets_seen = set()
    for _ in range(20):
        (grid,) = trial_batch(index, 1, 60, 6, rng, across_alphabets=True)
        assert grid.shape == (6, 60)
        classes = index.labels[grid]
        assert (classes == classes[0]).all() and len(set(classes[0])) == 60  # columns are classes, all distinct
        assert len(set(grid.ravel())) == 360  # no image twice
        alphabets_seen |= {index.characters[c][0] for c in classes[0]}
    assert len(alphabets_seen) == 8


def test_the_papers_train_one_model_per_setting_with_their_episode_shapes():
    relation = {name: METHODS.get("relation_net").make_config(f"cpu_{name}") for name in ("5w1s", "5w5s", "20w1s", "20w5s")}
    assert {n: (c.way, c.shot, c.drawers_per_character - c.shot) for n, c in relation.items()} == {
        "5w1s": (5, 1, 19), "5w5s": (5, 5, 15), "20w1s": (20, 1, 10), "20w5s": (20, 5, 5)}
    assert all(c.pool_shots == "sum" and c.halve_every == 100_000 for c in relation.values())
    maml5, maml20 = (METHODS.get("maml").make_config(f"paper_{n}") for n in ("5w1s", "20w1s"))
    assert (maml5.alphabets_per_batch, maml5.inner_steps, maml5.inner_lr, maml5.test_inner_steps) == (32, 1, 0.4, 3)
    assert (maml20.alphabets_per_batch, maml20.inner_steps, maml20.inner_lr, maml20.test_inner_steps) == (16, 5, 0.1, 5)
    assert not maml20.first_order and METHODS.get("maml").make_config("cpu_20w1s").first_order
    # a cpu preset is its paper's recipe with fewer steps
    for method in ("matching_net", "relation_net"):
        cls = METHODS.get(method)
        paper, cpu = cls.make_config("paper_20w1s"), cls.make_config("cpu_20w1s")
        differ = {k for k in vars(paper) if getattr(paper, k) != getattr(cpu, k)}
        assert differ == {"epochs", "patience"} or differ == {"epochs", "patience", "steps_per_epoch"}


def test_relation_networks_sum_a_class_s_shots():
    cfg = METHODS.get("relation_net").make_config("tiny")
    net = build_network(cfg)
    support = torch.randn(6, net.embed(torch.zeros(1, 1, 16, 16)).shape[1])
    queries = torch.randn(2, support.shape[1])
    classes = torch.tensor([0, 0, 0, 1, 1, 1])
    net.eval()
    with torch.no_grad():
        summed = class_scores(net, queries, support, classes, "prototypes", "sum")
        expected = net.logits(queries, torch.stack([support[:3].sum(0), support[3:].sum(0)]))
        meaned = class_scores(net, queries, support, classes, "prototypes")
    torch.testing.assert_close(summed, expected)
    assert not torch.allclose(summed, meaned) and cfg.pool_shots == "sum"


def test_still_improving_reads_validation_or_the_training_loss():
    def epochs(values, key):
        return [{"loss": 1.0, "validation_accuracy": None, key: v} for v in values]

    rising = epochs([0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99], "validation_accuracy")
    flat = epochs([0.5, 0.9, 0.91, 0.9, 0.9, 0.91, 0.9, 0.91], "validation_accuracy")
    assert still_improving(rising, 320) is True and still_improving(flat, 320) is False
    falling = [{"loss": v, "validation_accuracy": None} for v in (3, 2, 1.5, 1.2, 1.0, 0.9, 0.8, 0.7)]
    level = [{"loss": v, "validation_accuracy": None} for v in (3, 2, 1, 0.5, 0.5, 0.5, 0.5, 0.5)]
    assert still_improving(falling) is True and still_improving(level) is False
    assert still_improving(falling[:3]) is None  # too short to tell


def test_a_training_records_its_budget_and_compute_grows_with_its_steps(tmp_path):
    background = synthetic_background(alphabets=3, characters=8)
    budgets = []
    for epochs in (2, 4):
        cls = METHODS.get("protonet")
        method = cls(cls.make_config("tiny_episodes", {"epochs": str(epochs), "patience": str(epochs)}), seed=0,
                     preset="tiny_episodes", work_dir=tmp_path)
        method.fit(background)
        record = {"train_seconds": 1.0, "training": {"history": method.history_, "reused_checkpoint": False}}
        budgets.append(training_budget(record))
    short, long = budgets
    assert long["steps"] == 2 * short["steps"] == 4 * 3 and long["images"] == 2 * short["images"] == 12 * 6 * 3
    assert long["gflop"] == pytest.approx(2 * short["gflop"]) and short["gflop"] > 0
    assert long["still_improving"] in (True, False) and short["still_improving"] is None
    assert long["precision"] == "fp32"  # the tiny preset trains in fp32


def test_chen_baseline_scores_simpleshots_network_with_a_linear_classifier_per_episode(tmp_path):
    background = synthetic_background(alphabets=3, characters=8)
    methods = {}
    for name in ("simpleshot", "chen_baseline"):
        cls = METHODS.get(name)
        methods[name] = cls(cls.make_config("tiny"), seed=0, preset="tiny", work_dir=tmp_path).fit(background)
    simple, chen = methods["simpleshot"], methods["chen_baseline"]
    # one training serves both: the same checkpoint, reused, the same weights
    assert chen.checkpoint_key_ == simple.checkpoint_key_ and chen.reused_checkpoint_
    assert len(list(tmp_path.glob("*.pt"))) == 1
    torch.testing.assert_close(chen.model_.layers[0][0].weight, simple.model_.layers[0][0].weight)
    # the per-episode classifier separates separable support features
    features = torch.eye(4).repeat(2, 1) * 5  # (8, 4): two shots of 4 classes
    classes = torch.arange(4).repeat(2)
    weight, bias = chen._fit_linear(torch.stack([features, features]), torch.stack([classes, classes]), 4)
    predicted = (features @ weight[0] + bias[0]).argmax(1)
    assert (predicted == classes).all() and weight.shape == (2, 4, 4)


def test_pixels_compare_the_images_own_polarity_when_asked():
    cls = METHODS.get("pixel_1nn")
    ink = cls(cls.make_config(None, {"metric": "cosine"}))
    paper = cls(cls.make_config(None, {"metric": "cosine", "invert": "true"}))
    images = np.zeros((2, 4, 4), dtype=np.uint8)
    images[0, 1, 1] = images[1, 2, 2] = 255  # one ink pixel each, in different places
    torch.testing.assert_close(paper.prepare(images), 1 - ink.prepare(images))
    a, b = ink.prepare(images), paper.prepare(images)
    assert ink.score(a[:1], a[1:]).item() == 0.0 and paper.score(b[:1], b[1:]).item() > 0.9  # paper dominates
    assert "invert" not in ink.config_dict() and paper.config_dict()["invert"] is True  # old keys unchanged


def _tiny_losses(tmp_path, compile_: bool):
    cls = METHODS.get("protonet")
    background = synthetic_background(alphabets=3, characters=8)
    method = cls(cls.make_config("tiny_episodes", {"compile": str(compile_)}), seed=0, preset="tiny_episodes",
                 work_dir=tmp_path / str(compile_))
    method.fit(background)
    return [h["loss"] for h in method.history_], method


def test_compiled_and_eager_training_give_the_same_losses(tmp_path):
    eager, _ = _tiny_losses(tmp_path, False)
    compiled, method = _tiny_losses(tmp_path, True)
    assert compiled == pytest.approx(eager, rel=1e-4)
    model, embed = method.compiled_
    assert embed != model.embed  # the compiled forward trained, not the eager one
    _, eager_method = _tiny_losses(tmp_path, False)  # the eager training again: its stored checkpoint
    assert eager_method.reused_checkpoint_ and method.config.compile and not eager_method.config.compile
    # one checkpoint key for both ways of training: compile changes the speed, not what is learned
    assert method.checkpoint_key_ == eager_method.checkpoint_key_


def test_without_a_cxx_compiler_compile_trains_eagerly_with_a_warning(tmp_path, monkeypatch):
    from fewshot_bench.learning import trainer

    eager, _ = _tiny_losses(tmp_path, False)
    monkeypatch.setattr(trainer, "cxx_compiler", lambda: None)
    monkeypatch.setattr(torch, "compile", lambda *a, **k: pytest.fail("compiled without a compiler"))
    with pytest.warns(UserWarning, match="needs a C\\+\\+ compiler"):
        losses, _ = _tiny_losses(tmp_path / "no-cxx", True)
    assert losses == eager
