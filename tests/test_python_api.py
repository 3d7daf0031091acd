"""The bench from Python: run, evaluate a module, compare, load the store, from `import fewshot_bench`."""
import numpy as np
import pandas as pd
import pytest
import torch

import fewshot_bench as fb
from fewshot_bench.errors import UserError
from fewshot_bench.experiments.python_api import EmbeddingConfig, EmbeddingMethod
from fewshot_bench.records import store_dir

SMALL = {"protocol_options": {"sets_per_alphabet": 1}}  # 200 trials a draw


def test_the_package_hands_out_the_python_api():
    assert {"run", "evaluate", "compare", "load_runs"} <= set(dir(fb))
    assert fb.run.__module__ == "fewshot_bench.experiments.python_api"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fb.nope


def test_run_returns_accuracy_both_intervals_and_every_trial_and_reuses_the_store(data_root, monkeypatch):
    result = fb.run("pixel_1nn", "omniglot20", trial_seeds="0-1", **SMALL)
    assert result.path.is_file() and result.path.parent == store_dir(None)  # the CLI's store
    assert 0 < result.accuracy < 1 and 0 < result.ci95 < 0.2 and 0 < result.ci95_alphabets < 0.3
    assert len(result.correct) == 400 and result.correct.mean() == pytest.approx(result.accuracy)
    trials = result.trials()
    assert list(trials.columns) == ["trial_seed", "group", "correct", "prediction", "answer"] and len(trials) == 400
    assert (trials["correct"] == (trials["prediction"] == trials["answer"])).all()
    assert result.to_frame().loc[0, "accuracy"] == result.accuracy and result.learned is None
    assert "pixel_1nn on omniglot20" in repr(result) and "400 trials" in repr(result)

    from fewshot_bench.api import PROTOCOLS
    monkeypatch.setattr(PROTOCOLS.get("omniglot20"), "evaluate", lambda *a, **k: pytest.fail("scored again"))
    again = fb.run("pixel_1nn", "omniglot20", trial_seeds=range(2), **SMALL)  # the same key: from the store
    assert again.record["run_id"] == result.record["run_id"]


class TinyEmbedding(torch.nn.Module):
    """A user's network: pooled pixels, as any module mapping (N, 1, H, W) to (N, F)."""

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x, 4).flatten(1)


def test_evaluate_scores_a_module_on_koch_task_without_a_plugin(data_root):
    result = fb.evaluate(TinyEmbedding(), "omniglot20", **SMALL)
    assert result.record["n_trials"] == 200 and 0.05 < result.accuracy < 0.6
    assert result.method == "embedding:TinyEmbedding" and result.path is None
    # the same pixels by plain L1 on 7x7 images: the pooled module at 28x28 is that comparison
    pooled = fb.evaluate(lambda x: torch.nn.functional.avg_pool2d(x, 4).flatten(1), "omniglot20", distance="l1", **SMALL)
    assert pooled.method == "embedding:<lambda>" and 0.05 < pooled.accuracy < 0.6
    with pytest.raises(UserError, match="distance must be"):
        fb.evaluate(TinyEmbedding(), "omniglot20", distance="manhattan")


def test_evaluate_on_verification_scores_pairs(data_root):
    result = fb.evaluate(TinyEmbedding(), "verification", protocol_options={"pairs": 200})
    assert result.record["n_trials"] == 200 and 0.4 < result.accuracy < 0.95


def test_k_shot_nearest_takes_the_nearest_shot_and_prototypes_the_class_mean():
    support = torch.tensor([[0.0], [10.0], [4.0], [5.0]])  # class 0: 0 and 10; class 1: 4 and 5
    classes = np.array([0, 0, 1, 1])
    query = torch.tensor([[9.0]])
    nearest = EmbeddingMethod(lambda x: x, EmbeddingConfig(distance="l1"), "n")._set_scores(query, support, classes)
    prototypes = EmbeddingMethod(lambda x: x, EmbeddingConfig(distance="l1", classifier="prototypes"),
                                 "p")._set_scores(query, support, classes)
    assert nearest.tolist() == [[-1.0, -1.0, -4.0, -4.0]]  # 10 is class 0's nearest shot
    assert prototypes.tolist() == [[-4.0, -4.0, -4.5, -4.5]]  # class means 5 and 4.5


def test_an_embedding_of_the_wrong_shape_is_one_clear_error():
    method = EmbeddingMethod(lambda x: x.flatten(), EmbeddingConfig(input_size=None), "flat")
    with pytest.raises(UserError, match=r"flat gave embeddings of shape \(32,\) for 2 images; it must return \(N, F\)"):
        method.embed(torch.rand(2, 4, 4))


def test_compare_is_the_paired_test_on_identical_trials(data_root):
    a = fb.run("pixel_1nn", "omniglot20", **SMALL)
    b = fb.evaluate(TinyEmbedding(), "omniglot20", **SMALL)
    test = fb.compare(a, b)
    wrong_right = int(((a.correct == 0) & (b.correct == 1)).sum())
    assert test.only_b == wrong_right and test.difference == pytest.approx(b.accuracy - a.accuracy)
    assert 0 <= test.p_value <= 1 and test.ci95 > 0 and "paired trials" in repr(test)
    by_name = fb.compare("pixel_1nn", "pixel_1nn", "omniglot20", **SMALL)  # found in the store
    assert by_name.only_a == by_name.only_b == 0 and by_name.p_value == 1.0
    other = fb.run("pixel_1nn", "omniglot20", trial_seeds=1, **SMALL)
    with pytest.raises(UserError, match="not scored on identical trials"):
        fb.compare(a, other)


def test_load_runs_is_the_store_as_a_dataframe(data_root):
    fb.run("pixel_1nn", "omniglot20", **SMALL)
    runs = fb.load_runs()
    assert isinstance(runs, pd.DataFrame) and len(runs) == 1
    assert {"method", "preset", "protocol", "accuracy", "ci95", "ci95_alphabets", "learned"} <= set(runs.columns)
