"""An example third-party method: cosine similarity of downsampled, blurred pixels."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fewshot_bench.api import Method


@dataclass
class Config:
    input_size: int = 28  # images arrive at this size, float in [0, 1], ink = 1


class CosinePixels(Method):
    summary = "cosine similarity of 28x28 pixels (example plugin package)"
    Config = Config

    def score(self, queries, support):  # (Q, H, W), (S, H, W) -> (Q, S), higher = more alike
        q = F.normalize(queries.flatten(1), dim=1)
        s = F.normalize(support.flatten(1), dim=1)
        return q @ s.T
