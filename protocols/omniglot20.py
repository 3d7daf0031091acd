"""Koch et al. 2015's 20-way within-alphabet one-shot task on Omniglot (400 trials)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fewshot_bench.api import PROTOCOLS
from fewshot_bench.config import require
from fewshot_bench.data.omniglot import OmniglotBackgroundProtocol, omniglot, within_alphabet_sets
from fewshot_bench.data.splits import TEST_ALPHABETS, TEST_DRAWERS

@dataclass(frozen=True)
class Omniglot20Config:
    way: int = 20
    sets_per_alphabet: int = 2
    drawers: tuple[int, ...] = TEST_DRAWERS

    def check(self):
        require(2 <= self.way <= 20, f"way must be 2-20, got {self.way}")
        require(self.sets_per_alphabet >= 1, f"sets_per_alphabet must be >= 1, got {self.sets_per_alphabet}")
        require(len(set(self.drawers)) >= 2 and all(1 <= d <= 20 for d in self.drawers),
                f"drawers must be two or more of 1-20, got {self.drawers}")


@PROTOCOLS.register("omniglot20")
class Omniglot20(OmniglotBackgroundProtocol):
    summary = "Koch 2015 20-way within-alphabet one-shot, 10 test alphabets x 2 sets = 400 trials"
    version = "1"
    redrawn = True
    Config = Omniglot20Config

    def trial_sets(self, trial_seed: int):
        rng = np.random.default_rng([trial_seed, 20])
        return within_alphabet_sets(omniglot(self.data_root), TEST_ALPHABETS, self.config.drawers, rng,
                                    self.config.sets_per_alphabet, self.config.way)
