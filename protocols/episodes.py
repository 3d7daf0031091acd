"""General N-way K-shot episodes on the Omniglot test alphabets."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fewshot_bench.api import PROTOCOLS, TrialSet
from fewshot_bench.config import require, require_minimums
from fewshot_bench.data.omniglot import OmniglotBackgroundProtocol, image_ids, omniglot
from fewshot_bench.data.splits import TEST_ALPHABETS, TEST_DRAWERS


@dataclass(frozen=True)
class EpisodesConfig:
    way: int = 5
    shot: int = 1
    queries: int = 1  # per class
    episodes: int = 400
    within_alphabet: bool = True
    drawers: tuple[int, ...] = TEST_DRAWERS

    def check(self):
        require_minimums(self, way=2, shot=1, queries=1, episodes=1)
        require(self.shot + self.queries <= len(set(self.drawers)),
                f"shot + queries ({self.shot + self.queries}) exceeds the {len(set(self.drawers))} drawers "
                "available; pass more drawers, e.g. --protocol-set drawers=13,14,15,16,17,18,19,20")
        if self.within_alphabet:
            require(self.way <= 25, f"within-alphabet episodes allow way <= 25 (smallest test alphabet), got {self.way}")


@PROTOCOLS.register("episodes")
class Episodes(OmniglotBackgroundProtocol):
    summary = "N-way K-shot episodes on the test alphabets (within or across alphabets)"
    version = "1"
    Config = EpisodesConfig
    ci_unit = "episodes"

    def trial_sets(self, trial_seed: int):
        c = self.config
        images = omniglot(self.data_root)
        meta = images.meta
        test = meta[meta["alphabet"].isin(TEST_ALPHABETS) & meta["drawer"].isin(c.drawers)]
        index = {k: i for k, i in zip(zip(test["alphabet"], test["character"], test["drawer"]), test.index)}
        characters = test[["alphabet", "character"]].drop_duplicates().to_numpy()
        rng = np.random.default_rng([trial_seed, c.way, c.shot, 7])
        sets = []
        for e in range(c.episodes):
            pool = characters
            if c.within_alphabet:
                pool = characters[characters[:, 0] == rng.choice(TEST_ALPHABETS)]
            chosen = pool[rng.choice(len(pool), size=c.way, replace=False)]
            support, support_class, queries, answer = [], [], [], []
            for cls, (alphabet, character) in enumerate(chosen):
                drawers = rng.choice(np.asarray(c.drawers), size=c.shot + c.queries, replace=False)
                rows = [index[(alphabet, character, int(d))] for d in drawers]
                support += rows[:c.shot]
                support_class += [cls] * c.shot
                queries += rows[c.shot:]
                answer += [cls] * c.queries
            sets.append(TrialSet(images.images[queries], images.images[support], np.array(answer),
                                 f"episode{e + 1:04d}", support_class=np.array(support_class),
                                 query_ids=image_ids(meta, queries), support_ids=image_ids(meta, support)))
        return sets
