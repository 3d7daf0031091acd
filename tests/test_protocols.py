import zipfile

import numpy as np
import pytest

from fewshot_bench.api import METHODS, PROTOCOLS
from fewshot_bench.errors import UserError
from fewshot_bench.data.omniglot import omniglot
from fewshot_bench.api import check_alphabets as check_background
from fewshot_bench.data.splits import HELDOUT_ALPHABETS, TEST_ALPHABETS, VALIDATION_ALPHABETS
from helpers import lake_runs_folder


def protocol(name, **options):
    cls = PROTOCOLS.get(name)
    return cls(cls.make_config(options))


def labels_of(images, pixels):
    """Map image arrays back to their (alphabet, character, drawer) rows by exact pixel match."""
    flat = images.images.reshape(len(images), -1)
    keys = {row.tobytes(): i for i, row in enumerate(flat)}
    return images.meta.iloc[[keys[p.reshape(-1).tobytes()] for p in pixels]]


def test_omniglot20_has_400_trials_in_20_within_alphabet_sets(data_root):
    sets = protocol("omniglot20").trial_sets(0)
    assert len(sets) == 20 and sum(len(s.queries) for s in sets) == 400
    images = omniglot()
    for ts in sets[:4]:
        q = labels_of(images, ts.queries)
        s = labels_of(images, ts.support)
        assert q["alphabet"].nunique() == 1 and q["alphabet"].iloc[0] in TEST_ALPHABETS
        assert q["drawer"].nunique() == 1 and s["drawer"].nunique() == 1
        assert q["drawer"].iloc[0] != s["drawer"].iloc[0] and set(q["drawer"]) | set(s["drawer"]) <= {17, 18, 19, 20}
        # each query's answer is the support image of the same character
        assert list(q["character"]) == list(s["character"].iloc[ts.answer])


def test_omniglot20_trials_are_deterministic_per_seed_and_differ_between_seeds(data_root):
    p = protocol("omniglot20")
    a, b, c = p.trial_sets(3), p.trial_sets(3), p.trial_sets(4)
    assert all(np.array_equal(x.queries, y.queries) and np.array_equal(x.answer, y.answer) for x, y in zip(a, b))
    assert not all(np.array_equal(x.queries, y.queries) for x, y in zip(a, c))


def test_validation_is_320_trials_from_validation_alphabets_drawers_13_to_16(data_root):
    sets = protocol("omniglot20").validation(0)
    assert sum(len(s.queries) for s in sets) == 320
    meta = labels_of(omniglot(), np.concatenate([np.concatenate([s.queries, s.support]) for s in sets]))
    assert set(meta["alphabet"]) <= set(VALIDATION_ALPHABETS)
    assert set(meta["drawer"]) <= {13, 14, 15, 16}


@pytest.mark.parametrize("name", ["omniglot20", "verification", "mnist10", "episodes", "lake_runs"])
def test_background_never_holds_validation_or_test_alphabets(data_root, name):
    p = protocol(name)
    background = p.background()
    assert background.alphabets and not background.alphabets & HELDOUT_ALPHABETS
    assert set(background.meta["split"]) == {"background"}
    check_background(background, p.heldout_alphabets)  # the runner's firewall passes


def test_firewall_rejects_a_leaking_background(data_root):
    leaking = omniglot().select(omniglot().meta["alphabet"].isin(["Latin", "Tibetan"]))
    with pytest.raises(RuntimeError, match="Tibetan"):
        check_background(leaking, HELDOUT_ALPHABETS)


def test_verification_background_is_drawers_1_to_12(data_root):
    assert set(protocol("verification").background().meta["drawer"]) == set(range(1, 13))


def test_verification_pairs_are_balanced_and_from_test_alphabets(data_root):
    p = protocol("verification", pairs=200)
    pairs, alphabets = p.pairs(0)
    assert pairs.same.sum() == 100 and set(alphabets) <= set(TEST_ALPHABETS)
    first = labels_of(omniglot(), pairs.first)
    second = labels_of(omniglot(), pairs.second)
    same_char = (first["character"].to_numpy() == second["character"].to_numpy()) & (
        first["alphabet"].to_numpy() == second["alphabet"].to_numpy())
    np.testing.assert_array_equal(same_char, pairs.same)


def test_verification_threshold_comes_from_validation_pairs(data_root):
    p = protocol("verification", pairs=100, threshold_pairs=50)
    result = p.evaluate(METHODS.get("pixel_1nn")(), 0)
    assert result["n_trials"] == 100 and "threshold" in result
    held = labels_of(omniglot(), p.threshold_pairs().first)
    assert set(held["alphabet"]) <= set(VALIDATION_ALPHABETS)


def test_mnist10_trials_have_one_support_per_digit(data_root):
    sets = protocol("mnist10", trials=20).trial_sets(0)
    assert len(sets) == 20
    for ts in sets:
        assert ts.queries.shape == (1, 28, 28) and ts.support.shape == (10, 28, 28)
        assert not any(np.array_equal(ts.queries[0], s) for s in ts.support)  # the query is not its own support


def test_episodes_k_shot_have_classes_and_queries(data_root):
    sets = protocol("episodes", way=5, shot=2, queries=2, episodes=3).trial_sets(0)
    for ts in sets:
        assert ts.support.shape[0] == 10 and ts.queries.shape[0] == 10
        assert sorted(ts.support_class) == sorted(list(range(5)) * 2)
    result = protocol("episodes", way=5, shot=2, queries=2, episodes=3).evaluate(METHODS.get("pixel_1nn")(), 0)
    assert result["n_trials"] == 30 and result["n_sets"] == 3


def test_episodes_reject_more_shots_than_drawers():
    with pytest.raises(UserError, match="exceeds the 4 drawers"):
        PROTOCOLS.get("episodes").make_config({"shot": "3", "queries": "2"})


# ---------------------------------------------------------------- lake_runs

def lake(tmp_path, **kwargs):
    return protocol("lake_runs", runs=str(lake_runs_folder(tmp_path / "runs", **kwargs)))


def test_lake_runs_read_out_of_order_labels(tmp_path):
    sets = lake(tmp_path).trial_sets(0)
    assert [s.group for s in sets] == ["run01", "run02"]
    for ts in sets:  # every item is a copy of its class image, so 1-NN must be perfect
        np.testing.assert_array_equal(ts.queries, ts.support[ts.answer])
    result = lake(tmp_path / "again").evaluate(METHODS.get("pixel_1nn")(), 0)
    assert result["accuracy"] == 1.0


def test_lake_runs_from_a_zip(tmp_path):
    folder = lake_runs_folder(tmp_path / "runs")
    archive = tmp_path / "all_runs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in folder.rglob("*"):
            if path.is_file():
                zf.write(path, "all_runs/" + path.relative_to(folder).as_posix())
    sets = protocol("lake_runs", runs=str(archive)).trial_sets(0)
    assert len(sets) == 2 and all(np.array_equal(s.queries, s.support[s.answer]) for s in sets)


def test_lake_runs_missing_image_names_the_file(tmp_path):
    p = lake(tmp_path)
    (tmp_path / "runs/run02/training/class01.png").unlink()
    with pytest.raises(UserError, match="missing image run02/training/class01.png"):
        p.trial_sets(0)


def test_lake_runs_malformed_line_names_file_and_line(tmp_path):
    p = lake(tmp_path)
    labels = tmp_path / "runs/run01/class_labels.txt"
    labels.write_text(labels.read_text() + "just-one-field\n")
    with pytest.raises(UserError, match=r"run01/class_labels.txt line 5"):
        p.trial_sets(0)


def test_lake_runs_default_to_the_data_roots_all_runs_zip(tmp_path):
    folder = lake_runs_folder(tmp_path / "runs")
    (tmp_path / "data/omniglot").mkdir(parents=True)
    with zipfile.ZipFile(tmp_path / "data/omniglot/all_runs.zip", "w") as zf:
        for path in folder.rglob("*"):
            if path.is_file():
                zf.write(path, "all_runs/" + path.relative_to(folder).as_posix())
    cls = PROTOCOLS.get("lake_runs")
    sets = cls(cls.make_config({}), data_root=tmp_path / "data").trial_sets(0)
    assert [s.group for s in sets] == ["run01", "run02"]
    # --runs still overrides the default
    other = cls(cls.make_config({"runs": str(folder)}), data_root=tmp_path / "nowhere").trial_sets(0)
    assert len(other) == 2


def test_lake_runs_missing_says_how_to_fetch_them(tmp_path):
    cls = PROTOCOLS.get("lake_runs")
    with pytest.raises(UserError, match=r"runs not found at .*all_runs.zip; run `bench data fetch`"):
        cls(cls.make_config({}), data_root=tmp_path).trial_sets(0)


def test_official_lake_runs_are_20_within_alphabet_runs_of_test_alphabets(data_root):
    sets = protocol("lake_runs").trial_sets(0)
    assert len(sets) == 20 and all(s.queries.shape == s.support.shape == (20, 105, 105) for s in sets)
    images = omniglot()
    for ts in sets[::7]:  # every image is an evaluation image of one test alphabet
        q, s = labels_of(images, ts.queries), labels_of(images, ts.support)
        assert q["alphabet"].nunique() == 1 and q["alphabet"].iloc[0] in TEST_ALPHABETS
        assert list(q["character"]) == list(s["character"].iloc[ts.answer])
    result = protocol("lake_runs").evaluate(METHODS.get("pixel_1nn")(), 0)
    assert result["n_trials"] == 400 and result["n_sets"] == 20


def test_episodes_drawer_hint_names_the_protocol_option():
    with pytest.raises(UserError, match="--protocol-set drawers="):
        PROTOCOLS.get("episodes").make_config({"shot": "100"})
