"""Nearest neighbour on raw pixels (Koch 2015, Table 2: 21.7%; Table 3: 26.5%)."""
from dataclasses import dataclass

import torch

from fewshot_bench.api import METHODS, Method


@dataclass
class PixelConfig:
    input_size: int | None = None  # None: compare at the protocol's own resolution


@METHODS.register("pixel_1nn")
class Pixel1NN(Method):
    summary = "1-nearest neighbour on raw pixels (Euclidean distance)"
    Config = PixelConfig

    def score(self, queries, support):
        return -torch.cdist(queries.flatten(1), support.flatten(1))

    def score_pairs(self, first, second):
        return -(first - second).flatten(1).norm(dim=1)
