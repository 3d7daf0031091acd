import math
import os

import numpy as np
import pandas as pd
import pytest
import torch

from fewshot_bench.api import METHODS
from fewshot_bench.learning.augment import AffineRanges, affine_matrices, distort, draw_affine
from fewshot_bench.errors import UserError
from fewshot_bench.imageset import ImageSet
from fewshot_bench.learning import checkpoints, trainer
from fewshot_bench.learning import method as twin
from fewshot_bench.learning.networks import TwinNet, weighted_l1_differences
from fewshot_bench.learning.checkpoints import EarlyStopping
from fewshot_bench.learning.sampling import CharacterIndex, balanced_pairs
from helpers import glyph

ConvSiamese = METHODS.get("conv_siamese")


def synthetic_background(alphabets=3, characters=6, drawers=6, size=105) -> ImageSet:
    rows, images = [], []
    for a in range(alphabets):
        for c in range(characters):
            base = glyph(a * 100 + c, size)
            for d in range(1, drawers + 1):
                images.append(np.roll(base, d % 3, axis=1))
                rows.append(("background", f"Alpha{a}", f"character{c + 1:02d}", d))
    meta = pd.DataFrame(rows, columns=["split", "alphabet", "character", "drawer"])
    meta["label"] = pd.factorize(meta["alphabet"] + meta["character"])[0]
    return ImageSet(np.stack(images), meta)


def tiny(**overrides):
    cfg = ConvSiamese.make_config("tiny", {k: str(v) for k, v in overrides.items()})
    return ConvSiamese(cfg, seed=0, preset="tiny")


def test_paper_network_has_the_papers_shapes_and_about_38_95m_parameters():
    net = TwinNet(ConvSiamese.make_config("paper"))
    assert net.fc.in_features == 9216 and net.fc.out_features == 4096
    n = sum(p.numel() for p in net.parameters())
    assert abs(n - 38.95e6) < 0.05e6
    with torch.no_grad():
        assert net.embed(torch.rand(2, 1, 105, 105)).shape == (2, 4096)


def test_paper_init_follows_the_paper():
    torch.manual_seed(0)
    net = TwinNet(ConvSiamese.make_config("paper"))
    assert net.layers[0][0].weight.std().item() == pytest.approx(1e-2, rel=0.1)
    assert net.layers[1][0].bias.mean().item() == pytest.approx(0.5, abs=0.01)
    assert net.fc.weight.std().item() == pytest.approx(0.2, rel=0.05)


def test_paper_gain_init_scales_each_conv_layer_to_its_fan_in_and_keeps_the_rest_of_koch_init():
    torch.manual_seed(0)
    cfg = ConvSiamese.make_config("koch_cpu", {"init": "paper_gain"})
    net = TwinNet(cfg)
    for layer in net.layers:
        conv = layer[0]
        fan_in = conv.weight[0].numel()
        assert conv.weight.std().item() == pytest.approx(0.5 / math.sqrt(fan_in), rel=0.1)
        assert conv.bias.mean().item() == pytest.approx(0.5, abs=0.01)
    assert net.fc.weight.std().item() == pytest.approx(0.2, rel=0.05)
    # it keeps an image's variation where Koch's std of 0.01 loses it at this size
    x = torch.rand(64, 1, 28, 28) * (torch.rand(64, 1, 1, 1) > 0.5)
    spreads = {}
    for init in ("paper", "paper_gain"):
        torch.manual_seed(0)
        with torch.no_grad():
            spreads[init] = TwinNet(ConvSiamese.make_config("koch_cpu", {"init": init})).embed(x).std(0).mean().item()
    assert spreads["paper_gain"] > 10 * spreads["paper"]


def test_scores_are_symmetric_in_their_inputs_shared_weights():
    torch.manual_seed(0)
    net = TwinNet(ConvSiamese.make_config("tiny")).eval()
    x = torch.rand(5, 1, 16, 16)
    with torch.no_grad():
        h = net.embed(x)
        logits = net.logits(h, h)
        torch.testing.assert_close(logits, logits.T)
        torch.testing.assert_close(net.pair_logits(h[:3], h[1:4]), net.pair_logits(h[1:4], h[:3]))


@pytest.mark.parametrize("signs", ["mixed", "all positive", "all negative"])
def test_split_weighted_l1_head_equals_the_direct_formula_and_its_gradients(signs):
    torch.manual_seed(0)
    net = TwinNet(ConvSiamese.make_config("tiny"))
    with torch.no_grad():  # each sign's distance runs over its own features: one of them may have none
        if signs != "mixed":
            net.head.weight.abs_().mul_(1 if signs == "all positive" else -1)
    a, b = torch.rand(2, 4, 32, requires_grad=True), torch.rand(2, 3, 32, requires_grad=True)
    params = (a, b, net.head.weight, net.head.bias)
    direct = ((a[:, :, None] - b[:, None]).abs() * net.head.weight[0]).sum(-1) + net.head.bias
    ours = net.logits(a, b)
    torch.testing.assert_close(ours, direct, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(direct)
    for got, want in zip(torch.autograd.grad(ours, params, upstream), torch.autograd.grad(direct, params, upstream)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with torch.inference_mode():  # scoring sums the differences themselves, in blocks of rows
        torch.testing.assert_close(net.logits(a, b), direct, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net.logits(a[1], b[1]), direct[1], atol=1e-5, rtol=1e-5)  # one set
        blocks = weighted_l1_differences(a, b, net.head.weight[0], chunk_elements=32 * 3)  # one row a block
        torch.testing.assert_close(blocks + net.head.bias, direct, atol=1e-5, rtol=1e-5)
        assert net.logits(a[:, :0], b).shape == (2, 0, 3)


def test_distortion_components_stay_in_the_papers_ranges():
    gen = torch.Generator().manual_seed(0)
    p = draw_affine(20000, AffineRanges(), gen)
    assert p["theta"].abs().max() <= math.radians(10) + 1e-6
    assert p["shear_x"].abs().max() <= 0.3 and p["shear_y"].abs().max() <= 0.3
    assert 0.8 <= p["scale_x"].min() and p["scale_y"].max() <= 1.2
    assert p["shift_x"].abs().max() <= 2 and p["shift_y"].abs().max() <= 2
    # each component is switched on with probability 0.5
    assert (p["theta"] != 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert (p["scale_x"] != 1).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_identity_parameters_leave_the_image_unchanged():
    zero = torch.zeros(1)
    params = {"theta": zero, "shear_x": zero, "shear_y": zero, "scale_x": zero + 1, "scale_y": zero + 1,
              "shift_x": zero, "shift_y": zero}
    torch.testing.assert_close(affine_matrices(params), torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]))
    img = torch.as_tensor(glyph(1)).float()[None, None]
    out = distort(img, torch.Generator().manual_seed(0), AffineRanges(probability=0.0))
    torch.testing.assert_close(out, img)


def test_distortion_is_batched_and_seeded():
    x = torch.rand(8, 1, 28, 28)
    a = distort(x, torch.Generator().manual_seed(1))
    b = distort(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)


def test_distortion_stays_on_the_images_device():
    # the affine draws come from a CPU generator; on a GPU the images are not on the CPU (the meta
    # device stands in for one here: a CPU grid against its images fails as a CUDA one would)
    x = torch.zeros(4, 1, 28, 28, device="meta")
    assert distort(x, torch.Generator().manual_seed(0)).device == x.device


def test_balanced_pairs_are_half_same_and_equal_per_alphabet():
    bg = synthetic_background()
    index = CharacterIndex(bg)
    rows, same = balanced_pairs(index, 300, np.random.default_rng(0))
    assert same.mean() == pytest.approx(0.5, abs=0.01)
    labels = bg.meta["label"].to_numpy()
    np.testing.assert_array_equal(labels[rows[:, 0]] == labels[rows[:, 1]], same.astype(bool))
    assert (rows[:, 0] != rows[:, 1]).all()
    counts = bg.meta["alphabet"].iloc[rows[:, 0]].value_counts()
    assert counts.max() - counts.min() <= 0 and len(counts) == 3


def test_character_index_grids_rows_by_sorted_character_and_drawer_filling_gaps():
    # shuffled rows, a repeated (character, drawer) whose first row wins, and a class missing a drawer
    meta = pd.DataFrame({"alphabet": ["b", "a", "a", "a", "a", "b", "a"],
                         "character": ["x", "q", "p", "p", "q", "x", "p"],
                         "drawer": [2, 1, 2, 1, 2, 1, 1]})
    index = CharacterIndex(ImageSet(np.zeros((7, 4, 4), np.uint8), meta))
    assert index.alphabets == ["a", "b"] and index.n_classes == 3
    np.testing.assert_array_equal(index.table["a"], [[3, 2], [1, 4]])  # rows: p then q; columns: drawers 1, 2
    np.testing.assert_array_equal(index.table["b"], [[5, 0]])
    np.testing.assert_array_equal(index.labels, [2, 1, 0, 0, 1, 2, 0])
    # a class with fewer images than its alphabet's largest repeats its own
    gappy = CharacterIndex(ImageSet(np.zeros((3, 4, 4), np.uint8), meta.iloc[[1, 2, 4]].reset_index(drop=True)))
    np.testing.assert_array_equal(gappy.table["a"], [[1, 1], [0, 2]])


def test_paper_schedule_decays_lr_and_ramps_momentum():
    m = tiny(objective="pairs", optimizer="sgd", lr="0.1", momentum="0.9", momentum_ramp_epochs=10, lr_decay=0.01)
    m.model_ = TwinNet(m.config)
    opt, _ = m._optimizer(steps_per_epoch=1)
    m._set_epoch_schedule(opt, 0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1) and opt.param_groups[0]["momentum"] == pytest.approx(0.5)
    m._set_epoch_schedule(opt, 5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.99 ** 5)
    assert opt.param_groups[0]["momentum"] == pytest.approx(0.7)
    m._set_epoch_schedule(opt, 30)
    assert opt.param_groups[-1]["momentum"] == pytest.approx(0.9)


def test_early_stopping_keeps_the_best_epoch():
    net = torch.nn.Linear(1, 1)
    stopper = EarlyStopping(patience=2)
    for epoch, score in enumerate([0.5, 0.8, 0.7, 0.6]):
        with torch.no_grad():
            net.weight.fill_(epoch)
        stop = stopper.update(epoch, score, net)
    assert stop and stopper.best_epoch == 1 and stopper.best_state["weight"].item() == 1.0


@pytest.mark.parametrize("objective", ["pairs", "trials"])
def test_training_runs_and_reruns_reuse_the_checkpoint(tmp_path, objective):
    bg = synthetic_background()
    m = tiny(objective=objective, pairs=64, batch_size=32, distortions=1, epochs=2)
    m.work_dir = tmp_path
    m.fit(bg)
    assert len(m.history_) == 2 and not m.reused_checkpoint_
    again = tiny(objective=objective, pairs=64, batch_size=32, distortions=1, epochs=2)
    again.work_dir = tmp_path
    again.fit(bg)
    assert again.reused_checkpoint_
    for k, v in m.model_.state_dict().items():
        torch.testing.assert_close(v, again.model_.state_dict()[k])


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    bg = synthetic_background()
    full = tiny(epochs=3, patience=3)
    full.work_dir = tmp_path / "full"
    full.fit(bg)

    class Interrupt(Exception):
        pass

    interrupted = tiny(epochs=3, patience=3)
    interrupted.work_dir = tmp_path / "resumed"
    calls = {"n": 0}
    original = interrupted.objective_for

    def interrupting(index):  # the objective's second epoch raises
        objective = original(index)
        epoch = objective.losses

        def fail_in_second_epoch(*args):
            calls["n"] += 1
            if calls["n"] == 2:
                raise Interrupt
            return epoch(*args)

        objective.losses = fail_in_second_epoch
        return objective

    interrupted.objective_for = interrupting
    with pytest.raises(Interrupt):
        interrupted.fit(bg)
    resumed = tiny(epochs=3, patience=3)
    resumed.work_dir = tmp_path / "resumed"
    resumed.fit(bg)
    assert [h["epoch"] for h in resumed.history_] == [0, 1, 2]
    for k, v in full.model_.state_dict().items():
        torch.testing.assert_close(v, resumed.model_.state_dict()[k])


def test_validation_accuracy_drives_early_stopping(tmp_path):
    from fewshot_bench.api import TrialSet

    bg = synthetic_background()
    val = [TrialSet(bg.images[:5], bg.images[6:11], np.arange(5), "v")]
    m = tiny(epochs=2)
    m.fit(bg, val)
    assert all(h["validation_accuracy"] is not None for h in m.history_)


def test_training_sees_only_the_background_it_is_given(tmp_path):
    """Everything the trainer samples comes from the rows of `background` (no other data source)."""
    bg = synthetic_background()
    m = tiny(epochs=1)
    seen = []
    original = CharacterIndex.__init__

    def spy(self, images):
        seen.append(set(images.meta["alphabet"]))
        original(self, images)

    CharacterIndex.__init__ = spy
    try:
        m.fit(bg)
    finally:
        CharacterIndex.__init__ = original
    assert seen == [{"Alpha0", "Alpha1", "Alpha2"}]


def test_bad_config_values_are_user_errors():
    with pytest.raises(UserError, match="objective must be"):
        ConvSiamese.make_config("cpu", {"objective": "magic"})
    with pytest.raises(UserError, match="l2 needs 1 or 6 values"):
        ConvSiamese.make_config("paper", {"l2": "0.1,0.2"})
    with pytest.raises(UserError, match="no preset 'gpu'"):
        ConvSiamese.make_config("gpu")
    with pytest.raises(UserError, match="precision must be"):
        ConvSiamese.make_config("cpu", {"precision": "fp8"})
    with pytest.raises(UserError, match="test_symmetries must be 1, 4 or 8, got 3"):
        ConvSiamese.make_config("cpu", {"test_symmetries": "3"})
    with pytest.raises(UserError, match="keep must be 'best' or 'last', got 'first'"):
        ConvSiamese.make_config("cpu", {"keep": "first"})
    with pytest.raises(UserError, match=r"^epochs must be >= 1, got -3$"):  # the bad key and value, alone
        ConvSiamese.make_config("cpu", {"epochs": "-3"})
    with pytest.raises(UserError, match=r"^batch_size must be >= 2, got 1$"):
        ConvSiamese.make_config("cpu_pairs", {"batch_size": "1"})


def test_channels_last_layout_does_not_change_the_embedding():
    m = tiny()
    net = TwinNet(m.config).eval()
    x = torch.rand(6, 1, 16, 16)
    with torch.no_grad():
        h = net.embed(x)
        plain = x
        for layer in net.layers:  # the same layers on a plain NCHW tensor
            plain = layer(plain.contiguous())
        reference = torch.sigmoid(net.fc(plain.flatten(1)))
    torch.testing.assert_close(h, reference, atol=1e-5, rtol=1e-4)


def test_inference_copy_folds_batch_norm_into_the_convolutions_and_embeds_alike():
    from fewshot_bench.learning.networks import inference_copy

    torch.manual_seed(0)
    net = TwinNet(tiny().config)
    for norm in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # statistics of a trained net
        norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2)
        norm.weight.data.uniform_(0.5, 1.5), norm.bias.data.uniform_(-0.5, 0.5)
    net.train()
    x = torch.rand(6, 1, 16, 16)
    with torch.inference_mode():
        fused = inference_copy(net)
        assert net.training and not fused.training  # the original is left as it was
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
        torch.testing.assert_close(fused.embed(x), net.eval().embed(x), atol=1e-6, rtol=1e-5)
    # MAML's batch norm uses each batch's own statistics: nothing to fold, it stays
    maml = METHODS.get("maml")
    model = twin.build_network(maml.make_config("tiny"))
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in inference_copy(model).modules()) == \
        sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 0


def test_a_block_pooling_before_its_relu_gives_the_same_outputs_and_gradients_bit_for_bit():
    from fewshot_bench.learning.networks import conv_block

    torch.manual_seed(0)
    block = conv_block(3, 8, 3, padding=1)
    relu_first = torch.nn.Sequential(block[0], block[1], torch.nn.ReLU(), torch.nn.MaxPool2d(2))
    x = torch.randn(4, 3, 9, 9)  # odd sides: the pool drops the same last row and column either way
    grads = []
    for net in (block, relu_first):
        net.zero_grad()
        out = net(x)
        out.pow(2).sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1]))


def test_bf16_training_runs_and_scores_in_float32(tmp_path):
    bg = synthetic_background()
    m = tiny(precision="bf16", epochs=2)
    m.work_dir = tmp_path
    m.fit(bg)
    assert all(np.isfinite(h["loss"]) for h in m.history_)
    x = torch.as_tensor(bg.images[:5], dtype=torch.float32)
    scores = m.score(m.prepare(x.numpy()), m.prepare(x.numpy()))
    assert scores.dtype == torch.float32 and scores.shape == (5, 5)
    assert m.train_embed(torch.rand(4, 1, 16, 16)).dtype == torch.float32  # the loss sees float32


def test_ensemble_members_train_in_processes_like_in_one_process(tmp_path, monkeypatch):
    """members=2: two networks with their own seeds; on 2 threads they train in two spawned
    processes, giving the weights a sequential training gives; scores average the members'."""
    bg = synthetic_background()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        sequential = tiny(members=2)
        sequential.fit(bg)
        torch.set_num_threads(2)
        parallel = tiny(members=2)
        parallel.work_dir = tmp_path
        parallel.fit(bg)
    finally:
        torch.set_num_threads(threads)
    assert len(parallel.models_) == 2 and sorted({h["member"] for h in parallel.history_}) == [0, 1]
    first, second = (dict(m.state_dict()) for m in parallel.models_)
    assert not torch.equal(first["fc.weight"], second["fc.weight"])  # different seeds
    for a, b in zip(sequential.models_, parallel.models_):
        for k, v in a.state_dict().items():
            torch.testing.assert_close(v, b.state_dict()[k], atol=1e-4, rtol=1e-4)
    q, s = torch.rand(3, 16, 16), torch.rand(4, 16, 16)
    with torch.inference_mode():
        members = [m.logits(parallel._embed(m, q), parallel._embed(m, s)) for m in parallel.models_]
    torch.testing.assert_close(parallel.score(q, s), (members[0] + members[1]) / 2)
    assert parallel.embed(q).shape == (3, 2 * 32)
    if os.path.exists("/proc/self/status"):  # each worker reports its own peak memory
        assert len(parallel.worker_peak_rss_mib_) == 2 and all(p > 10 for p in parallel.worker_peak_rss_mib_)
    assert sequential.worker_peak_rss_mib_ == []
    # finished members are loaded, not handed to worker processes again
    def no_workers(*args, **kwargs):
        raise AssertionError("a finished ensemble spawned workers")
    monkeypatch.setattr(twin, "train_in_processes", no_workers)
    again = tiny(members=2)
    again.work_dir = tmp_path
    try:
        torch.set_num_threads(2)
        again.fit(bg)
    finally:
        torch.set_num_threads(threads)
    assert again.reused_checkpoint_ and again.worker_peak_rss_mib_ == []
    torch.testing.assert_close(again.score(q, s), parallel.score(q, s))


@pytest.mark.parametrize("pairs, distortions, steps", [(640, 8, 3), (64, 0, 5)])
def test_pair_steps_fixes_the_batches_of_a_pairs_epoch(pairs, distortions, steps):
    """A cap below one pass (640 x 9 views), or more passes over a small pool (64 pairs = 2 batches)."""
    bg = synthetic_background()
    m = tiny(objective="pairs", pairs=pairs, batch_size=32, distortions=distortions, pair_steps=steps, epochs=1)
    batches = []
    original = m._step
    m._step = lambda loss, *a: (batches.append(1), original(loss, *a))
    m.fit(bg)
    index = CharacterIndex(bg)
    assert len(batches) == steps and m.objective_for(index).steps_per_epoch() == steps
    full_pass = tiny(objective="pairs", pairs=640, batch_size=32, distortions=8)
    assert full_pass.objective_for(index).steps_per_epoch() == 640 * 9 // 32


def test_run_records_keep_the_training_history_and_its_cost_when_reused(tmp_path):
    from fewshot_bench.records import training_seconds
    from fewshot_bench.experiments.runner import training_summary

    bg = synthetic_background()
    m = tiny(epochs=2)
    m.work_dir = tmp_path
    m.fit(bg)
    first = training_summary(m)
    assert first["epochs"] == 2 and not first["reused_checkpoint"] and len(first["history"]) == 2
    again = tiny(epochs=2)
    again.work_dir = tmp_path
    again.fit(bg)
    summary = training_summary(again)
    assert summary["reused_checkpoint"] and summary["epoch_seconds"] == pytest.approx(first["epoch_seconds"])
    record = {"train_seconds": 0.01, "training": summary}
    assert training_seconds(record) == pytest.approx(first["epoch_seconds"])  # the original training's cost
    original = {"train_seconds": 42.0, "training": first}  # the run that trained: its wall time
    assert training_seconds(record, [record, original]) == 42.0
    assert training_seconds({"train_seconds": 5.0, "training": None}) == 5.0


def test_score_sets_batches_across_sets_like_scoring_each_set():
    m = tiny(members=2)
    torch.manual_seed(0)
    m.models_ = [TwinNet(m.config), TwinNet(m.config)]
    m.model_ = m.models_[0]
    sets = [(torch.rand(q, 16, 16), torch.rand(s, 16, 16)) for q, s in [(1, 10), (3, 5), (20, 20)]]
    for batched, (q, s) in zip(m.score_sets(sets), sets):
        torch.testing.assert_close(batched, m.score(q, s), atol=1e-5, rtol=1e-4)


def test_sets_sharing_images_embed_each_once_and_score_as_set_by_set():
    """An evaluation's sets name their images: each distinct image is embedded once per member and
    view for all sets, giving the scores of scoring set by set (two members, eight views)."""
    from fewshot_bench.api import TrialSet
    from fewshot_bench.evaluation import evaluate_trial_sets, shared_images

    m = tiny(members=2, test_symmetries=8)
    torch.manual_seed(0)
    m.models_ = [TwinNet(m.config), TwinNet(m.config)]
    m.model_ = m.models_[0]
    pool = np.random.default_rng(0).random((12, 16, 16)).astype(np.float32)
    ids = [f"a/character{i:02d}/01" for i in range(12)]
    rows = [([0, 1], [2, 3, 4]), ([1, 5], [3, 4, 6]), ([7, 0], [2, 8, 9])]  # images 0-4 recur across sets
    sets = [TrialSet(pool[q], pool[s], np.array([0, 1]), f"a#{k}", query_ids=[ids[i] for i in q],
                     support_ids=[ids[i] for i in s]) for k, (q, s) in enumerate(rows)]
    images, indexed = shared_images(sets)
    assert len(images) == 10  # the distinct images of the three sets
    embedded = []
    original = m._embed
    m._embed = lambda model, x, batch=512: embedded.append(len(x)) or original(model, x, batch)
    shared = m.score_indexed(m.prepare(images), indexed)
    assert embedded == [10] * 16  # each distinct image once per member and view
    m._embed = original
    for scores, ts in zip(shared, sets):
        torch.testing.assert_close(scores, m.score(m.prepare(ts.queries), m.prepare(ts.support)), atol=1e-5, rtol=1e-4)
    assert evaluate_trial_sets(m, sets)["n_trials"] == 6


def test_test_symmetries_average_the_views_and_ignore_how_the_set_is_turned():
    torch.manual_seed(0)
    net = TwinNet(tiny().config)
    q, s = torch.rand(3, 16, 16), torch.rand(5, 16, 16)
    plain = tiny()
    plain.model_ = net
    views = [plain.score(torch.rot90(q, r, dims=(1, 2)), torch.rot90(s, r, dims=(1, 2))) for r in range(4)]
    views += [plain.score(torch.rot90(q, r, dims=(1, 2)).flip(2), torch.rot90(s, r, dims=(1, 2)).flip(2))
              for r in range(4)]
    for n in (4, 8):
        m = tiny(test_symmetries=n)
        m.model_ = net
        torch.testing.assert_close(m.score(q, s), torch.stack(views[:n]).mean(0), atol=1e-5, rtol=1e-4)
        # the views of a turned set are the same views
        turned = m.score(torch.rot90(q, 1, dims=(1, 2)), torch.rot90(s, 1, dims=(1, 2)))
        torch.testing.assert_close(turned, m.score(q, s), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(m.score_pairs(q[:2], s[:2]), m.score(q[:2], s[:2]).diagonal(), atol=1e-5, rtol=1e-4)


def test_options_added_later_stay_out_of_keys_at_their_neutral_value():
    assert "test_symmetries" not in tiny().config_dict()
    assert tiny(test_symmetries=8).config_dict()["test_symmetries"] == 8
    assert "keep" not in tiny().config_dict() and tiny(keep="last").config_dict()["keep"] == "last"


def test_keep_last_takes_the_final_epochs_weights_from_the_same_training(tmp_path):
    """keep and test_symmetries only change how a trained network is used: one training (one
    checkpoint) serves them all; keep="best" takes the best validation epoch, "last" the final one."""
    from fewshot_bench.api import TrialSet

    bg = synthetic_background()
    val = [TrialSet(bg.images[:5], bg.images[6:11], np.arange(5), "v")]
    best = tiny(epochs=3, patience=3)
    best.work_dir = tmp_path
    best.fit(bg, val)
    state = checkpoints.Checkpoint(tmp_path, f"conv_siamese-{best.checkpoint_key_}").load()
    last = tiny(epochs=3, patience=3, keep="last", test_symmetries=8)
    last.work_dir = tmp_path
    last.fit(bg, val)
    assert last.reused_checkpoint_ and last.checkpoint_key_ == best.checkpoint_key_
    for kept, expected in ((best, state["best_state"]), (last, state["model"])):
        for k, v in kept.model_.state_dict().items():
            torch.testing.assert_close(v, expected[k])


def test_validation_during_training_scores_one_view(monkeypatch):
    m = tiny(test_symmetries=8)
    m.model_ = TwinNet(m.config)
    seen = []
    monkeypatch.setattr(trainer, "evaluate_trial_sets", lambda method, sets: seen.append(len(method._views())) or {"accuracy": 0.5})
    assert m._validate(["a set"]) == 0.5 and seen == [1] and len(m._views()) == 8


@pytest.mark.parametrize("metric", ["weighted_l1", "euclidean"])
def test_trial_loss_scores_each_pair_of_drawers_once_and_equals_the_full_softmax(metric):
    from fewshot_bench.learning.networks import TwinNet
    from fewshot_bench.learning.objectives import trial_loss
    from fewshot_bench.learning.configs import TwinConfig

    torch.manual_seed(0)
    model = TwinNet(TwinConfig(network="mlp", input_size=8, hidden=(16,), fc_units=6, metric=metric,
                               objective="trials"))
    h = torch.rand(3 * 5 + 4 * 2, 6, requires_grad=True)
    shapes = [(3, 5), (4, 2)]

    def reference(h):  # every query of every drawer against every other drawer's supports, from all pairs
        loss, offset = 0.0, 0
        for d, c in shapes:
            e = h[offset:offset + d * c]
            offset += d * c
            logits = model.logits(e, e).view(d, c, d, c).permute(0, 2, 1, 3)
            rows = logits[~torch.eye(d, dtype=torch.bool)].reshape(-1, c)
            loss = loss + torch.nn.functional.cross_entropy(rows, torch.arange(c).repeat(d * (d - 1)))
        return loss / len(shapes)

    ours, expected = trial_loss(model, h, shapes), reference(h)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(torch.autograd.grad(ours, h)[0], torch.autograd.grad(expected, h)[0])


def test_speed_eval_times_a_vinyals_column_and_its_embedding(data_root):
    from fewshot_bench.experiments import speed

    result = speed.evaluate(data_root, preset="tiny", protocol="vinyals", episodes=3)
    assert result["trials"] == 3 * 20 and result["way"] == 20 and result["shot"] == 5
    # each distinct image once per member and view, not once per episode
    assert 0 < result["distinct_images"] <= 3 * 20 * 6
    assert result["images_embedded"] == result["distinct_images"] * result["members"] * result["views"]
    assert 0 < result["embed_seconds"] < result["seconds"] and result["isa"]


def test_speed_train_reports_throughput_flops_and_the_gemm_limit(data_root):
    from fewshot_bench.experiments import speed

    result = speed.train(data_root, preset="tiny", steps=2, repeats=1)
    assert result["isa"] and result["gemm_gflops"] > 0 and result["images_per_step"] == 2 * 5 * 4
    fp32 = result["fp32"]
    assert fp32["bare_images_per_s"] > 0 and fp32["pipeline_images_per_s"] > 0 and fp32["step_gflop"] > 0
    assert 0 < fp32["fraction_of_gemm"] < 2  # a step cannot run much above the machine's GEMM
    # where the step's time goes, and the bf16 limit where the CPU has bf16 (else none quoted)
    kernels = fp32["top_kernels"]
    assert 0 < len(kernels) <= 8 and all(k["op"] and 0 < k["self_cpu_pct"] <= 100 for k in kernels)
    assert [k["self_cpu_pct"] for k in kernels] == sorted((k["self_cpu_pct"] for k in kernels), reverse=True)
    assert (result["bf16_gemm_gflops"] is None) == (not result["bf16_available"])
    if result["bf16_available"]:
        assert 0 < result["bf16"]["fraction_of_gemm"] < 2
    # a whole epoch of the preset at the pipeline's pace, on the device it ran on
    assert fp32["epoch_steps"] == 3 and fp32["epoch_seconds"] == pytest.approx(
        3 * 2 * 20 / fp32["pipeline_images_per_s"]) and result["device"].startswith("CPU")


@pytest.mark.parametrize("method, preset, objective, images", [
    ("conv_siamese", "tiny_koch", "pairs", 2 * 16), ("mlp_siamese", "tiny", "pairs", 2 * 32),
    ("protonet", "tiny", "trials", 2 * 5 * 4), ("matching_net", "tiny", "matching", None),
    ("relation_net", "tiny", "relation", None), ("maml", "tiny", "maml", None), ("simpleshot", "tiny", "classes", None)])
def test_speed_train_times_every_objective(data_root, method, preset, objective, images):
    """Every objective's bare step and pipeline run (Koch's pairs once died: their pairs were never drawn)."""
    from fewshot_bench.api import METHODS
    from fewshot_bench.experiments import speed

    result = speed.train(data_root, preset=preset, steps=2, repeats=1, method=method, limits=False)
    assert result["objective"] == objective
    cfg = METHODS.get(method).make_config(preset)
    expected = images or (cfg.batch_size if objective == "classes" else
                          cfg.alphabets_per_batch * cfg.way * cfg.drawers_per_character)
    assert result["images_per_step"] == expected
    fp32 = result["fp32"]
    assert fp32["step_gflop"] > 0 and fp32["bare_images_per_s"] > 0 and fp32["pipeline_images_per_s"] > 0


def test_pair_grid_loss_is_koch_pair_loss_over_every_pair_half_same_half_different():
    from fewshot_bench.learning.configs import TwinConfig
    from fewshot_bench.learning.objectives import grid_pair_loss, pair_loss

    torch.manual_seed(0)
    model = TwinNet(TwinConfig(network="mlp", input_size=8, hidden=(16,), fc_units=6))
    h = torch.rand(3 * 4 + 2 * 5, 6)
    shapes = [(3, 4), (2, 5)]

    def reference():  # each pair of distinct images once, scored by the head as Koch's matched pairs are
        loss, offset = 0.0, 0
        for d, c in shapes:
            e = h[offset:offset + d * c]
            offset += d * c
            pairs = [(i, j) for i in range(d * c) for j in range(i + 1, d * c)]
            same = [(i, j) for i, j in pairs if i % c == j % c]
            other = [(i, j) for i, j in pairs if i % c != j % c]
            halves = [pair_loss(model, e[[i for i, _ in part]], e[[j for _, j in part]], torch.full((len(part),), s))
                      for part, s in ((same, 1.0), (other, 0.0))]
            loss = loss + 0.5 * (halves[0] + halves[1])
        return loss / len(shapes)

    torch.testing.assert_close(grid_pair_loss(model, h, shapes), reference())


def test_constant_guess_losses_are_what_a_network_that_learned_nothing_sits_at():
    bg = synthetic_background(alphabets=3, characters=6)
    index = CharacterIndex(bg)
    pairs = tiny(objective="pairs", pairs=64)
    objective = pairs.objective_for(index)
    objective.prepare(np.random.default_rng(0))
    assert objective.constant_loss() == pytest.approx(math.log(2), abs=1e-3)  # balanced pairs (an odd count: one more same)
    assert tiny(objective="pairs", loss="contrastive", metric="euclidean").objective_for(index).constant_loss() is None
    assert tiny(way=5).objective_for(index).constant_loss() == pytest.approx(math.log(5))  # a softmax over 5
    assert tiny(way=20).objective_for(index).constant_loss() == pytest.approx(math.log(6))  # all 6 of an alphabet
    assert tiny(objective="pair_grid").objective_for(index).constant_loss() == pytest.approx(math.log(2))


def test_score_with_l1_compares_embeddings_by_plain_l1_but_validation_keeps_the_head():
    m = tiny(score_with="l1")
    torch.manual_seed(0)
    m.model_ = TwinNet(m.config)
    q, s = torch.rand(3, 16, 16), torch.rand(4, 16, 16)
    hq, hs = m.embed(q), m.embed(s)
    torch.testing.assert_close(m.score(q, s), -torch.cdist(hq, hs, p=1))
    torch.testing.assert_close(m.score_pairs(q, s[:3]), -(hq - hs[:3]).abs().sum(-1))
    head = tiny()
    head.model_ = m.model_
    m.validating_ = True
    torch.testing.assert_close(m.score(q, s), head.score(q, s))
    assert "score_with" not in m.training_config()  # one training serves both ways of scoring


def test_the_untrained_network_is_scored_on_the_validation_trials_before_the_first_step(tmp_path, monkeypatch):
    """The first epoch's entry holds the untrained network's validation accuracy (the seed's initial
    weights, the same trials) and the constant guess's loss; a checkpoint from before the check gains
    them on resume, from the same initial weights."""
    from fewshot_bench.api import TrialSet
    from fewshot_bench.evaluation import evaluate_trial_sets
    from fewshot_bench.learning.networks import build_network

    bg = synthetic_background()
    val = [TrialSet(bg.images[:6], bg.images[6:12], np.arange(6), "v"), TrialSet(bg.images[12:18], bg.images[18:24],
                                                                                 np.arange(6), "w")]
    m = tiny(epochs=2, patience=2)
    m.work_dir = tmp_path
    m.fit(bg, val)
    first = m.history_[0]
    untrained = tiny()
    torch.manual_seed(0)
    untrained.model_ = build_network(untrained.config, 0, 1)
    expected = evaluate_trial_sets(untrained, val)
    assert first["untrained_validation"] == expected["accuracy"] and first["untrained_ci95"] == expected["ci95"]
    assert first["constant_loss"] == pytest.approx(math.log(5))  # a softmax over the way=5 characters of a group
    assert "untrained_validation" not in m.history_[1]

    # a checkpoint written before the check (no baselines), interrupted after epoch 1, resumed
    path = next(tmp_path.glob("*.pt"))
    state = torch.load(path, weights_only=False)
    for key in ("untrained_validation", "untrained_ci95", "constant_loss"):
        state["history"][0].pop(key)
    state.update(history=state["history"][:1], epoch=0, done=False)
    torch.save(state, path)
    resumed = tiny(epochs=2, patience=2)
    resumed.work_dir = tmp_path
    resumed.fit(bg, val)
    assert {k: resumed.history_[0][k] for k in ("untrained_validation", "untrained_ci95", "constant_loss")} == \
        {k: first[k] for k in ("untrained_validation", "untrained_ci95", "constant_loss")}


def watched_objective(m):
    """``m``'s objective on a synthetic background, with a fresh seeded network (fp32), and the images
    each step feeds the network recorded: (data, objective, the recorded images, the unwatched embed)."""
    from fewshot_bench.imageset import as_batch, to_tensor

    bg = synthetic_background()
    torch.manual_seed(0)
    m.model_ = TwinNet(m.config)
    m.bf16_ = False
    data = as_batch(to_tensor(bg.images, 16))
    objective = m.objective_for(CharacterIndex(bg))
    objective.prepare(np.random.default_rng(0))
    seen, embed = [], m.train_embed
    m.train_embed = lambda x: seen.append(x.clone()) or embed(x)
    return data, objective, seen, embed


def test_pair_batches_indexed_where_the_data_lives_are_the_host_paths_batches():
    """Koch's pairs are indexed on the data's device (no transfer a step on a GPU): on the CPU the same
    images, distortions and targets as the host path they replace, step for step."""
    import itertools

    from fewshot_bench.learning.objectives import pair_loss

    m = tiny(objective="pairs", pairs=40, batch_size=8, distortions=2)
    data, objective, seen, embed = watched_objective(m)
    ours = [loss.item() for loss in itertools.islice(
        objective.losses(data, np.random.default_rng(1), torch.Generator().manual_seed(2)), 4)]

    rng, gen, cfg = np.random.default_rng(1), torch.Generator().manual_seed(2), m.config  # the host path
    pool = len(objective.rows) * (1 + cfg.distortions)
    order = np.concatenate([rng.permutation(pool) for _ in range(-(-pool // pool))])[:pool]
    for step in range(4):
        sel = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        pair, copy = sel % len(objective.rows), sel // len(objective.rows)
        x = data[torch.as_tensor(objective.rows[pair].reshape(-1))].float()
        distorted = torch.as_tensor(np.repeat(copy > 0, 2))
        if distorted.any():
            x[distorted] = distort(x[distorted], gen)
        torch.testing.assert_close(seen[step], x, rtol=0, atol=0)
        h = embed(x).view(len(sel), 2, -1)
        expected = pair_loss(m.model_, h[:, 0], h[:, 1], torch.as_tensor(objective.targets[pair])).item()
        assert ours[step] == pytest.approx(expected, abs=1e-6)


def test_trial_grids_indexed_where_the_data_lives_are_the_host_paths_grids():
    """The trial loss's grids and symmetries are drawn for the whole epoch on the host, their rows sent
    at once: on the CPU the same images, step for step, as drawing a step at a time did, and the
    generator left where that left it (a checkpoint's rng state is unchanged)."""
    from fewshot_bench.learning.networks import symmetry
    from fewshot_bench.learning.sampling import trial_batch

    m = tiny(rotations=True, reflections=True, distortions=1, steps_per_epoch=3, way=3)
    data, objective, seen, _ = watched_objective(m)
    rng = np.random.default_rng(1)
    list(objective.losses(data, rng, torch.Generator().manual_seed(2)))

    host_rng, gen, cfg = np.random.default_rng(1), torch.Generator().manual_seed(2), m.config  # a step at a time
    for step in range(3):
        groups = trial_batch(objective.index, cfg.alphabets_per_batch, cfg.way, cfg.drawers_per_character, host_rng)
        x = data[torch.as_tensor(np.concatenate([g.ravel() for g in groups]))].float()
        parts = []
        for part in torch.split(x, [g.size for g in groups]):
            turns, mirror = int(host_rng.integers(4)), bool(host_rng.integers(2))
            parts.append(symmetry(part, turns + 4 * mirror))
        x = distort(torch.cat(parts), gen)
        torch.testing.assert_close(seen[step], x, rtol=0, atol=0)
    assert rng.bit_generator.state == host_rng.bit_generator.state


def test_distortions_are_drawn_on_their_generators_device():
    gen = torch.Generator().manual_seed(0)
    params = draw_affine(5, generator=gen)
    assert all(v.device.type == "cpu" for v in params.values())
    again = draw_affine(5, generator=torch.Generator(device="cpu").manual_seed(0))
    assert all(torch.equal(params[k], again[k]) for k in params)  # a device generator on the CPU: the same draws
