"""Koch 2015's MNIST 10-versus-1 one-shot task: a query digit against one image of each digit."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewshot_bench.api import PROTOCOLS, TrialSet
from fewshot_bench.config import require
from fewshot_bench.data.datasets import data_root, load_mnist
from fewshot_bench.data.omniglot import OmniglotBackgroundProtocol


@functools.lru_cache(maxsize=2)
def _mnist(root: str):
    return load_mnist(Path(root))


@dataclass(frozen=True)
class Mnist10Config:
    trials: int = 400

    def check(self):
        require(self.trials >= 1, f"trials must be >= 1, got {self.trials}")


@PROTOCOLS.register("mnist10")
class Mnist10(OmniglotBackgroundProtocol):
    summary = "MNIST 10-versus-1 one-shot (Koch Table 3), 400 trials from the MNIST test set"
    version = "1"
    Config = Mnist10Config
    ci_unit = "trials"
    redrawn = True

    def trial_sets(self, trial_seed: int):
        mnist = _mnist(str(data_root(self.data_root)))
        labels = mnist.meta["label"].to_numpy()
        by_digit = [np.flatnonzero(labels == d) for d in range(10)]
        rng = np.random.default_rng([trial_seed, 10])
        sets = []
        for t in range(self.config.trials):
            query = rng.integers(len(labels))
            support = [rng.choice(by_digit[d][by_digit[d] != query]) for d in range(10)]
            sets.append(TrialSet(mnist.images[[query]], mnist.images[support], np.array([labels[query]]),
                                 f"trial{t + 1:03d}", query_ids=[f"mnist/{query}"],
                                 support_ids=[f"mnist/{i}" for i in support]))
        return sets
