"""Vinyals et al. 2016's Omniglot split, the benchmark of the few-shot literature since: every
character in four rotations (0, 90, 180, 270 degrees), each rotation a class of its own, images at
28x28; classes split into train (4,112), val (688), trainval (4,800) and test (1,692).

A class is named ``Alphabet/characterNN/rotDDD`` as in the split files. In an ImageSet built here a
rotated alphabet is an alphabet of its own, ``Alphabet@rotDDD`` (the way the twin trainers already
treat rotated alphabets), so an image's identity reads ``Angelic@rot090/character01/05``.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fewshot_bench.data.datasets import _require, data_root
from fewshot_bench.errors import UserError
from fewshot_bench.imageset import ImageSet, to_tensor

SPLIT_DIR = "omniglot/vinyals_split"
PARTS = ("train", "val", "trainval", "test")
SIZE = 28  # the benchmark's images: Omniglot's 105x105 downsampled (area averaging), grey 0-255
ROTATIONS = (0, 90, 180, 270)
EXPECTED_CLASSES = {"train": 4112, "val": 688, "trainval": 4800, "test": 1692}


def read_split(root: Path | None, part: str) -> list[tuple[str, str, int]]:
    """The classes of one part: (alphabet, character, rotation in degrees), in file order."""
    if part not in PARTS:
        raise UserError(f"unknown Vinyals split part {part!r}; valid: {', '.join(PARTS)}")
    path = _require(data_root(root), f"{SPLIT_DIR}/{part}.txt")
    classes = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            alphabet, character, rotation = line.strip().split("/")
            degrees = int(rotation.removeprefix("rot"))
        except ValueError:
            raise UserError(f"{path}:{number}: expected Alphabet/characterNN/rotDDD, got {line!r}") from None
        if degrees not in ROTATIONS:
            raise UserError(f"{path}:{number}: rotation must be one of {ROTATIONS}, got {degrees}")
        classes.append((alphabet, character, degrees))
    return classes


def rotated_name(alphabet: str, degrees: int) -> str:
    return f"{alphabet}@rot{degrees:03d}"


def base_alphabet(name: str) -> str:
    """``Angelic@rot090`` -> ``Angelic``: the Omniglot alphabet a (rotated) class comes from."""
    return name.split("@rot")[0]


def rotate(images: np.ndarray, degrees: int) -> np.ndarray:
    """Counter-clockwise, as PIL's ``Image.rotate`` turns them in Snell et al.'s loader."""
    return np.rot90(images, degrees // 90, axes=(-2, -1))


@functools.lru_cache(maxsize=8)
def _class_set(root: str, part: str) -> ImageSet:
    from fewshot_bench.data.omniglot import omniglot

    images = omniglot(Path(root))
    meta = images.meta
    by_character = meta.groupby(["alphabet", "character"]).indices
    classes = read_split(Path(root), part)
    rows = []  # each class's Omniglot rows, in drawer order
    for alphabet, character, _ in classes:
        if (alphabet, character) not in by_character:
            raise UserError(f"the Vinyals split names {alphabet}/{character}, which Omniglot under {root} lacks")
        rows.append(np.sort(by_character[(alphabet, character)]))
    # each character downsampled once, however many of its rotations the part holds; the part's
    # images and meta built as whole arrays (a frame per class took seconds)
    order = np.concatenate(rows)
    characters = np.unique(order)
    small = to_tensor(images.images[characters], SIZE).mul(255).round().to(torch.uint8).numpy()
    out_images = small[np.searchsorted(characters, order)]
    counts = [len(index) for index in rows]
    degrees = np.repeat([d for _, _, d in classes], counts)
    for turned in ROTATIONS[1:]:
        at = degrees == turned
        out_images[at] = rotate(out_images[at], turned)
    out_meta = pd.DataFrame({"split": f"vinyals_{part}",
                             "alphabet": np.repeat([rotated_name(a, d) for a, _, d in classes], counts),
                             "character": np.repeat([c for _, c, _ in classes], counts),
                             "drawer": meta["drawer"].to_numpy()[order],
                             "label": np.repeat(np.arange(len(classes), dtype=np.int64), counts),
                             "rotation": degrees.astype(np.int64)})
    return ImageSet(np.ascontiguousarray(out_images), out_meta)


def class_set(root: Path | None, part: str) -> ImageSet:
    """All images of one part's classes at 28x28, rotated; decoded once per process."""
    return _class_set(str(data_root(root)), part)


def characters(images: ImageSet) -> set[tuple[str, str]]:
    """The Omniglot characters (alphabet, character) an ImageSet's images show, rotations aside."""
    meta = images.meta[["alphabet", "character"]].drop_duplicates()
    return {(base_alphabet(a), c) for a, c in zip(meta["alphabet"], meta["character"])}


def verify_split(root: Path | None) -> list[str]:
    """Problems with the split files: checksums, class counts, and test classes in train or val."""
    from fewshot_bench.data.datasets import REMOTE_FILES, file_digest

    problems = []
    published = {r.name: r.sha256 for r in REMOTE_FILES}
    for part in PARTS:
        name = f"{SPLIT_DIR}/{part}.txt"
        if file_digest(data_root(root) / name) != published[name]:
            problems.append(f"{part}.txt is not the published file (SHA-256 differs)")
    parts = {part: read_split(root, part) for part in PARTS}
    for part, classes in parts.items():
        if len(classes) != EXPECTED_CLASSES[part]:
            problems.append(f"{part}: {len(classes)} classes, expected {EXPECTED_CLASSES[part]}")
    chars = {part: {(a, c) for a, c, _ in classes} for part, classes in parts.items()}
    if chars["test"] & chars["trainval"]:
        problems.append(f"{len(chars['test'] & chars['trainval'])} test characters also in trainval")
    if chars["val"] & chars["train"]:
        problems.append(f"{len(chars['val'] & chars['train'])} val characters also in train")
    return problems
