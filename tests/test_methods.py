import os

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from fewshot_bench.api import METHODS, TrialSet
from fewshot_bench.errors import UserError
from fewshot_bench.evaluation import evaluate_trial_sets
from helpers import glyph


def tiny_trial_set(n=5, size=105):
    support = np.stack([glyph(i, size) for i in range(n)])
    queries = np.roll(support, 1, axis=2)[::-1].copy()  # shifted copies, reversed order
    return TrialSet(queries, support, np.arange(n)[::-1].copy(), "tiny#1")


def make(name):
    cls = METHODS.get(name)
    preset = "tiny" if "tiny" in cls.presets else cls.default_preset
    return cls(cls.make_config(preset), seed=0, preset=preset)


@pytest.mark.parametrize("name", METHODS.names())
def test_every_registered_method_scores_a_tiny_trial_set(name, data_root):
    """Registry-wide smoke test: fit on background data, finite (Q, S) scores."""
    from fewshot_bench.data.omniglot import background_set, omniglot

    method = make(name)
    background = background_set(omniglot())
    small = background.select(background.meta["alphabet"].isin(background.meta["alphabet"].unique()[:4]))
    method.fit(small)
    ts = tiny_trial_set()
    scores = method.score(method.prepare(ts.queries), method.prepare(ts.support))
    assert scores.shape == (5, 5) and torch.isfinite(scores).all()
    if name == "maml":  # adapts to a support set of classes: it refuses pairs, in one line
        with pytest.raises(UserError, match="scores trial sets, not pairs"):
            method.score_pairs(method.prepare(ts.queries), method.prepare(ts.support))
        return
    pairs = method.score_pairs(method.prepare(ts.queries), method.prepare(ts.support))
    assert pairs.shape == (5,) and torch.isfinite(pairs).all()


@pytest.mark.parametrize("metric", ["euclidean", "l1", "cosine", "dot"])
def test_pixel_1nn_pair_scores_match_its_trial_scores(metric):
    method = METHODS.get("pixel_1nn")(METHODS.get("pixel_1nn").make_config(None, {"metric": metric}))
    a, b = torch.rand(5, 8, 8), torch.rand(5, 8, 8)
    torch.testing.assert_close(method.score_pairs(a, b), method.score(a, b).diagonal())


def test_pixel_1nn_finds_exact_copies():
    support = np.stack([glyph(i) for i in range(6)])
    ts = TrialSet(support[::-1].copy(), support, np.arange(6)[::-1].copy(), "copies")
    assert evaluate_trial_sets(METHODS.get("pixel_1nn")(), [ts])["accuracy"] == 1.0


def mhd_reference(a, b):
    """The straightforward definition, per pair with scipy."""
    def points(img):
        p = np.argwhere(img > 0.5).astype(float)
        return p - p.mean(0)
    d = cdist(points(a), points(b))
    return max(d.min(1).mean(), d.min(0).mean())


def test_mhd_matches_the_scipy_definition():
    ts = tiny_trial_set(4)
    method = METHODS.get("mhd")()
    scores = method.score(method.prepare(ts.queries), method.prepare(ts.support)).numpy()
    expected = -np.array([[mhd_reference(q, s) for s in ts.support] for q in ts.queries])
    np.testing.assert_allclose(scores, expected, atol=1e-3)
    pairs = method.score_pairs(method.prepare(ts.queries), method.prepare(ts.support)).numpy()
    np.testing.assert_allclose(pairs, np.diag(expected), atol=1e-3)


def test_mhd_is_translation_invariant():
    img = glyph(3)
    method = METHODS.get("mhd")()
    score = method.score(method.prepare(img[None]), method.prepare(np.roll(img, (5, -7), (0, 1))[None]))
    assert abs(float(score)) < 1e-3  # float32 rounding of squared distances


def test_k_shot_scores_average_per_class():
    from fewshot_bench.evaluation import class_means

    scores = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    np.testing.assert_allclose(class_means(scores, torch.tensor([0, 0, 1, 1])).numpy(), [[2.0, 1.0]])


@pytest.mark.parametrize("score", ["likelihood", "l2"])
def test_affine_model_matches_rotated_copies(score):
    from fewshot_bench.methods.affine import AffineConfig, AffineModel

    from scipy.ndimage import binary_dilation

    # strokes as thick as Omniglot's (the likelihood needs ink to explain at 40x40)
    support = np.stack([binary_dilation(glyph(i), iterations=2) for i in range(5)]).astype(np.float32)
    # rotate each support by 15 degrees (a grid point) with the same sampler the method uses
    import torch.nn.functional as F
    t = np.radians(15)
    theta = torch.tensor([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0]], dtype=torch.float32)
    x = torch.as_tensor(support)[:, None]
    grid = F.affine_grid(theta.repeat(5, 1, 1), list(x.shape), align_corners=False)
    rotated = F.grid_sample(x, grid, align_corners=False)[:, 0].numpy()
    ts = TrialSet(rotated, support, np.arange(5), "rot")
    method = AffineModel(AffineConfig(input_size=40, rotations_deg=(-15.0, 0.0, 15.0), shifts=(-1.0, 0.0), score=score))
    method.fit(None)
    assert evaluate_trial_sets(method, [ts])["accuracy"] == 1.0
    assert len(method.grid_) == 3 * 3 * 3 * 3 * 3 * 2 * 2


def test_tree_descent_reaches_the_nearest_cluster():
    from scipy.cluster.hierarchy import linkage, to_tree

    from fewshot_bench.methods.tree_metric import descend

    support = np.array([[0.0, 0], [0.0, 1], [10, 0], [10, 1]])
    root = to_tree(linkage(support, "average"))
    scores = descend(np.array([9.5, 0.9]), support, root, ("euclidean",))
    assert scores.argmax() == 3 and scores[2] > scores[0] and scores[0] == scores[1] == 0


def test_scoring_uses_no_more_threads_than_the_machine_has_free_cores(monkeypatch):
    """Beside a busy neighbour a 2-core machine scores on one thread (MHD 5x faster there, `bench speed
    threads`); the threads come back after scoring, and the machine is looked at once a while."""
    import torch

    from fewshot_bench import evaluation

    looks = []
    monkeypatch.setattr(evaluation, "_measure_free_cores", lambda window: looks.append(window) or 1)
    monkeypatch.setattr(evaluation, "_FREE", [-1e9, 0])
    before = torch.get_num_threads()
    seen = []
    with evaluation.scoring_threads():
        seen.append(torch.get_num_threads())
    with evaluation.scoring_threads():
        seen.append(torch.get_num_threads())
    assert seen == [1, 1] and torch.get_num_threads() == before and len(looks) == 1


def test_free_cores_counts_other_processes_busy_time_not_its_own():
    from fewshot_bench import evaluation

    cores = os.cpu_count()
    assert 1 <= evaluation._measure_free_cores(0.05) <= cores
