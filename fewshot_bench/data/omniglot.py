"""Omniglot data for protocols: the loaded set (once per process) and within-alphabet trials."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from fewshot_bench.api import Protocol, TrialSet
from fewshot_bench.data.datasets import data_root, load_omniglot
from fewshot_bench.imageset import ImageSet
from fewshot_bench.data.splits import HELDOUT_ALPHABETS, VALIDATION_ALPHABETS, VALIDATION_DRAWERS


@functools.lru_cache(maxsize=4)
def _omniglot(root: str) -> ImageSet:
    return load_omniglot(Path(root))


def omniglot(root: Path | None = None) -> ImageSet:
    """Both official zips (background + evaluation), decoded once per process."""
    return _omniglot(str(data_root(root)))


def background_set(images: ImageSet, drawers=None) -> ImageSet:
    """The 30 background alphabets (optionally only some drawers): all a method may fit on."""
    mask = (images.meta["split"] == "background") & ~images.meta["alphabet"].isin(HELDOUT_ALPHABETS)
    if drawers is not None:
        mask &= images.meta["drawer"].isin(drawers)
    return images.select(mask)


def within_alphabet_sets(images: ImageSet, alphabets, drawers, rng: np.random.Generator,
                         sets_per_alphabet: int = 2, way: int = 20) -> list[TrialSet]:
    """Koch's one-shot trial sets: for each alphabet, ``sets_per_alphabet`` times, draw ``way``
    characters and two distinct drawers; drawer 1's images are queries, drawer 2's the support."""
    meta = images.meta
    # columns as lists: iterating pandas Series cost 0.13 s a call on the whole of Omniglot
    index = {key: i for i, key in enumerate(zip(meta["alphabet"].tolist(), meta["character"].tolist(),
                                                meta["drawer"].tolist()))}
    sets = []
    for alphabet in alphabets:
        characters = np.array(sorted(meta.loc[meta["alphabet"] == alphabet, "character"].unique()))
        if len(characters) == 0:
            raise ValueError(f"alphabet {alphabet!r} is not in the data")
        for k in range(sets_per_alphabet):
            chosen = rng.choice(characters, size=min(way, len(characters)), replace=False)
            d_query, d_support = rng.choice(np.asarray(drawers), size=2, replace=False)
            q = [index[(alphabet, c, int(d_query))] for c in chosen]
            s = [index[(alphabet, c, int(d_support))] for c in chosen]
            order = rng.permutation(len(chosen))  # support order carries no hint of the answer
            s = np.asarray(s)[order]
            sets.append(TrialSet(images.images[q], images.images[s], np.argsort(order), f"{alphabet}#{k + 1}",
                                 query_ids=image_ids(meta, q), support_ids=image_ids(meta, s)))
    return sets


def image_ids(meta, rows) -> list[str]:
    """Each image's identity in Omniglot: ``alphabet/character/drawer``."""
    sub = meta.iloc[np.asarray(rows)]
    return [f"{a}/{c}/{d:02d}" for a, c, d in zip(sub["alphabet"], sub["character"], sub["drawer"])]


VALIDATION_TRIAL_SETS = 16  # 16 sets x 20 queries = Koch's 320 validation trials


def validation_sets(images: ImageSet, seed: int = 0) -> list[TrialSet]:
    """320 one-shot trials from the 10 validation alphabets, drawers 13-16: the alphabets are
    cycled in a seeded order so that 16 sets of 20 queries are drawn."""
    rng = np.random.default_rng([seed, 320])
    order = list(rng.permutation(VALIDATION_ALPHABETS))
    alphabets = (order * 2)[:VALIDATION_TRIAL_SETS]
    sets = []
    for alphabet in dict.fromkeys(alphabets):
        sets += within_alphabet_sets(images, [alphabet], VALIDATION_DRAWERS, rng,
                                     sets_per_alphabet=alphabets.count(alphabet), way=20)
    return sets


class OmniglotBackgroundProtocol(Protocol):
    """A protocol whose methods learn from the 30 background alphabets and early-stop on the
    320 validation trials; validation and test alphabets never reach ``fit``."""

    heldout_alphabets = HELDOUT_ALPHABETS
    background_drawers = None  # all 20

    def background(self) -> ImageSet:
        return background_set(omniglot(self.data_root), self.background_drawers)

    def background_key(self):
        return ("omniglot background", self.background_drawers)

    def validation(self, seed: int = 0) -> list[TrialSet]:
        return validation_sets(omniglot(self.data_root), seed)

    def tuning_sets(self, trials: int, seed: int = 0) -> list[TrialSet]:
        return tuning_sets(omniglot(self.data_root), trials, seed)


def tuning_sets(images: ImageSet, trials: int, seed: int = 0) -> list[TrialSet]:
    """At least ``trials`` 20-way one-shot trials from the validation alphabets and drawers 13-16
    (as many sets from each alphabet), what ``bench tune`` ranks settings by: 3,200 of them rank
    settings a point apart where Koch's 320 cannot (a 320-trial accuracy swings by about 2.5 points)."""
    per_alphabet = max(1, -(-trials // (20 * len(VALIDATION_ALPHABETS))))
    sets = within_alphabet_sets(images, VALIDATION_ALPHABETS, VALIDATION_DRAWERS, np.random.default_rng([seed, 3200]),
                                per_alphabet, 20)
    for ts in sets:  # the firewall: no image of a test alphabet or drawer scores a setting
        for image in ts.query_ids + ts.support_ids:
            alphabet, _, drawer = image.split("/")
            if alphabet not in VALIDATION_ALPHABETS or int(drawer) not in VALIDATION_DRAWERS:
                raise RuntimeError(f"a tuning trial holds {image}, outside the validation alphabets and drawers")
    return sets
