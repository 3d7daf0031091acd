"""Koch 2015's affine distortions, drawn and applied on batched tensors.

Each image independently gets T = (theta, rho_x, rho_y, s_x, s_y, t_x, t_y), each component
switched on with probability 0.5: rotation theta in [-10, 10] degrees, shear rho in
[-0.3, 0.3], scale s in [0.8, 1.2], translation t in [-2, 2] pixels of a 105-pixel image
(scaled to the image's own size).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AffineRanges:
    rotation_deg: float = 10.0
    shear: float = 0.3
    scale: tuple[float, float] = (0.8, 1.2)
    translation_px: float = 2.0  # at 105x105
    probability: float = 0.5
    reference_size: int = 105


def _uniform(n, lo, hi, gen):
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=_device(gen))


def _device(generator: torch.Generator | None) -> torch.device:
    """Where a generator draws: its own device (a CUDA generator draws on the GPU, no host work)."""
    return generator.device if generator is not None else torch.device("cpu")


def draw_affine(n: int, ranges: AffineRanges = AffineRanges(), generator: torch.Generator | None = None):
    """The components of n random transforms: dict of (n,) tensors, identity where switched off."""
    def maybe(values, identity):
        on = torch.rand(n, generator=generator, device=_device(generator)) < ranges.probability
        return torch.where(on, values, torch.full_like(values, identity))

    r = ranges
    return {
        "theta": maybe(_uniform(n, -r.rotation_deg, r.rotation_deg, generator) * math.pi / 180, 0.0),
        "shear_x": maybe(_uniform(n, -r.shear, r.shear, generator), 0.0),
        "shear_y": maybe(_uniform(n, -r.shear, r.shear, generator), 0.0),
        "scale_x": maybe(_uniform(n, *r.scale, generator), 1.0),
        "scale_y": maybe(_uniform(n, *r.scale, generator), 1.0),
        "shift_x": maybe(_uniform(n, -r.translation_px, r.translation_px, generator), 0.0),
        "shift_y": maybe(_uniform(n, -r.translation_px, r.translation_px, generator), 0.0),
    }


def affine_matrices(params: dict, reference_size: int = 105) -> torch.Tensor:
    """(n, 2, 3) forward maps in normalised coordinates: x' = R(theta) Shear Scale x + t."""
    n = len(params["theta"])
    cos, sin = torch.cos(params["theta"]), torch.sin(params["theta"])
    rot = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    one = torch.ones(n, device=cos.device)
    shear = torch.stack([torch.stack([one, params["shear_x"]], 1), torch.stack([params["shear_y"], one], 1)], 1)
    scale = torch.diag_embed(torch.stack([params["scale_x"], params["scale_y"]], 1))
    linear = rot @ shear @ scale
    # pixels of a reference-size image -> normalised [-1, 1] units (align_corners=False)
    shift = torch.stack([params["shift_x"], params["shift_y"]], 1) * 2 / reference_size
    return torch.cat([linear, shift[:, :, None]], 2)


def distort(images: torch.Tensor, generator: torch.Generator | None = None,
            ranges: AffineRanges = AffineRanges()) -> torch.Tensor:
    """Random affine distortion of each image in (N, 1, H, W) (or (N, H, W)), its transforms drawn by
    ``generator`` where it lives (on the images' device, the whole path stays there)."""
    squeeze = images.dim() == 3
    x = images[:, None] if squeeze else images
    forward = affine_matrices(draw_affine(len(x), ranges, generator), ranges.reference_size)
    # grid_sample pulls pixels: it needs the inverse map (output -> input coordinates)
    linear_inv = torch.linalg.inv_ex(forward[:, :, :2]).inverse  # inv's own error check waits on a GPU
    inverse = torch.cat([linear_inv, -(linear_inv @ forward[:, :, 2:])], 2).to(x.device, x.dtype)
    grid = F.affine_grid(inverse, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0] if squeeze else out
