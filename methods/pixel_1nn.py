"""Nearest neighbour on raw pixels (Koch 2015, Table 2: 21.7%; Table 3: 26.5%). With K shots
per class the nearest of all support images decides (Vinyals et al. 2016's "Pixels" baseline).

The paper gives no details; the default is Euclidean distance at the protocol's resolution
(105x105 binary images on Omniglot, 28x28 grey levels on MNIST). ``metric`` offers the variants
measured against the paper's figures (see results/README.md): ``l1``, ``cosine`` and ``dot``, the
unnormalised inner product, which favours inky images and is no distance.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fewshot_bench.api import METHODS, Method
from fewshot_bench.config import require

METRICS = ("euclidean", "l1", "cosine", "dot")


@dataclass
class PixelConfig:
    input_size: int | None = None  # None: compare at the protocol's own resolution
    metric: str = "euclidean"
    # compare 1 - x: the Omniglot PNGs' own polarity (white paper 1, ink 0) instead of the harness's
    # ink = 1. Under cosine it decides the score (the paper dominates the vector): Vinyals et al.'s
    # Pixels row (41.7 / 63.2 / 26.7 / 42.6) is matched by cosine on inverted images (42.3 / 61.5 /
    # 23.1 / 42.6 on trial seed 0), not on ink = 1 (50.0 / 74.1 / 30.9 / 55.6)
    invert: bool = False

    def check(self):
        require(self.metric in METRICS, f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")


@METHODS.register("pixel_1nn")
class Pixel1NN(Method):
    takes_colour = True
    summary = "1-nearest neighbour on raw pixels (Euclidean distance; --set metric=l1|cosine|dot)"
    Config = PixelConfig

    def config_dict(self) -> dict:
        out = super().config_dict()
        if not out["invert"]:  # added later: keys of the runs stored before it stay as they were
            del out["invert"]
        return out

    def prepare(self, images) -> torch.Tensor:
        x = super().prepare(images)
        return 1 - x if self.config.invert else x

    def score(self, queries, support):
        q, s = queries.flatten(1), support.flatten(1)
        metric = self.config.metric
        if metric == "cosine":
            return F.normalize(q, dim=1) @ F.normalize(s, dim=1).T
        if metric == "dot":
            return q @ s.T
        return -torch.cdist(q, s, p=1 if metric == "l1" else 2)

    def score_sets(self, sets):
        # K shots: the nearest neighbour among all support images decides, so every shot of a
        # class gets the class's best score (the evaluation's mean over shots then keeps it)
        out = []
        for queries, support, *rest in sets:
            scores = self.score(queries, support)
            if rest:
                classes = torch.as_tensor(rest[0])
                best = torch.full((len(scores), int(classes.max()) + 1), -torch.inf, dtype=scores.dtype)
                scores = best.scatter_reduce(1, classes.expand_as(scores), scores, "amax")[:, classes]
            out.append(scores)
        return out

    def score_pairs(self, first, second):
        a, b = first.flatten(1), second.flatten(1)
        metric = self.config.metric
        if metric == "cosine":
            return F.cosine_similarity(a, b, dim=1)
        if metric == "dot":
            return (a * b).sum(1)
        return -(a - b).norm(p=1 if metric == "l1" else 2, dim=1)
