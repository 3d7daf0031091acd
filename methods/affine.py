"""The affine model of Lake et al. (Koch 2015 Table 2: 81.8%): align each support image to
the query by the best of a grid of global affine transforms, score by the distance left.

Every image is first centred on its ink's centre of mass (translation); then each support
image is warped by every transform of a grid of rotations, scales and shears (one batched
grid_sample per trial set), all images are Gaussian-blurred, and the score of a (query,
support) pair is minus the smallest Euclidean distance over the transforms.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fewshot_bench.api import METHODS, Method
from fewshot_bench.config import require


@dataclass
class AffineConfig:
    input_size: int = 40  # working resolution
    rotations_deg: tuple[float, ...] = (-15.0, -7.5, 0.0, 7.5, 15.0)
    scales: tuple[float, ...] = (0.85, 1.0, 1.15)  # on each axis
    shears: tuple[float, ...] = (-0.2, 0.0, 0.2)  # on each axis
    blur_sigma: float = 1.5  # pixels at the working resolution

    def check(self):
        require(self.input_size >= 8, f"input_size must be >= 8, got {self.input_size}")
        require(self.blur_sigma >= 0, f"blur_sigma must be >= 0, got {self.blur_sigma}")
        require(all(s > 0 for s in self.scales), f"scales must be > 0, got {self.scales}")


def transform_grid(cfg: AffineConfig) -> torch.Tensor:
    """(T, 2, 2) linear maps: rotation x shear x scale for every combination in the grid."""
    mats = []
    for deg, sx, sy, hx, hy in itertools.product(cfg.rotations_deg, cfg.scales, cfg.scales, cfg.shears, cfg.shears):
        t = math.radians(deg)
        rot = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        mats.append(rot @ torch.tensor([[1.0, hx], [hy, 1.0]]) @ torch.diag(torch.tensor([sx, sy])))
    return torch.stack(mats)


def centre_ink(images: torch.Tensor) -> torch.Tensor:
    """Shift each (N, H, W) image so its ink's centre of mass is the image centre."""
    n, h, w = images.shape
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h)
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w)
    mass = images.sum((1, 2)).clamp_min(1e-6)
    cy = (images.sum(2) * ys).sum(1) / mass
    cx = (images.sum(1) * xs).sum(1) / mass
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = cx, cy
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    return F.grid_sample(images[:, None], grid, align_corners=False)[:, 0]


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return images
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    out = F.conv2d(images[:, None], k.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(out, k.view(1, 1, -1, 1), padding=(radius, 0))[:, 0]


@METHODS.register("affine")
class AffineModel(Method):
    summary = "affine model (Lake et al.): best global affine alignment of each support, blurred L2"
    Config = AffineConfig

    def fit(self, background, validation=None):
        self.grid_ = transform_grid(self.config)  # nothing to learn: the transforms are a fixed grid

    def _warped_support(self, support: torch.Tensor) -> torch.Tensor:
        """(S, H, W) -> (S, T, H*W): every support image under every transform, blurred."""
        grid = getattr(self, "grid_", None)
        if grid is None:
            grid = self.grid_ = transform_grid(self.config)
        s, h, w = support.shape
        t = len(grid)
        theta = torch.cat([grid, torch.zeros(t, 2, 1)], 2).repeat(s, 1, 1)  # (S*T, 2, 3)
        images = support.repeat_interleave(t, 0)[:, None]
        warped = F.grid_sample(images, F.affine_grid(theta, [s * t, 1, h, w], align_corners=False), align_corners=False)
        return gaussian_blur(warped[:, 0], self.config.blur_sigma).view(s, t, h * w)

    def score(self, queries, support):
        q = gaussian_blur(centre_ink(queries), self.config.blur_sigma).flatten(1)  # (Q, P)
        warped = self._warped_support(centre_ink(support))  # (S, T, P)
        d = torch.cdist(q, warped.flatten(0, 1))  # (Q, S*T)
        return -d.view(len(q), *warped.shape[:2]).amin(2)

    def score_pairs(self, first, second):
        return torch.stack([self.score(a[None], b[None])[0, 0] for a, b in zip(first, second)])
