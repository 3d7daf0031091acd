"""Koch 2015's same/different verification task on the test alphabets and test drawers.

Balanced pairs: a "same" pair is one character by two drawers, a "different" pair two
characters of the same alphabet. The decision threshold on the method's pair scores is
chosen on pairs from the validation alphabets (drawers 13-16), never on test pairs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from fewshot_bench.api import PROTOCOLS, PairSet
from fewshot_bench.config import require
from fewshot_bench.evaluation import rounded, scoring_threads, summarise
from fewshot_bench.imageset import ImageSet
from fewshot_bench.data.omniglot import OmniglotBackgroundProtocol, image_ids, omniglot
from fewshot_bench.data.splits import (TEST_ALPHABETS, TEST_DRAWERS, TRAIN_DRAWERS,
                                  VALIDATION_ALPHABETS, VALIDATION_DRAWERS)


@dataclass(frozen=True)
class VerificationConfig:
    pairs: int = 10_000
    threshold_pairs: int = 2_000
    batch: int = 256

    def check(self):
        require(self.pairs >= 2 and self.pairs % 2 == 0, f"pairs must be even and >= 2, got {self.pairs}")
        require(self.threshold_pairs >= 2, f"threshold_pairs must be >= 2, got {self.threshold_pairs}")
        require(self.batch >= 1, f"batch must be >= 1, got {self.batch}")


def sample_pairs(images: ImageSet, alphabets, drawers, n: int, rng) -> tuple[PairSet, np.ndarray]:
    """n balanced pairs (first half same, second half different) and each pair's alphabet."""
    meta = images.meta
    keep = meta["alphabet"].isin(alphabets) & meta["drawer"].isin(drawers)
    sub = meta[keep]
    groups = {k: g.index.to_numpy() for k, g in sub.groupby(["alphabet", "character"])}
    by_alphabet = {}
    for (alphabet, character) in groups:
        by_alphabet.setdefault(alphabet, []).append(character)
    names = sorted(by_alphabet)
    first, second, same, alphabet_of = [], [], [], []
    for i in range(n):
        alphabet = names[rng.integers(len(names))]
        chars = by_alphabet[alphabet]
        if i < n // 2:
            a, b = rng.choice(groups[(alphabet, chars[rng.integers(len(chars))])], 2, replace=False)
        else:
            ca, cb = rng.choice(len(chars), 2, replace=False)
            a, b = rng.choice(groups[(alphabet, chars[ca])]), rng.choice(groups[(alphabet, chars[cb])])
        first.append(a), second.append(b), same.append(i < n // 2), alphabet_of.append(alphabet)
    pairs = PairSet(images.images[first], images.images[second], np.array(same),
                    first_ids=image_ids(meta, first), second_ids=image_ids(meta, second))
    return pairs, np.array(alphabet_of)


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The score threshold (same if score > t) with the highest accuracy on these pairs."""
    s = np.sort(np.unique(scores))
    candidates = np.concatenate([[s[0] - 1], (s[:-1] + s[1:]) / 2, [s[-1] + 1]])
    acc = [((scores > t) == same).mean() for t in candidates]
    return float(candidates[int(np.argmax(acc))])


@PROTOCOLS.register("verification")
class Verification(OmniglotBackgroundProtocol):
    summary = "Koch 2015 same/different verification, 10,000 balanced test pairs"
    version = "1"
    Config = VerificationConfig
    ci_unit = "alphabets"

    background_drawers = TRAIN_DRAWERS

    def pairs(self, trial_seed: int):
        rng = np.random.default_rng([trial_seed, 2])
        return sample_pairs(omniglot(self.data_root), TEST_ALPHABETS, TEST_DRAWERS, self.config.pairs, rng)

    def threshold_pairs(self, seed: int = 0):
        rng = np.random.default_rng([seed, 13])
        return sample_pairs(omniglot(self.data_root), VALIDATION_ALPHABETS, VALIDATION_DRAWERS,
                            self.config.threshold_pairs, rng)[0]

    def pair_scores(self, method, pairs: PairSet, progress=None) -> np.ndarray:
        out = []
        if progress:
            progress.start(-(-len(pairs.same) // self.config.batch))
        with torch.inference_mode(), scoring_threads():
            for i in range(0, len(pairs.same), self.config.batch):
                sl = slice(i, i + self.config.batch)
                scores = method.score_pairs(method.prepare(pairs.first[sl]), method.prepare(pairs.second[sl]))
                out.append(scores.float().cpu().numpy())
                if progress:
                    progress.advance()
        scores = np.concatenate(out)
        if not np.isfinite(scores).all():
            raise RuntimeError(f"{method.name}.score_pairs returned non-finite scores")
        return scores

    def evaluate(self, method, trial_seed: int, progress=None) -> dict:
        start = time.perf_counter()
        held = self.threshold_pairs()
        threshold = best_threshold(self.pair_scores(method, held), held.same)
        pairs, alphabet_of = self.pairs(trial_seed)
        scores = self.pair_scores(method, pairs, progress)
        predicted_same = scores > threshold
        result = summarise((predicted_same == pairs.same).astype(int), alphabet_of,
                           predicted_same.astype(int), time.perf_counter() - start)
        # what a picture of a pair needs: who drew what, the truth and the score against the threshold
        result.update({"threshold": threshold, "same": pairs.same.astype(int).tolist(), "first": pairs.first_ids,
                       "second": pairs.second_ids, "pair_scores": rounded(scores.tolist())})
        return result
