"""N-way K-shot episodes drawn from the classes of an ImageSet (Vinyals' benchmark, a user's folder)."""
from __future__ import annotations

import numpy as np

from fewshot_bench.api import TrialSet
from fewshot_bench.data.omniglot import image_ids
from fewshot_bench.imageset import ImageSet


def episode_rng(trial_seed: int, way: int, shot: int, queries: int) -> np.random.Generator:
    """The generator of a test draw: the same trial seed and episode shape draw the same episodes
    from the same classes, whichever protocol hands them over."""
    return np.random.default_rng([trial_seed, way, shot, queries, 2016])


def draw_episodes(images: ImageSet, n: int, way: int, shot: int, queries: int, rng: np.random.Generator,
                  prefix: str, within: str | None = None) -> list[TrialSet]:
    """``n`` episodes of ``way`` classes, each with ``shot`` support and ``queries`` query images per
    class (distinct images). Classes come from all of ``images``' labels, or, with ``within`` (a meta
    column such as ``alphabet``), from one value of it per episode, drawn among those holding ``way``
    classes or more."""
    meta = images.meta
    by_class = [np.sort(rows) for _, rows in sorted(meta.groupby("label").indices.items())]
    pools = [np.arange(len(by_class))]
    if within is not None:
        group_of = meta.groupby("label")[within].first().sort_index().to_numpy()
        pools = [np.flatnonzero(group_of == g) for g in dict.fromkeys(group_of)]
        pools = [p for p in pools if len(p) >= way]
    sets = []
    for e in range(n):
        pool = pools[rng.integers(len(pools))] if within is not None else pools[0]
        chosen = pool[rng.choice(len(pool), size=way, replace=False)]
        support, support_class, query, answer = [], [], [], []
        for k, c in enumerate(chosen):
            rows = rng.choice(by_class[c], size=shot + queries, replace=False)
            support += rows[:shot].tolist()
            support_class += [k] * shot
            query += rows[shot:].tolist()
            answer += [k] * queries
        sets.append(TrialSet(images.images[query], images.images[support], np.array(answer), f"{prefix}{e + 1:04d}",
                             support_class=np.array(support_class), query_ids=image_ids(meta, query),
                             support_ids=image_ids(meta, support)))
    return sets
