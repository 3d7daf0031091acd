"""Scoring trial sets into a result: accuracy, 95% CI over sets, per-trial predictions."""
from __future__ import annotations

import time

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
    with torch.inference_mode():
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
