"""Tiny synthetic data in the official layouts, for fast tests."""
from __future__ import annotations

import gzip
import io
import struct
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def glyph(seed: int, size: int = 105) -> np.ndarray:
    """A random stroke image: uint8 (size, size), ink = 1."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.uint8)
    y, x = rng.integers(20, size - 20, size=2)
    for _ in range(60):
        y = int(np.clip(y + rng.integers(-2, 3), 2, size - 3))
        x = int(np.clip(x + rng.integers(-2, 3), 2, size - 3))
        img[y - 1:y + 2, x - 1:x + 2] = 1
    return img


def png_bytes(ink: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(((1 - ink) * 255).astype(np.uint8)).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


def omniglot_zip(path: Path, top: str, alphabets: dict[str, int], drawers: int = 20, size: int = 105) -> Path:
    """A zip in the official layout: top/<Alphabet>/characterNN/XXXX_YY.png (``size`` pixels square)."""
    with zipfile.ZipFile(path, "w") as zf:
        code = 1
        for a, (alphabet, n_chars) in enumerate(alphabets.items()):
            for c in range(1, n_chars + 1):
                for d in range(1, drawers + 1):
                    zf.writestr(f"{top}/{alphabet}/character{c:02d}/{code:04d}_{d:02d}.png",
                                png_bytes(glyph(a * 1000 + c * 20 + d, size)))
                code += 1
    return path


def lake_runs_folder(root: Path, runs: int = 2, way: int = 4, shuffle_lines: bool = True) -> Path:
    """Runs in Lake's layout; item k's true class is class (k * 3 % way) + 1."""
    rng = np.random.default_rng(0)
    for r in range(1, runs + 1):
        run = root / f"run{r:02d}"
        (run / "training").mkdir(parents=True)
        (run / "test").mkdir()
        lines = []
        for k in range(1, way + 1):
            cls = (k * 3) % way + 1
            base = glyph(r * 100 + cls)
            (run / "training" / f"class{cls:02d}.png").write_bytes(png_bytes(base))
            (run / "test" / f"item{k:02d}.png").write_bytes(png_bytes(base))
            lines.append(f"run{r:02d}/test/item{k:02d}.png run{r:02d}/training/class{cls:02d}.png")
        if shuffle_lines:
            lines = [lines[i] for i in rng.permutation(len(lines))]
        (run / "class_labels.txt").write_text("\n".join(lines) + "\n")
    return root


def idx_gz(path: Path, array: np.ndarray) -> Path:
    header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
    return path
