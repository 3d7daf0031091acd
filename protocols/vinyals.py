"""The modern Omniglot benchmark (Vinyals et al. 2016): N-way K-shot episodes over the test
classes of Vinyals' split (characters x 4 rotations, 28x28), classes drawn from all test alphabets.

Methods learn on the split's train classes (or trainval, as Snell et al. 2017 did: option
``train_split``) and early-stop on episodes of the val classes; no test character, in any
rotation, may reach training (the runner checks it through ``check_background``). Settings are
chosen on the val classes: ``test_split=val`` draws the episodes from them instead of the test
classes (only beside ``train_split=train``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fewshot_bench.api import PROTOCOLS, Protocol
from fewshot_bench.config import require, require_minimums
from fewshot_bench.data.episodes import draw_episodes, episode_rng
from fewshot_bench.data.vinyals_split import base_alphabet, characters, class_set
from fewshot_bench.errors import UserError

VALIDATION_EPISODES = 16  # 16 20-way one-shot episodes: 320 validation trials, as Koch's


@dataclass(frozen=True)
class VinyalsConfig:
    way: int = 5
    shot: int = 1
    queries: int = 1  # per class and episode
    episodes: int = 1000  # as the papers report
    train_split: str = "train"  # "train" (val classes for early stopping) or "trainval" (Snell et al.)
    test_split: str = "test"  # "test", or "val" to choose settings without looking at the test classes

    def check(self):
        require_minimums(self, way=2, shot=1, queries=1, episodes=1)
        require(self.shot + self.queries <= 20, f"shot + queries must be <= 20 (drawers per class), "
                                                f"got {self.shot + self.queries}")
        require(self.train_split in ("train", "trainval"),
                f"train_split must be 'train' or 'trainval', got {self.train_split!r}")
        require(self.test_split in ("test", "val"), f"test_split must be 'test' or 'val', got {self.test_split!r}")
        require(self.test_split == "test" or self.train_split == "train",
                "test_split=val needs train_split=train (trainval trains on the val classes)")


@PROTOCOLS.register("vinyals")
class Vinyals(Protocol):
    summary = "Vinyals 2016 split: N-way K-shot episodes over the test classes (rotations as classes, 28x28)"
    version = "1"
    Config = VinyalsConfig
    ci_unit = "episodes"
    later_options = {"test_split": "test"}  # keys of runs stored before the option stay valid

    def background(self):
        return class_set(self.data_root, self.config.train_split)

    def check_background(self, background) -> None:
        """No test character (any rotation) in training; nor a val character when val early-stops."""
        held = characters(class_set(self.data_root, "test"))
        if self.config.train_split == "train":
            held |= characters(class_set(self.data_root, "val"))
        leaked = characters(background) & held
        if leaked:
            raise RuntimeError(f"{len(leaked)} held-out Vinyals characters reached training data, "
                               f"e.g. {sorted(leaked)[:3]}")

    def check_feasible(self, method) -> None:
        """Before any training: the episodes' part holds ``way`` classes."""
        classes = class_set(self.data_root, self.config.test_split).meta["label"].nunique()
        if self.config.way > classes:
            raise UserError(f"way={self.config.way} needs that many classes; the {self.config.test_split} classes "
                            f"number {classes}: lower way (--protocol-set way=N)")

    def validation(self, seed: int = 0):
        if self.config.train_split == "trainval":  # the val classes are training data then
            return None
        rng = np.random.default_rng([seed, 688])
        return draw_episodes(class_set(self.data_root, "val"), VALIDATION_EPISODES, 20, 1, 1, rng, "val")

    def tuning_sets(self, trials: int, seed: int = 0):
        """Episodes of this protocol's shape from the val classes (never a test class), at least
        ``trials`` queries in all; only beside train_split=train, which keeps the val classes out of
        training."""
        c = self.config
        if c.train_split != "train":
            raise UserError("tuning needs --protocol-set train_split=train: with trainval the val classes "
                            "are training data and cannot score a setting")
        val = class_set(self.data_root, "val")
        sets = draw_episodes(val, max(1, -(-trials // (c.way * c.queries))), c.way, c.shot, c.queries,
                             np.random.default_rng([seed, c.way, c.shot, 3200]), "val")
        allowed = characters(val)
        for ts in sets:  # the firewall: only val characters score a setting
            for image in ts.query_ids + ts.support_ids:
                alphabet, character, _ = image.split("/")
                if (base_alphabet(alphabet), character) not in allowed:
                    raise RuntimeError(f"a tuning episode holds {image}, which is not a val class")
        return sets

    def trial_sets(self, trial_seed: int):
        c = self.config
        rng = episode_rng(trial_seed, c.way, c.shot, c.queries)
        return draw_episodes(class_set(self.data_root, c.test_split), c.episodes, c.way, c.shot, c.queries, rng, "episode")
