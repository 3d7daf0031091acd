"""Scoring trial sets into a result: accuracy, 95% CI over sets, per-trial predictions."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager

import numpy as np
import torch

from fewshot_bench.stats import set_interval


def evaluate_trial_sets(method, trial_sets, progress=None) -> dict:
    """Every distinct image of the trial sets is prepared once (sets that name their images share
    them: an image in many episodes is one row) and the method scores all sets through
    ``score_indexed``; a query's prediction is its best support (K-shot: its best class).

    Besides accuracy, the result keeps per trial the answer, the prediction, the scores of the
    correct and the chosen support (or class), and per set the identities of its images: what a
    picture of a trial needs."""
    correct, predictions, groups, answers, score_correct, score_chosen, sets = [], [], [], [], [], [], []
    if progress:
        progress.start(len(trial_sets))
    start = time.perf_counter()
    images, indexed = shared_images(trial_sets)
    with torch.inference_mode(), scoring_threads():
        # K-shot sets carry their support's classes: methods that score classes (prototypes, MAML) use them
        all_scores = method.score_indexed(method.prepare(images), [
            (q, s) + ((ts.support_class,) if ts.support_class is not None else ()) for (q, s), ts in zip(indexed, trial_sets)])
        for ts, scores in zip(trial_sets, all_scores):
            expected = (len(ts.queries), len(ts.support))
            if tuple(scores.shape) != expected:
                raise RuntimeError(f"{method.name}.score returned shape {tuple(scores.shape)}, expected {expected}")
            if not torch.isfinite(scores).all():
                raise RuntimeError(f"{method.name}.score returned non-finite scores on {ts.group}")
            if ts.support_class is not None:  # K-shot: a class scores the mean of its shots
                scores = class_means(scores, torch.as_tensor(ts.support_class))
            pred = scores.argmax(dim=1).cpu().numpy()
            rows = np.arange(len(pred))
            predictions.extend(pred.tolist())
            correct.extend((pred == ts.answer).astype(int).tolist())
            groups.extend([ts.group] * len(pred))
            answers.extend(np.asarray(ts.answer).tolist())
            score_correct.extend(scores[rows, np.asarray(ts.answer)].tolist())
            score_chosen.extend(scores[rows, pred].tolist())
            if ts.query_ids is not None:
                sets.append({"group": ts.group, "queries": list(ts.query_ids), "support": list(ts.support_ids),
                             **({"support_class": np.asarray(ts.support_class).tolist()}
                                if ts.support_class is not None else {})})
            if progress:
                progress.advance()
    result = summarise(correct, groups, predictions, time.perf_counter() - start)
    result.update({"answers": answers, "score_correct": rounded(score_correct),
                   "score_chosen": rounded(score_chosen), "sets": sets})
    return result


def shared_images(trial_sets) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The sets' images as one array of distinct images and, per set, the rows of its queries and
    support. Images are the same where their identities are (``query_ids``/``support_ids``); sets
    without identities keep their own rows."""
    rows, images, indexed = {}, [], []
    for k, ts in enumerate(trial_sets):
        pair = []
        for pixels, ids in ((ts.queries, ts.query_ids), (ts.support, ts.support_ids)):
            keys = ids if ids is not None else [(k, id(pixels), i) for i in range(len(pixels))]
            index = []
            for key, image in zip(keys, pixels):
                if key not in rows:
                    rows[key] = len(images)
                    images.append(image)
                index.append(rows[key])
            pair.append(np.asarray(index, dtype=np.int64))
        indexed.append(tuple(pair))
    return np.stack(images), indexed


def rounded(values) -> list[float]:
    """Scores to 5 significant digits: enough to rank and draw trials, a third of the JSON."""
    return [float(f"{v:.5g}") for v in values]


def summarise(correct, groups, predictions, seconds) -> dict:
    accuracy, half = set_interval(correct, groups)
    return {
        "accuracy": accuracy,
        "ci95": half,
        "n_trials": len(correct),
        "n_sets": len(dict.fromkeys(groups)),
        "correct": [int(c) for c in correct],
        "predictions": [int(p) for p in predictions],
        "groups": list(groups),
        "eval_seconds": seconds,
    }


def class_means(scores: torch.Tensor, support_class: torch.Tensor) -> torch.Tensor:
    """(Q, S) scores -> (Q, C) mean score per class (classes numbered 0..C-1)."""
    n_classes = int(support_class.max()) + 1
    sums = torch.zeros(scores.shape[0], n_classes, dtype=scores.dtype).index_add_(1, support_class, scores)
    return sums / torch.bincount(support_class, minlength=n_classes).to(scores.dtype)


_FREE: list = [-1e9, 0]  # (when, free cores) of the last look: scoring calls in a row look once
FREE_CORES_TTL = 30.0


def free_cores(window: float = 0.1) -> int:
    """The cores other processes leave this one, at least 1: the machine's busy time over a short
    ``window`` (Linux's /proc/stat) less this process's own; elsewhere the 1-minute load average
    (this process counted as one). Looked at once per ``FREE_CORES_TTL`` seconds."""
    if time.monotonic() - _FREE[0] < FREE_CORES_TTL:
        return _FREE[1]
    _FREE[:] = [time.monotonic(), _measure_free_cores(window)]
    return _FREE[1]


def _measure_free_cores(window: float) -> int:
    cores = os.cpu_count() or 1
    try:
        before, own_before, wall = _busy_jiffies(), time.process_time(), time.perf_counter()
        time.sleep(window)
        busy = (_busy_jiffies() - before) / os.sysconf("SC_CLK_TCK") / (time.perf_counter() - wall)
        others = busy - (time.process_time() - own_before) / window
    except (OSError, ValueError):
        try:
            others = os.getloadavg()[0] - 1
        except OSError:  # neither: every core
            return cores
    return max(1, min(cores, round(cores - others)))


def _busy_jiffies() -> int:
    """The machine's busy CPU time so far, in clock ticks (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return sum(fields[:3]) + sum(fields[5:8])


@contextmanager
def scoring_threads():
    """Score on no more torch threads than the machine has free cores. Two processes each splitting
    their work over both cores of a 2-core machine wait on each other: beside a busy core, MHD scored
    2 trial sets in 1.5-2.1 s on 2 threads and in 0.5 s on 1, the affine model in 5.9-7.0 s and
    4.9-5.2 s (`bench speed threads`); on an idle machine scoring keeps all its threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(min(before, free_cores()))
    try:
        yield
    finally:
        torch.set_num_threads(before)
