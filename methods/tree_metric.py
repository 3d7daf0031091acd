"""A hierarchical, metric-based classifier over another method's embeddings.

The support set of a trial is organised as a tree by agglomerative clustering of its
embeddings; a query descends from the root, at each node taking the child whose centroid
is nearer under that level's metric, down to one support image. Compare it with the flat
nearest-neighbour rule of the base method on the same embeddings and trials
(``bench compare tree_metric protonet --protocol omniglot20``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.cluster.hierarchy import linkage, to_tree
from scipy.spatial.distance import cdist

from fewshot_bench.api import METHODS, Method
from fewshot_bench.config import require
from fewshot_bench.errors import UserError

METRICS = ("euclidean", "sqeuclidean", "cosine", "cityblock")


@dataclass
class TreeMetricConfig:
    base: str = "protonet"  # a method with embed(images) -> (N, F)
    base_preset: str = "twin"
    linkage: str = "average"
    metrics: tuple[str, ...] = ("euclidean",)  # per tree level from the root; the last repeats

    def check(self):
        require(self.linkage in ("average", "complete", "single", "ward"),
                f"linkage must be average, complete, single or ward, got {self.linkage!r}")
        require(all(m in METRICS for m in self.metrics), f"metrics must be among {METRICS}, got {self.metrics}")


def descend(query: np.ndarray, support: np.ndarray, root, metrics) -> np.ndarray:
    """Scores (S,) for one query: how deep each support image stays on the query's path."""
    score = np.zeros(len(support))
    node, depth = root, 0
    while not node.is_leaf():
        metric = metrics[min(depth, len(metrics) - 1)]
        children = (node.get_left(), node.get_right())
        leaves = [c.pre_order() for c in children]
        centroids = np.stack([support[ids].mean(0) for ids in leaves])
        nearer = int(np.argmin(cdist(query[None], centroids, metric=metric)[0]))
        depth += 1
        score[leaves[nearer]] = depth
        node = children[nearer]
    return score


@METHODS.register("tree_metric")
class TreeMetric(Method):
    takes_colour = True
    summary = "hierarchical metric classifier: queries descend an agglomerative tree of support embeddings"
    Config = TreeMetricConfig
    presets = {"cpu": {}, "tiny": {"base_preset": "tiny"}}
    default_preset = "cpu"
    progress = None

    @property
    def input_size(self):
        return self.base_.input_size if hasattr(self, "base_") else None

    def fit(self, background, validation=None):
        cls = METHODS.get(self.config.base)
        self.base_ = cls(cls.make_config(self.config.base_preset), seed=self.seed,
                         preset=self.config.base_preset, work_dir=self.work_dir)
        if not hasattr(self.base_, "embed"):
            raise UserError(f"tree_metric needs a base method with embeddings; {self.config.base!r} has none")
        self.base_.progress = self.progress
        self.base_.fit(background, validation)  # reuses the base's checkpoint when it exists
        return self

    def score(self, queries, support):
        q = self.base_.embed(queries).double().numpy()
        s = self.base_.embed(support).double().numpy()
        root = to_tree(linkage(s, method=self.config.linkage, metric="euclidean"))
        depth = np.stack([descend(x, s, root, self.config.metrics) for x in q])
        # deeper agreement first; among equals the flat distance breaks ties
        flat = cdist(q, s)
        return torch.as_tensor(depth - flat / (flat.max() + 1e-9), dtype=torch.float32)

    def score_pairs(self, first, second):
        a, b = self.base_.embed(first), self.base_.embed(second)
        return -(a - b).pow(2).sum(1)
