"""Datasets: where they live, reading the official files, a decode-once cache, checks.

Omniglot zips are read directly (no extraction) and decoded once into a packed-bit cache
keyed by the zip's content hash; MNIST is read from the idx files (gz or not).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from fewshot_bench.errors import UserError
from fewshot_bench.imageset import ImageSet
from fewshot_bench.records import write_atomic

OMNIGLOT_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/{}"
VINYALS_URL = ("https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/data/omniglot/"
               "splits/vinyals/{}.txt")
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/{}",
    "http://yann.lecun.com/exdb/mnist/{}",
)


@dataclass(frozen=True)
class RemoteFile:
    dataset: str
    name: str  # path under the data root
    urls: tuple[str, ...]
    md5: str  # of the file as downloaded
    sha256: str | None = None  # checked too where the source publishes it


REMOTE_FILES = (
    RemoteFile("omniglot", "omniglot/images_background.zip",
               (OMNIGLOT_URL.format("images_background.zip"),), "68d2efa1b9178cc56df9314c21c6e718"),
    RemoteFile("omniglot", "omniglot/images_evaluation.zip",
               (OMNIGLOT_URL.format("images_evaluation.zip"),), "6b91aef0f799c5bb55b94e3f2daec811"),
    RemoteFile("mnist", "mnist/t10k-images-idx3-ubyte.gz",
               tuple(m.format("t10k-images-idx3-ubyte.gz") for m in MNIST_MIRRORS),
               "9fb629c4189551a2d022fa330f9573f3"),
    RemoteFile("mnist", "mnist/t10k-labels-idx1-ubyte.gz",
               tuple(m.format("t10k-labels-idx1-ubyte.gz") for m in MNIST_MIRRORS),
               "ec29112dd5afa0611ce80d1b7f02629c"),
    # Lake's official 20 one-shot runs, byte for byte (352,787 bytes)
    RemoteFile("omniglot", "omniglot/all_runs.zip", (OMNIGLOT_URL.format("one-shot-classification/all_runs.zip"),),
               "e8996daecdf12afeeb4a53a179f06b19",
               "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325"),
    # Vinyals et al. 2016's class split as Snell et al. 2017 published it (one class per line)
    *(RemoteFile("omniglot", f"omniglot/vinyals_split/{part}.txt", (VINYALS_URL.format(part),), md5, sha256)
      for part, md5, sha256 in (
          ("train", "433d1fcc2b20dcee2983ceb524586f7f",
           "984522c194c30fb678ce53304a160a42faf5403ad4f9a67010f32dd3a35738e0"),
          ("val", "78c535fa427b12b6596908376a0b3f34",
           "11f99e54faee3e26f53d3231c1cceac5bf7b8730e9be31cb6dab256551dc0c1a"),
          ("trainval", "888433268015439fd05fb6e9006ead50",
           "5276ae50c755596d0bff7f2284e85625695549a85ee6e36b6491ad1e5d1cc26a"),
          ("test", "43534e6d5f9e74acbb7de1b4874abad8",
           "845264cc5c156180828ccf17915668b17ee21424d0170df6e7d81676aa5d1204"))),
)

OMNIGLOT_ZIPS = {
    "background": "omniglot/images_background.zip",
    "evaluation": "omniglot/images_evaluation.zip",
    "background_small1": "omniglot/images_background_small1.zip",
    "background_small2": "omniglot/images_background_small2.zip",
}
_PNG = re.compile(r"^[^/]+/(?P<alphabet>[^/]+)/(?P<character>character\d+)/\d+_(?P<drawer>\d+)\.png$")


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """``--data-root``, else ``$FEWSHOT_BENCH_DATA``, else a per-user cache folder."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("FEWSHOT_BENCH_DATA"):
        return Path(os.environ["FEWSHOT_BENCH_DATA"]).expanduser()
    return user_cache_dir() / "data"


def user_cache_dir() -> Path:
    """``$FEWSHOT_BENCH_CACHE``, else ``$XDG_CACHE_HOME/fewshot-bench``, else ``~/.cache/fewshot-bench``."""
    if os.environ.get("FEWSHOT_BENCH_CACHE"):
        return Path(os.environ["FEWSHOT_BENCH_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fewshot-bench"


def _require(root: Path, name: str) -> Path:
    path = root / name
    if not path.is_file():
        raise UserError(
            f"missing {path}; run `bench data fetch --data-root {root}` to download it, "
            f"or point --data-root / $FEWSHOT_BENCH_DATA at a folder holding {name}"
        )
    return path


def file_digest(path: Path, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- Omniglot

def load_omniglot(root: Path, parts=("background", "evaluation"), cache: bool = True) -> ImageSet:
    """The named Omniglot zips as one ImageSet (meta: split, alphabet, character, drawer, label)."""
    sets = [_load_omniglot_zip(_require(root, OMNIGLOT_ZIPS[p]), p, cache) for p in parts]
    images = np.concatenate([s.images for s in sets])
    meta = pd.concat([s.meta for s in sets], ignore_index=True)
    keys = meta["split"] + "/" + meta["alphabet"] + "/" + meta["character"]
    meta["label"] = pd.factorize(keys)[0]
    return ImageSet(images, meta)


def _load_omniglot_zip(path: Path, split: str, cache: bool) -> ImageSet:
    cache_file = user_cache_dir() / "decoded" / f"{path.stem}-{file_digest(path)[:20]}.npz"
    if cache and cache_file.is_file():
        with np.load(cache_file, allow_pickle=False) as z:
            shape = tuple(z["shape"])
            images = np.unpackbits(z["bits"], count=int(np.prod(shape))).reshape(shape)
            meta = pd.DataFrame({
                "split": split,
                "alphabet": z["alphabet_names"][z["alphabet_codes"]],
                "character": z["character_names"][z["character_codes"]],
                "drawer": z["drawer"],
            })
        return ImageSet(images, meta)
    images, meta = decode_omniglot_zip(path, split)
    if cache:
        alphabet_codes, alphabet_names = pd.factorize(meta["alphabet"])
        character_codes, character_names = pd.factorize(meta["character"])
        buffer = io.BytesIO()
        np.savez(buffer, bits=np.packbits(images), shape=np.array(images.shape),
                 alphabet_codes=alphabet_codes, alphabet_names=alphabet_names.to_numpy(str),
                 character_codes=character_codes, character_names=character_names.to_numpy(str),
                 drawer=meta["drawer"].to_numpy())
        write_atomic(cache_file, buffer.getvalue())  # a concurrent reader never sees half a cache
    return ImageSet(images, meta)


def decode_omniglot_zip(path: Path, split: str) -> tuple[np.ndarray, pd.DataFrame]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(f"{path} is not a readable zip ({exc}); delete it and run `bench data fetch`") from exc
    rows, images = [], []
    with zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            m = _PNG.match(info.filename)
            if not m:
                continue
            try:
                with Image.open(io.BytesIO(zf.read(info))) as im:
                    ink = ~np.asarray(im.convert("1"), dtype=bool)  # PNGs: black strokes on white
            except Exception as exc:
                raise UserError(f"{path}: cannot decode {info.filename} ({exc}); the zip is corrupt, "
                                "delete it and run `bench data fetch`") from exc
            images.append(ink.astype(np.uint8))
            rows.append((split, m["alphabet"], m["character"], int(m["drawer"])))
    if not images:
        raise UserError(f"{path} holds no Omniglot PNGs in the official layout "
                        "(<root>/<Alphabet>/characterNN/XXXX_YY.png)")
    meta = pd.DataFrame(rows, columns=["split", "alphabet", "character", "drawer"])
    return np.stack(images), meta


# ---------------------------------------------------------------- MNIST

def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an unsigned-byte idx file")
        shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
        return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)
    except (OSError, EOFError, ValueError, struct.error) as exc:
        raise UserError(f"{path} is not a valid idx file ({exc}); delete it and run `bench data fetch`") from exc


def load_mnist(root: Path) -> ImageSet:
    """The MNIST test set: 10,000 images (28x28 uint8, 0-255) with ``label`` = digit."""
    images = read_idx(_require(root, "mnist/t10k-images-idx3-ubyte.gz"))
    labels = read_idx(_require(root, "mnist/t10k-labels-idx1-ubyte.gz"))
    if len(images) != len(labels):
        raise UserError(f"MNIST under {root}: {len(images)} images but {len(labels)} labels")
    return ImageSet(images, pd.DataFrame({"label": labels.astype(int)}))


# ---------------------------------------------------------------- content checks

EXPECTED = {
    "background": dict(alphabets=30, characters=964),
    "evaluation": dict(alphabets=20, characters=659),
}


def verify_omniglot(images: ImageSet) -> list[str]:
    """Problems with a loaded Omniglot set (empty when it matches the official content)."""
    problems = []
    for split, want in EXPECTED.items():
        meta = images.meta[images.meta["split"] == split]
        got_a = meta["alphabet"].nunique()
        got_c = meta.groupby(["alphabet", "character"]).ngroups
        if (got_a, got_c) != (want["alphabets"], want["characters"]):
            problems.append(f"{split}: {got_a} alphabets / {got_c} characters, "
                            f"expected {want['alphabets']} / {want['characters']}")
    drawers = images.meta.groupby(["split", "alphabet", "character"])["drawer"].nunique()
    if (drawers != 20).any():
        problems.append(f"{int((drawers != 20).sum())} characters without 20 drawers")
    if len(images) != 32460:
        problems.append(f"{len(images)} images, expected 32,460")
    return problems


def verify_mnist(images: ImageSet) -> list[str]:
    problems = []
    if images.images.shape != (10000, 28, 28):
        problems.append(f"images shape {images.images.shape}, expected (10000, 28, 28)")
    if sorted(images.meta["label"].unique()) != list(range(10)):
        problems.append("labels are not the digits 0-9")
    return problems
