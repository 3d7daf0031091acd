import numpy as np
import pytest

from fewshot_bench.seeding import format_seeds, parse_seeds
from fewshot_bench.errors import UserError
from fewshot_bench.stats import mcnemar_exact, set_interval, t_interval


def test_set_interval_uses_per_set_accuracies():
    correct = [1, 1, 0, 0, 1, 0, 1, 1]
    groups = ["a"] * 4 + ["b"] * 4
    acc, half = set_interval(correct, groups)
    assert acc == pytest.approx(5 / 8)
    # per-set accuracies 0.5 and 0.75: t(0.975, 1) * std / sqrt(2)
    assert half == pytest.approx(12.7062 * np.std([0.5, 0.75], ddof=1) / np.sqrt(2), rel=1e-4)


def test_set_interval_is_wider_than_a_per_trial_interval_when_sets_differ():
    correct = [1] * 20 + [0] * 20
    groups = ["a"] * 20 + ["b"] * 20
    _, by_set = set_interval(correct, groups)
    _, by_trial = set_interval(correct, [str(i) for i in range(40)])
    assert by_set > by_trial


def test_t_interval_of_one_value_has_zero_width():
    assert t_interval([0.7]) == (0.7, 0.0)


def test_mcnemar_exact_known_value():
    a = [1] * 10 + [0] * 2 + [1] * 5
    b = [0] * 10 + [1] * 2 + [1] * 5
    test = mcnemar_exact(a, b)
    assert (test["only_a"], test["only_b"]) == (10, 2)
    assert test["p_value"] == pytest.approx(0.03857, abs=1e-4)  # 2 * P(X <= 2), X ~ Bin(12, 0.5)


def test_mcnemar_identical_methods_p_is_one():
    assert mcnemar_exact([1, 0, 1], [1, 0, 1])["p_value"] == 1.0


@pytest.mark.parametrize("text,seeds", [("3", [3]), ("0-4", [0, 1, 2, 3, 4]), ("0,4,7", [0, 4, 7]), ("1-2,5", [1, 2, 5])])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds
    assert parse_seeds(format_seeds(seeds)) == seeds  # the text the CLI's messages print reads back


def test_format_seeds_writes_ranges_as_ranges():
    assert [format_seeds(s) for s in ([3], list(range(10)), [0, 4, 7])] == ["3", "0-9", "0,4,7"]


@pytest.mark.parametrize("text", ["x", "5-2", "-1", "1--3"])
def test_parse_seeds_rejects_bad_lists(text):
    with pytest.raises(UserError, match="bad seed list"):
        parse_seeds(text)


def test_the_alphabet_interval_treats_each_alphabet_as_one_unit():
    from fewshot_bench.experiments.runner import alphabet_interval

    groups = ["Tibetan#1"] * 4 + ["Tibetan#2"] * 4 + ["Atlantean#1"] * 4 + ["Atlantean#2"] * 4
    correct = [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0]  # Tibetan 7/8, Atlantean 2/8
    out = alphabet_interval(correct, groups)
    assert out["alphabets"] == 2
    mean, half = t_interval([7 / 8, 2 / 8])
    assert out["ci95_alphabets"] == pytest.approx(half)
    assert alphabet_interval([1, 0], ["episode0001", "episode0002"]) == {}  # not alphabet trial sets
