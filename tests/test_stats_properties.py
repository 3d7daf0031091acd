"""Properties of the statistics, over many generated inputs (Hypothesis)."""
import math

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fewshot_bench.stats import mcnemar_exact, set_interval, t_interval  # noqa: E402

accuracies = st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=40)
paired = st.integers(1, 200).flatmap(lambda n: st.tuples(st.lists(st.booleans(), min_size=n, max_size=n),
                                                         st.lists(st.booleans(), min_size=n, max_size=n)))


@given(accuracies)
def test_an_interval_over_more_sets_of_the_same_spread_is_narrower(per_set):
    if max(per_set) - min(per_set) < 1e-6:  # no spread beyond float rounding: both intervals are ~0
        assert t_interval(per_set * 2)[1] == pytest.approx(0.0, abs=1e-5)
        return
    assert t_interval(per_set * 2)[1] < t_interval(per_set)[1]


@given(accuracies)
def test_the_interval_is_centred_on_the_mean_and_never_negative(per_set):
    mean, half = t_interval(per_set)
    assert mean == pytest.approx(np.mean(per_set)) and half >= 0


@given(paired)
def test_mcnemar_is_symmetric_in_its_two_methods(pair):
    a, b = pair
    ab, ba = mcnemar_exact(a, b), mcnemar_exact(b, a)
    assert (ab["only_a"], ab["only_b"]) == (ba["only_b"], ba["only_a"])
    assert ab["p_value"] == pytest.approx(ba["p_value"])


@given(paired)
def test_mcnemar_is_the_exact_two_sided_binomial_of_the_discordant_trials(pair):
    a, b = np.array(pair[0]), np.array(pair[1])
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    # two-sided: twice the smaller tail of Binomial(n, 1/2), at most 1 (counted here, not by scipy)
    expected = 1.0 if n == 0 else min(1.0, 2 * sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n)
    result = mcnemar_exact(a, b)
    assert (result["only_a"], result["only_b"]) == (only_a, only_b)
    assert result["p_value"] == pytest.approx(expected, rel=1e-9)


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(0, 1), st.sampled_from(["A#1", "A#2", "B#1", "C#1"])), min_size=2, max_size=60),
       st.randoms(use_true_random=False))
def test_accuracy_and_its_interval_do_not_depend_on_the_order_of_trials(trials, rnd):
    shuffled = list(trials)
    rnd.shuffle(shuffled)
    first = set_interval([c for c, _ in trials], [g for _, g in trials])
    second = set_interval([c for c, _ in shuffled], [g for _, g in shuffled])
    assert first[0] == pytest.approx(second[0]) and first[1] == pytest.approx(second[1])


def test_an_empty_list_has_no_mean_and_no_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's mean of nothing would warn
        mean, half = t_interval([])
    assert math.isnan(mean) and half == 0.0


def test_the_set_interval_is_the_t_interval_of_each_sets_own_accuracy():
    # three sets at 1/2, 1 and 0: each set's accuracy is its own trials' mean
    correct, groups = [1, 0, 1, 1, 0, 0], ["a", "a", "b", "b", "c", "c"]
    assert set_interval(correct, groups) == pytest.approx((0.5, t_interval([0.5, 1.0, 0.0])[1]))


def test_mcnemar_reads_records_zero_one_correctness_as_booleans():
    # run records keep correctness as 0/1 integers
    assert mcnemar_exact([1, 0, 1, 1, 0], [0, 0, 1, 0, 1]) == {"only_a": 2, "only_b": 1, "p_value": 1.0}
    with pytest.raises(ValueError, match="paired test needs the same trials"):
        mcnemar_exact([1, 0], [1])
