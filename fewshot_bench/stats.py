"""Statistics: intervals over trial sets, over seeds, and paired tests between methods."""
from __future__ import annotations

import numpy as np
from scipy import stats


def t_interval(values) -> tuple[float, float]:
    """Mean and 95% t half-width of independent values (0 half-width for fewer than 2)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()) if len(v) else float("nan"), 0.0
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean()), float(half)


def set_interval(correct, groups) -> tuple[float, float]:
    """Accuracy and a 95% half-width that treats each trial set, not each trial, as a unit.

    The t-interval is taken over per-set accuracies: trials within one set share
    characters and drawers, so they are not independent.
    """
    correct = np.asarray(correct, dtype=float)
    groups = np.asarray(groups)
    per_set = [correct[groups == g].mean() for g in dict.fromkeys(groups)]
    _, half = t_interval(per_set)
    return float(correct.mean()), half


def mcnemar_exact(correct_a, correct_b) -> dict:
    """Exact McNemar test on paired per-trial correctness (two-sided binomial on discordant pairs)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same trials: {a.shape} vs {b.shape}")
    only_a = int((a & ~b).sum())
    only_b = int((~a & b).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(stats.binomtest(only_a, n, 0.5).pvalue)
    return {"only_a": only_a, "only_b": only_b, "p_value": p}


def p_text(p: float) -> str:
    """A p-value as people read it: an exact test's p can underflow to 0, which is printed as a bound."""
    return f"p = {p:.2g}" if p > 0 else "p < 1e-300"
