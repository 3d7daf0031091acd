"""Modified Hausdorff distance (Dubuisson & Jain 1994) between inked-pixel coordinate sets.

Each image's ink coordinates are centred on their mean; MHD(A, B) is the larger of the two
mean nearest-neighbour distances; score = -MHD. Every image is turned into points once per
trial set, and each pair's squared distances come from one small matmul of augmented
coordinates ([a, |a|^2, 1] . [-2b, 1, |b|^2] = |a - b|^2), which stays in cache.
"""
from dataclasses import dataclass

import torch

from fewshot_bench.api import METHODS, Method
from fewshot_bench.config import require


@dataclass
class MHDConfig:
    input_size: int | None = None  # None: the protocol's resolution (105 for Omniglot)
    threshold: float = 0.5  # a pixel is ink above this

    def check(self):
        require(0 < self.threshold < 1, f"threshold must be in (0, 1), got {self.threshold}")


def centred_points(image: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(H, W) -> ink coordinates (P, 2) centred on their mean (one point at 0 for a blank image)."""
    p = torch.nonzero(image > threshold).float()
    if len(p) == 0:
        return torch.zeros(1, 2)
    return p - p.mean(0)


def augmented(points: torch.Tensor, side: str) -> torch.Tensor:
    sq = (points * points).sum(1, keepdim=True)
    one = torch.ones_like(sq)
    return torch.cat([points, sq, one], 1) if side == "left" else torch.cat([-2 * points, one, sq], 1)


def mhd(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """MHD of two augmented point sets (see `augmented`)."""
    d2 = left @ right.T
    ab = d2.amin(1).clamp_min(0).sqrt().mean()
    ba = d2.amin(0).clamp_min(0).sqrt().mean()
    return torch.maximum(ab, ba)


@METHODS.register("mhd")
class ModifiedHausdorff(Method):
    summary = "modified Hausdorff distance between centred ink coordinates (Lake's baseline)"
    Config = MHDConfig

    def _points(self, images, side):
        return [augmented(centred_points(im, self.config.threshold), side) for im in images]

    def score(self, queries, support):
        left, right = self._points(queries, "left"), self._points(support, "right")
        return -torch.stack([torch.stack([mhd(a, b) for b in right]) for a in left])

    def score_pairs(self, first, second):
        pairs = zip(self._points(first, "left"), self._points(second, "right"))
        return -torch.stack([mhd(a, b) for a, b in pairs])
