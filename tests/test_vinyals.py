"""The Vinyals split benchmark, its methods (tiny presets) and Table 4."""
import numpy as np
import pandas as pd
import pytest
import torch

from fewshot_bench.data import vinyals_split as vinyals
from fewshot_bench.experiments import reproduce as rep
from fewshot_bench.tables import table4
from fewshot_bench.tables.base import TABLES
from fewshot_bench.api import METHODS, PROTOCOLS, TrialSet
from fewshot_bench.data.datasets import REMOTE_FILES
from fewshot_bench.errors import UserError
from fewshot_bench.evaluation import evaluate_trial_sets
from fewshot_bench.learning.networks import TwinNet
from fewshot_bench.learning.objectives import class_scores, maml_loss
from fewshot_bench.records import load_records
from fewshot_bench.experiments.runner import RunSpec, run

NEW_METHODS = ("matching_net", "relation_net", "maml", "simpleshot")


def protocol(**options):
    cls = PROTOCOLS.get("vinyals")
    return cls(cls.make_config({k: str(v) for k, v in options.items()}))


def test_split_files_hold_the_published_classes(data_root):
    assert vinyals.verify_split(data_root) == []
    train = vinyals.read_split(data_root, "train")
    assert len(train) == 4112 and train[0] == ("Angelic", "character01", 0)
    # every character of a part comes in all four rotations
    per_character = pd.Series([(a, c) for a, c, _ in train]).value_counts()
    assert set(per_character) == {4}
    sha = {r.name: r.sha256 for r in REMOTE_FILES}
    assert sha["omniglot/vinyals_split/test.txt"].startswith("845264cc")  # as the data README publishes it
    with pytest.raises(UserError, match="unknown Vinyals split part"):
        vinyals.read_split(data_root, "dev")


def test_rotations_are_classes_of_their_own(data_root):
    images = vinyals.class_set(data_root, "train")
    meta = images.meta
    assert images.images.shape[1:] == (28, 28) and images.images.dtype == np.uint8
    assert meta["label"].nunique() == 4112 and (meta.groupby("label").size() == 20).all()

    def image(alphabet, drawer):
        row = meta.index[(meta["alphabet"] == alphabet) & (meta["character"] == "character01")
                         & (meta["drawer"] == drawer)][0]
        return images.images[row], meta.loc[row, "label"]

    upright, label0 = image("Angelic@rot000", 3)
    turned, label90 = image("Angelic@rot090", 3)
    assert label0 != label90 and np.array_equal(turned, np.rot90(upright))  # counter-clockwise, as PIL
    # labels follow the split file's order, each class its 20 drawers in order
    first = meta.groupby("label").first()
    assert list(zip(first["alphabet"], first["character"], first["rotation"])) == \
        [(vinyals.rotated_name(a, d), c, d) for a, c, d in vinyals.read_split(data_root, "train")]
    assert (meta.groupby("label")["drawer"].apply(list) == [list(range(1, 21))] * 4112).all()


def test_no_test_character_reaches_training(data_root):
    p = protocol()
    background = p.background()
    test = vinyals.characters(vinyals.class_set(data_root, "test"))
    val = vinyals.characters(vinyals.class_set(data_root, "val"))
    assert not (vinyals.characters(background) & (test | val))
    p.check_background(background)  # the runner's firewall passes
    # trainval holds the val classes, never the test ones
    trainval = protocol(train_split="trainval")
    assert vinyals.characters(trainval.background()) & val and trainval.validation() is None
    trainval.check_background(trainval.background())
    # a background with one test character in any rotation is refused
    test_images = vinyals.class_set(data_root, "test")
    leaking = type(background)(np.concatenate([background.images, test_images.images[:1]]),
                               pd.concat([background.meta, test_images.meta.iloc[:1]], ignore_index=True))
    with pytest.raises(RuntimeError, match="held-out Vinyals characters"):
        p.check_background(leaking)
    # the split's Gurmukhi is divided between train and test: an alphabet check would not do
    assert "Gurmukhi" in {vinyals.base_alphabet(a) for a in background.alphabets}


def test_episodes_have_their_shapes_and_are_seeded(data_root):
    p = protocol(way=20, shot=5, queries=2, episodes=30)
    sets = p.trial_sets(0)
    assert len(sets) == 30
    for ts in sets[:5]:
        assert ts.queries.shape == (40, 28, 28) and ts.support.shape == (100, 28, 28)
        assert np.bincount(ts.support_class).tolist() == [5] * 20 and np.bincount(ts.answer).tolist() == [2] * 20
        assert len(set(ts.query_ids) | set(ts.support_ids)) == 140  # distinct images
        classes = [i.rsplit("/", 1)[0] for i in ts.support_ids]
        assert len(set(classes)) == 20
        # a query's class is the class of its answer's supports
        for q, a in zip(ts.query_ids, ts.answer):
            assert q.rsplit("/", 1)[0] == classes[list(ts.support_class).index(a)]
    again = p.trial_sets(0)
    assert all(a.query_ids == b.query_ids and a.support_ids == b.support_ids for a, b in zip(sets, again))
    assert sets[0].support_ids != p.trial_sets(1)[0].support_ids
    test = {f"{vinyals.rotated_name(a, d)}/{c}" for a, c, d in vinyals.read_split(data_root, "test")}
    assert {i.rsplit("/", 1)[0] for ts in sets for i in ts.support_ids + ts.query_ids} <= test
    with pytest.raises(UserError, match="shot \\+ queries"):
        protocol(shot=15, queries=10)



def test_settings_are_chosen_on_val_episodes_keyed_apart_from_test(data_root):
    on_val = protocol(way=5, episodes=20, test_split="val")
    val = {f"{vinyals.rotated_name(a, d)}/{c}" for a, c, d in vinyals.read_split(data_root, "val")}
    assert {i.rsplit("/", 1)[0] for ts in on_val.trial_sets(0) for i in ts.support_ids + ts.query_ids} <= val
    on_val.check_background(on_val.background())  # train classes only: val stays out of training
    # runs stored before the option existed keep their keys; a val run is keyed apart
    assert "test_split" not in protocol(way=5).config_dict()
    assert on_val.config_dict()["test_split"] == "val"
    with pytest.raises(UserError, match="test_split=val needs train_split=train"):
        protocol(test_split="val", train_split="trainval")
    with pytest.raises(UserError, match="'dev'"):
        protocol(test_split="dev")

def test_class_scores_are_prototypes_and_summed_attention():
    torch.manual_seed(0)
    cfg = METHODS.get("protonet").make_config("tiny")
    model = TwinNet(cfg)
    queries, support = torch.randn(3, 6), torch.randn(4, 6)
    classes = torch.tensor([0, 1, 0, 1])
    protos = torch.stack([support[[0, 2]].mean(0), support[[1, 3]].mean(0)])
    torch.testing.assert_close(class_scores(model, queries, support, classes, "prototypes"),
                               -torch.cdist(queries, protos).pow(2))
    cos = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(support, dim=1).T
    model.metric = "cosine"
    attention = torch.softmax(cos, 1)
    torch.testing.assert_close(class_scores(model, queries, support, classes, "matching").exp(),
                               torch.stack([attention[:, [0, 2]].sum(1), attention[:, [1, 3]].sum(1)], 1))


def test_pixel_1nn_k_shot_takes_the_nearest_shot():
    method = METHODS.get("pixel_1nn")()
    support = torch.zeros(4, 4, 4)
    support[1] = 1.0  # class 0: one blank, one full image; class 1: two half images
    support[2:, :2] = 1.0
    query = torch.ones(1, 4, 4)
    ts = TrialSet(query.numpy(), support.numpy(), np.array([0]), "k", support_class=np.array([0, 0, 1, 1]))
    assert evaluate_trial_sets(method, [ts])["accuracy"] == 1.0  # the mean distance would pick class 1


def test_maml_second_order_differs_from_first_order():
    cls = METHODS.get("maml")
    torch.manual_seed(0)
    method = cls(cls.make_config("tiny"))
    from fewshot_bench.learning.networks import build_network

    model = build_network(method.config)
    x = torch.rand(2 * 5, 1, 16, 16)
    grads = {}
    for second in (True, False):
        model.zero_grad()
        maml_loss(model, x, [(2, 5)], 1, 2, 0.4, second).backward()
        grads[second] = model.layers[0][0].weight.grad.clone()
    assert not torch.allclose(grads[True], grads[False])


@pytest.mark.parametrize("name", NEW_METHODS + ("protonet",))
def test_each_method_trains_on_the_vinyals_split_and_scores_k_shot_episodes(name, data_root, tmp_path):
    # relation networks sum a class's shots (Sung et al.): a model is trained for the shot it scores
    options = {"shot": "5", "drawers_per_character": "7"} if name == "relation_net" else {}
    record = run(RunSpec(name, "vinyals", "tiny", options, {"way": 5, "shot": 5, "episodes": 40}, 0, [0], None,
                         tmp_path / "checkpoints"))
    assert record["n_trials"] == 200 and 0.3 < record["accuracy"] <= 1.0  # chance 0.2
    assert record["protocol_config"]["train_split"] == "train"
    assert record["training"]["epochs"] == 2
    assert record["draws"][0]["sets"][0]["support_class"] == sorted([0, 1, 2, 3, 4] * 5)


def test_matching_net_full_context_embeddings_train_and_change_the_scores(data_root, tmp_path):
    import torch

    from fewshot_bench.experiments.runner import build
    from fewshot_bench.learning.networks import build_network

    spec = RunSpec("matching_net", "vinyals", "tiny", {"fce": "true"}, {"episodes": 20}, 0, [0], None,
                   tmp_path / "checkpoints")
    method, protocol = build(spec)
    method.fit(protocol.background())
    fce = method.model_.fce
    assert fce is not None
    torch.manual_seed(0)
    untrained = build_network(method.config).fce  # the same initialisation, before training
    assert any(not torch.equal(a, b) for a, b in zip(fce.state_dict().values(), untrained.state_dict().values()))
    episode = protocol.trial_sets(0)[0]
    sets = [(method.prepare(episode.queries), method.prepare(episode.support), episode.support_class)]
    with_fce = method.score_sets(sets)[0]
    method.model_.fce = None  # the same network scoring without its full-context embeddings
    assert not torch.allclose(with_fce, method.score_sets(sets)[0])


def test_maml_refuses_more_classes_than_it_has_outputs(data_root, tmp_path):
    # a 5-way model trains without the protocol's 20-way validation episodes, and refuses 20-way tests
    record = run(RunSpec("maml", "vinyals", "tiny", {}, {"way": 5, "episodes": 5}, 0, [0], None,
                         tmp_path / "checkpoints"))
    assert record["training"]["validation_trials"] == 0 and record["n_trials"] == 25
    with pytest.raises(UserError, match="way=20"):
        run(RunSpec("maml", "vinyals", "tiny", {}, {"way": 20, "episodes": 5}, 0, [0], None,
                    tmp_path / "checkpoints"))


def test_table4_plans_each_papers_models_and_seeds(data_root):
    protocols, cells = TABLES.get("table4")().plan("cpu")
    assert [p for p, _ in protocols] == ["vinyals"] * 4 + ["omniglot20", "lake_runs"]
    assert {c.method for c in cells} == {"pixel_1nn", "protonet", "matching_net", "maml", "relation_net",
                                         "simpleshot", "chen_baseline", "conv_siamese"}
    vinyals = {c.preset: [o for p, o in c.protocols] for c in cells if c.method == "relation_net"
               and c.protocols[0][0] == "vinyals"}
    # one relation network per setting, each scored on its own setting only, on the papers' trainval
    assert sorted(vinyals) == ["cpu_20w1s", "cpu_20w5s", "cpu_5w1s", "cpu_5w5s"]
    assert vinyals["cpu_5w5s"] == [{"way": 5, "shot": 5, "train_split": "trainval"}]
    # Snell's shot-matched models: the 1-shot one serves both ways
    proto = {c.preset: sorted((o["way"], o["shot"]) for _, o in c.protocols) for c in cells
             if c.method == "protonet" and c.protocols[0][0] == "vinyals"}
    assert proto == {"cpu_1shot": [(5, 1), (20, 1)], "cpu_5shot": [(5, 5), (20, 5)]}
    # every learned 20w1s cell over three training seeds, the others one
    seeds = {(c.method, c.preset): c.seeds for c in cells if c.learns and c.protocols[0][0] == "vinyals"}
    assert seeds[("maml", "cpu_20w1s")] == 3 and seeds[("maml", "cpu_5w1s")] == 1
    assert seeds[("conv_siamese", "cpu_pairs")] == 3 and seeds[("simpleshot", "cpu")] == 3
    # the pair-trained twin at its val-chosen rate on every column, not the preset's
    pairs = [c for c in cells if c.preset == "cpu_pairs"]
    assert len(pairs) == 2 and all(c.options["adam_lr"] == table4.PAIRS_ADAM_LR != 2e-3 for c in pairs)
    # the order runs every cell's first seed before any repeat
    planned = rep.specs("table4", "cpu", 1, None, None)
    first_repeat = next(k for k, (_, spec) in enumerate(planned) if spec.seed == 1)
    assert all(spec.seed == 0 for _, spec in planned[:first_repeat]) and planned[-1][1].seed == 2


def test_table4_tiny_reproduce_writes_budgets_seeds_and_paired_orders(data_root, tmp_path, monkeypatch):
    # a cheap table4: 1-NN, protonet and relation nets on tiny presets, few episodes, two seeds
    keep = {"Pixels 1-NN (cosine)", "Prototypical nets", "Relation nets"}
    cells = [c for c in table4.plan_cells("tiny") if c.row in keep]
    monkeypatch.setattr(table4, "plan_cells", lambda preset: cells)
    monkeypatch.setattr(table4, "SEEDS", 2)
    for c in cells:
        c.protocols = tuple((p, {**o, "episodes": 20} if p == "vinyals" else o) for p, o in c.protocols)
        c.seeds = min(c.seeds, 2)
    monkeypatch.setattr(table4, "COLUMNS", tuple((label, p, {**o, "episodes": 20} if p == "vinyals" else o)
                                                 for label, p, o in table4.COLUMNS))
    monkeypatch.setattr(rep, "TRIAL_SEEDS", [0])
    out = tmp_path / "results"
    frame = rep.reproduce("table4", "tiny", 1, tmp_path / "store", out, command="bench reproduce table4")
    records = load_records(tmp_path / "store")
    relation = [r for r in records if r["method"] == "relation_net"]
    # four settings + two seeds of 20w1s + Koch's two columns; trainval for the Vinyals columns
    assert len(relation) == 7
    assert {r["protocol_config"]["train_split"] for r in relation if r["protocol"] == "vinyals"} == {"trainval"}
    row = frame[frame["method"] == "relation_net"].iloc[0]
    assert row["20w1s_seeds"] == 2 and row["5w1s_seeds"] == 1 and row["20w1s_paper"] == 97.6
    assert row["5w1s_diff"] == round(row["5w1s"] - 99.6, 2)
    # the budget: steps and images counted, compute growing with them
    assert row["20w1s_steps"] == 30 and row["20w1s_images"] > 0 and row["20w1s_gflop"] > 0
    proto = frame[frame["method"] == "protonet"].iloc[0]
    assert proto["lake_runs_paper"] == 86.3 and not pd.isna(proto["omniglot20"])
    md = (out / "table4.md").read_text()
    assert "| system | 5w1s |" in md and "## Training budgets" in md and "## Recipes" in md
    # each training says what it ran in, and on which ISA (the record's environment)
    assert f"| fp32 ({records[0]['environment']['cpu_isa']}) |" in md
    on_gpu = {"environment": {"cpu_isa": "AVX512", "gpu": "NVIDIA H200"}}  # a run packed on a GPU machine
    assert table4._precision({"precision": "bf16"}, on_gpu) == "bf16 (NVIDIA H200)"
    assert "Order on 20w1s" in md and (" > " in md or " = " in md) and (out / "table4.png").is_file()
    published = frame[frame["system"] == "Baseline classifier (Vinyals et al.)"].iloc[0]
    assert published["published_only"] and published["20w1s_paper"] == 69.5
    # the figure's title counts the seeds stored, not the seeds planned
    assert table4._seed_counts(frame) == "2 training seeds"
    partial = frame.copy()
    partial.loc[partial["method"] == "relation_net", "20w1s_seeds"] = 1
    assert table4._seed_counts(partial) == "1-2 of 2 training seeds"


def test_matching_cosines_carry_a_learned_scale():
    cfg = METHODS.get("matching_net").make_config("tiny")
    model = TwinNet(cfg)
    assert model.scale.item() == cfg.cosine_scale == 10.0 and model.scale.requires_grad
    a, b = torch.randn(3, 5), torch.randn(4, 5)
    bare = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    torch.testing.assert_close(model.logits(a, b), 10 * bare)
    unscaled = TwinNet(METHODS.get("matching_net").make_config("tiny", {"cosine_scale": "0"}))
    assert unscaled.scale is None and "scale" not in unscaled.state_dict()
