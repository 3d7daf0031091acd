"""A user's own images as a few-shot dataset: a folder of class folders (``root/class/*.png``, the
torchvision ImageFolder layout) or of group folders of class folders (``root/group/class/*``, as
Omniglot's alphabets). Images of any size and mode are decoded once, resized to ``image_size`` and
cached by the files' content; classes are split into train/val/test by a seeded draw or by the
user's split files (Vinyals' format: one ``group/class`` or ``class`` a line, ``/rotDDD`` for a
rotation of it as a class of its own).
"""
from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from fewshot_bench.data.datasets import user_cache_dir
from fewshot_bench.data.vinyals_split import base_alphabet, rotate
from fewshot_bench.errors import UserError
from fewshot_bench.imageset import ImageSet, to_tensor
from fewshot_bench.records import write_atomic

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
FLAT_GROUP = "all"  # the group of every class in a folder of class folders
PARTS = ("train", "val", "test")
_ROTATION = re.compile(r"^rot(\d{3})$")


def class_key(group: str, name: str) -> str:
    """How split files and records name a class: ``group/class``, or ``class`` in a flat folder; a
    turned copy of a class (group ``group@rotDDD``) is keyed as the class it turns."""
    group = base_alphabet(group)
    return name if group == FLAT_GROUP else f"{group}/{name}"


def class_keys(meta: pd.DataFrame) -> list[str]:
    """Each image's class key (see `class_key`)."""
    return [class_key(g, c) for g, c in zip(meta["alphabet"], meta["character"])]


@dataclass
class FolderClass:
    group: str
    name: str
    files: list[Path]
    others: list[Path] = field(default_factory=list)  # files that are not images by their suffix

    @property
    def key(self) -> str:
        """How split files and records name the class: ``group/class``, or ``class`` in a flat folder."""
        return class_key(self.group, self.name)


@dataclass
class FolderLayout:
    root: Path
    grouped: bool
    classes: list[FolderClass]

    def problems(self) -> list[str]:
        """What would stop the folder from loading, one line each."""
        out = [f"{c.key}: {len(c.others)} file(s) that are not images, e.g. {c.others[0].name}"
               for c in self.classes if c.others]
        out += [f"{c.key}: no images" for c in self.classes if not c.files]
        return out


def scan(root: Path) -> FolderLayout:
    """The classes under ``root``, in name order; a one-line error where the layout is neither."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"no folder at {root}; pass a folder holding one folder per class (root/class/*.png) "
                        "or per group and class (root/group/class/*.png)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UserError(f"{root} holds no class folders; expected root/class/*.png or root/group/class/*.png")
    nested = [any(q.is_dir() for q in p.iterdir()) for p in folders]
    if any(nested) and not all(nested):
        flat = next(p for p, n in zip(folders, nested) if not n)
        deep = next(p for p, n in zip(folders, nested) if n)
        raise UserError(f"{root} mixes layouts: {deep.name}/ holds folders (a group) but {flat.name}/ does not "
                        "(a class); use root/class/* or root/group/class/* throughout")
    grouped = all(nested)
    pairs = [(g.name, c) for g in folders for c in sorted(q for q in g.iterdir() if q.is_dir())] if grouped \
        else [(FLAT_GROUP, c) for c in folders]
    classes = []
    for group, folder in pairs:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        classes.append(FolderClass(group, folder.name, images, [p for p in files if p not in images]))
    return FolderLayout(root, grouped, classes)


def _content_key(layout: FolderLayout, image_size: int, channels: int, invert: str) -> str:
    h = hashlib.sha256(f"{image_size}/{channels}/{invert}".encode())
    for c in layout.classes:
        for path in c.files:
            h.update(str(path.relative_to(layout.root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:20]


def _decode(path: Path, channels: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L" if channels == 1 else "RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"{path} is not an image that can be read ({exc}); remove it or replace it") from None


def load_folder(root: Path, image_size: int = 84, channels: int = 1, invert: str = "auto",
                cache: bool = True) -> ImageSet:
    """Every class's images as one ImageSet: images (N, S, S) uint8 grey, or (N, 3, S, S) colour;
    meta: split "folder", alphabet (the group), character (the class), drawer (the image's place
    in its class, from 1), label, file. Grey images that are mostly bright (dark strokes on white,
    as Omniglot's PNGs) are inverted so that the background is 0 (``invert``: auto, yes, no)."""
    layout = scan(root)
    problems = layout.problems()
    if problems:
        raise UserError(f"{layout.root}: {problems[0]}" + (f" (and {len(problems) - 1} more problems; "
                                                           f"`bench data check {layout.root}` lists them)"
                                                           if len(problems) > 1 else ""))
    cache_file = user_cache_dir() / "folders" / f"{_content_key(layout, image_size, channels, invert)}.npz"
    rows = [(c.group, c.name, d + 1, label, str(p.relative_to(layout.root)))
            for label, c in enumerate(layout.classes) for d, p in enumerate(c.files)]
    meta = pd.DataFrame(rows, columns=["alphabet", "character", "drawer", "label", "file"]).assign(split="folder")
    if cache and cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as z:
            return ImageSet(z["images"], meta)
    # the polarity is the dataset's, judged on each class's first image: inverted before resizing, so
    # that resized pixels are those of the built-in datasets (ink = 1 before averaging)
    flip = channels == 1 and (invert == "yes" or (
        invert == "auto" and np.mean([_decode(c.files[0], 1).mean() for c in layout.classes]) > 127.5))
    images = np.stack([_resized(255 - px if flip else px, image_size)
                       for c in layout.classes for px in (_decode(p, channels) for p in c.files)])
    if cache:
        buffer = io.BytesIO()
        np.savez(buffer, images=images)
        write_atomic(cache_file, buffer.getvalue())
    return ImageSet(images, meta)


def _resized(pixels: np.ndarray, size: int) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 -> (S, S) or (3, S, S) uint8, area-averaged down (bilinear up), as
    the built-in datasets are resized."""
    x = pixels if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)
    if x.shape[-2:] == (size, size):
        return x
    flat = x.reshape(-1, *x.shape[-2:])
    out = to_tensor(flat.astype(np.float32) / 255.0, size).mul(255).round().clamp(0, 255).byte().numpy()
    return out.reshape(*x.shape[:-2], size, size)


# ------------------------------------------------------------------ splits

def split_classes(keys: list[str], fractions: tuple[float, float, float], seed: int) -> dict[str, list[str]]:
    """A seeded split of the class keys into train/val/test by ``fractions`` (each part keeps the
    classes in their folder order); every part holds at least one class where there are enough."""
    order = np.random.default_rng([seed, 28]).permutation(len(keys))
    n_val = int(round(fractions[1] * len(keys)))
    n_test = int(round(fractions[2] * len(keys)))
    n_val, n_test = max(n_val, fractions[1] > 0), max(n_test, fractions[2] > 0)
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    return {part: [keys[i] for i in sorted(parts[part])] for part in PARTS}


def read_split_files(folder: Path) -> dict[str, list[tuple[str, int]]]:
    """A user's split: ``train.txt``, ``val.txt`` (optional) and ``test.txt`` in ``folder``, one class
    key a line, ``/rotDDD`` after it for the class turned counter-clockwise by DDD degrees."""
    folder = Path(folder).expanduser()
    out = {}
    for part in PARTS:
        path = folder / f"{part}.txt"
        if not path.is_file():
            if part == "val":
                out[part] = []
                continue
            raise UserError(f"split files: {path} is missing; write one class a line (group/class or class)")
        classes = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            head, _, last = line.rpartition("/")
            m = _ROTATION.match(last)
            degrees = int(m.group(1)) if m else 0
            if m and degrees not in (0, 90, 180, 270):
                raise UserError(f"{path}: rotation must be rot000, rot090, rot180 or rot270, got {line!r}")
            classes.append((head if m else line, degrees))
        out[part] = classes
    return out


def part_set(images: ImageSet, classes: list[tuple[str, int]], part: str) -> ImageSet:
    """The images of one part's classes, in the part's order, each (class, rotation) a class; a
    rotated class's group is ``group@rotDDD`` (as Vinyals' rotated alphabets)."""
    meta = images.meta
    by_key = pd.Series(np.arange(len(meta))).groupby(class_keys(meta)).indices
    out_images, out_meta = [], []
    for label, (key, degrees) in enumerate(classes):
        if key not in by_key:
            raise UserError(f"the {part} split names class {key!r}, which the folder lacks")
        rows = np.sort(by_key[key])
        out_images.append(rotate(images.images[rows], degrees) if degrees else images.images[rows])
        sub = meta.iloc[rows].assign(label=label, rotation=degrees, split=f"folder_{part}")
        if degrees:
            sub = sub.assign(alphabet=sub["alphabet"] + f"@rot{degrees:03d}")
        out_meta.append(sub)
    if not out_images:
        return ImageSet(images.images[:0], meta.iloc[:0].assign(rotation=0))
    return ImageSet(np.ascontiguousarray(np.concatenate(out_images)), pd.concat(out_meta, ignore_index=True))


# ------------------------------------------------------------------ bench data check

def describe(root: Path, split: tuple[float, float, float] = (0.6, 0.2, 0.2), seed: int = 0,
             way: int = 5, shot: int = 1, queries: int = 1, sample: int = 200) -> dict:
    """What a folder holds and what would go wrong as a ``folder`` protocol: classes, images per
    class, image sizes and modes (read from up to ``sample`` images' headers), the seeded split's
    parts, and problems, one line each."""
    layout = scan(root)
    counts = np.array([len(c.files) for c in layout.classes])
    files = [p for c in layout.classes for p in c.files]
    picked = [files[i] for i in np.linspace(0, len(files) - 1, min(sample, len(files))).astype(int)] if files else []
    sizes, modes, unreadable = {}, {}, []
    for path in picked:
        try:
            with Image.open(path) as im:
                sizes[im.size] = sizes.get(im.size, 0) + 1
                modes[im.mode] = modes.get(im.mode, 0) + 1
        except (UnidentifiedImageError, OSError):
            unreadable.append(path)
    parts = split_classes([c.key for c in layout.classes], split, seed)
    per_class = dict(zip((c.key for c in layout.classes), counts))
    problems = layout.problems() + [f"{p.relative_to(layout.root)}: not an image that can be read" for p in unreadable]
    need = shot + queries
    short = [k for k in parts["test"] if per_class[k] < need]
    if short:
        problems.append(f"{len(short)} test class(es) hold fewer than shot + queries = {need} images, e.g. {short[0]}")
    if len(parts["test"]) < way:
        problems.append(f"the test part holds {len(parts['test'])} classes, fewer than way = {way}")
    return {"root": str(layout.root), "layout": "root/group/class/*" if layout.grouped else "root/class/*",
            "groups": len({c.group for c in layout.classes}) if layout.grouped else 0,
            "classes": len(layout.classes), "images": int(counts.sum()),
            "images_per_class": (int(counts.min()), float(np.median(counts)), int(counts.max())) if len(counts) else (0, 0, 0),
            "sizes": {f"{w}x{h}": n for (w, h), n in sorted(sizes.items(), key=lambda kv: -kv[1])},
            "modes": modes, "sampled": len(picked),
            "split": {part: len(keys) for part, keys in parts.items()}, "problems": problems}
