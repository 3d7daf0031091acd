"""ImageSet: images as one uint8 array plus a metadata table, the unit data moves in."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F


@dataclass
class ImageSet:
    """``images``: (N, H, W) uint8 with ink = 1 (or 0-255), background = 0; colour: (N, 3, H, W).

    ``meta``: one row per image; Omniglot has columns split, alphabet, character,
    drawer and ``label`` (a global character id), MNIST has ``label`` (the digit).
    """

    images: np.ndarray
    meta: pd.DataFrame

    def __post_init__(self):
        if len(self.images) != len(self.meta):
            raise ValueError(f"{len(self.images)} images but {len(self.meta)} metadata rows")

    def __len__(self) -> int:
        return len(self.images)

    def select(self, mask) -> "ImageSet":
        idx = np.flatnonzero(np.asarray(mask))
        return ImageSet(self.images[idx], self.meta.iloc[idx].reset_index(drop=True))

    @property
    def alphabets(self) -> set[str]:
        return set(self.meta["alphabet"].unique()) if "alphabet" in self.meta else set()

    def tensor(self, size: int | None = None) -> torch.Tensor:
        """All images as float32 (N, size, size) in [0, 1]."""
        return to_tensor(self.images, size)


def as_batch(images: torch.Tensor) -> torch.Tensor:
    """Images as a network takes them: grey (N, H, W) -> (N, 1, H, W); colour (N, C, H, W) as they are."""
    return images[:, None] if images.dim() == 3 else images


def to_tensor(images, size: int | None = None) -> torch.Tensor:
    """uint8/float images (N, H, W) -> float32 tensor (N, size, size) in [0, 1]; colour images
    (N, C, H, W) -> (N, C, size, size).

    Downsizing uses area averaging (keeps thin strokes visible); upsizing is bilinear
    (Koch upsampled 28x28 MNIST to 35x35).
    """
    x = torch.as_tensor(np.asarray(images)).float()
    if x.max() > 1:
        x = x / 255.0
    if size is None or x.shape[-1] == size:
        return x.contiguous()
    mode = "area" if size < x.shape[-1] else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    batch = x if x.dim() == 4 else x[:, None]  # colour images come as (N, C, H, W)
    out = F.interpolate(batch, size=(size, size), mode=mode, **kwargs)
    return (out if x.dim() == 4 else out[:, 0]).contiguous()
