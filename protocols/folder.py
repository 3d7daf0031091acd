"""Your own images as a few-shot benchmark: N-way K-shot episodes over the test classes of a folder
of class folders (``root/class/*``) or of groups of class folders (``root/group/class/*``).

Methods learn on the train classes and early-stop on episodes of the val classes; no val or test
class reaches training (the runner checks it through ``check_background``). The split is a seeded
draw of the classes (``split``: train,val,test fractions; ``split_seed``), or the user's own
files (``split_files``: a folder with train.txt, val.txt, test.txt in Vinyals' format); the run
record keeps the split's classes. Episodes take their classes from all test classes, or from one
group at a time (``within_group``, as Koch's within-alphabet task).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fewshot_bench.api import PROTOCOLS, Protocol
from fewshot_bench.config import require, require_minimums
from fewshot_bench.data.episodes import draw_episodes, episode_rng
from fewshot_bench.data.folders import class_keys, load_folder, part_set, read_split_files, scan, split_classes
from fewshot_bench.errors import UserError
from fewshot_bench.keys import fingerprint

VALIDATION_EPISODES = 16  # 16 one-shot episodes of up to 20 classes: 320 validation trials at most


@functools.lru_cache(maxsize=4)
def _loaded(root: str, image_size: int, channels: int, invert: str):
    """A folder's images, decoded (or read from the cache) once per process."""
    return load_folder(Path(root), image_size, channels, invert)


@dataclass(frozen=True)
class FolderConfig:
    root: str = ""
    way: int = 5
    shot: int = 1
    queries: int = 1  # per class and episode
    episodes: int = 1000
    within_group: bool = False  # each episode's classes from one group (root/group/class layout)
    image_size: int = 84  # images are decoded once at this size; a method then resizes to its own
    channels: int = 1  # 1: grey; 3: colour (methods that take colour: learned networks, pixel_1nn)
    invert: str = "auto"  # grey only: "auto" inverts mostly-bright images (dark ink on white); yes; no
    split: tuple[float, ...] = (0.6, 0.2, 0.2)  # train, val, test fractions of the classes
    split_seed: int = 0
    split_files: str = ""  # a folder with train.txt, val.txt, test.txt (overrides split)

    def check(self):
        require(bool(self.root), "protocol folder needs root: --protocol-set root=PATH (a folder of class folders)")
        require_minimums(self, way=2, shot=1, queries=1, episodes=1)
        require(self.image_size >= 8, f"image_size must be >= 8, got {self.image_size}")
        require(self.channels in (1, 3), f"channels must be 1 or 3, got {self.channels}")
        require(self.invert in ("auto", "yes", "no"), f"invert must be auto, yes or no, got {self.invert!r}")
        require(len(self.split) == 3 and all(f >= 0 for f in self.split) and abs(sum(self.split) - 1) < 1e-6
                and self.split[2] > 0, f"split must be three fractions (train,val,test) summing to 1 with a "
                                       f"test part, got {','.join(map(str, self.split))}")


@PROTOCOLS.register("folder")
class Folder(Protocol):
    summary = "your own images: N-way K-shot episodes over the test classes of a folder of class folders"
    version = "1"
    Config = FolderConfig
    ci_unit = "episodes"

    def images(self):
        c = self.config
        return _loaded(str(Path(c.root).expanduser().resolve()), c.image_size, c.channels, c.invert)

    @functools.cached_property
    def _split(self) -> dict[str, list[tuple[str, int]]]:
        """Each part's classes, as (class key, rotation in degrees): read or drawn once per protocol."""
        c = self.config
        if c.split_files:
            return read_split_files(Path(c.split_files))
        keys = [cls.key for cls in scan(Path(c.root)).classes]
        return {part: [(k, 0) for k in classes] for part, classes in split_classes(keys, c.split, c.split_seed).items()}

    def part(self, name: str):
        return part_set(self.images(), self._split[name], name)

    def background(self):
        return self.part("train")

    def check_background(self, background) -> None:
        """No val or test class (in any rotation) among the classes a method trains on."""
        split = self._split
        held = {key for part in ("val", "test") for key, _ in split[part]}
        leaked = set(class_keys(background.meta)) & held
        if leaked:
            raise RuntimeError(f"{len(leaked)} held-out classes of the folder reached training data, "
                               f"e.g. {sorted(leaked)[:3]}")

    def validation(self, seed: int = 0):
        val = self.part("val")
        classes = val.meta["label"].nunique()
        if classes < 2:
            return None
        rng = np.random.default_rng([seed, 688])
        return draw_episodes(val, VALIDATION_EPISODES, min(20, classes), 1, 1, rng, "val")

    def tuning_sets(self, trials: int, seed: int = 0):
        """Episodes of this protocol's shape (``way`` capped by the val classes) from the val classes
        alone, at least ``trials`` queries in all: what bench tune scores a setting on."""
        c = self.config
        val = self.part("val")
        classes = val.meta["label"].nunique()
        if classes < 2:
            raise UserError(f"the val split holds {classes} class; tuning needs two or more: give the val part "
                            "more classes (split)")
        way = min(c.way, classes)
        return draw_episodes(val, max(1, -(-trials // (way * c.queries))), way, c.shot, c.queries,
                             np.random.default_rng([seed, 3200]), "val")

    def check_feasible(self, method) -> None:
        """The test split holds ``way`` classes of ``shot + queries`` images, and colour images go
        to a method that takes them: checked before any training."""
        if self.config.channels == 3 and not method.takes_colour:
            raise UserError(f"method {method.name} works on grey images only; run it with --protocol-set channels=1")
        self._check_test(self.part("test"))

    def trial_sets(self, trial_seed: int):
        c = self.config
        test = self.part("test")
        self._check_test(test)
        rng = episode_rng(trial_seed, c.way, c.shot, c.queries)
        return draw_episodes(test, c.episodes, c.way, c.shot, c.queries, rng, "episode",
                             within="alphabet" if c.within_group else None)

    def _check_test(self, test) -> None:
        c = self.config
        counts = test.meta.groupby("label").size()
        names = test.meta.groupby("label")["character"].first()
        if len(counts) < c.way:
            raise UserError(f"the test split holds {len(counts)} classes; way={c.way} needs at least {c.way}: "
                            "lower way (--protocol-set way=N) or give the test part more classes (split)")
        short = counts[counts < c.shot + c.queries]
        if len(short):
            raise UserError(f"test class {names[short.index[0]]!r} has {short.iloc[0]} images; episodes need "
                            f"shot + queries = {c.shot + c.queries} per class: lower shot or queries")
        if c.within_group:
            per_group = test.meta.groupby("alphabet")["label"].nunique()
            if (per_group < c.way).all():
                raise UserError(f"no test group holds way={c.way} classes (largest: {per_group.max()}); "
                                "lower way or drop within_group")

    def provenance(self) -> dict:
        """The split a run was evaluated on: each part's classes and a hash of them."""
        split = {part: [f"{k}/rot{d:03d}" if d else k for k, d in classes] for part, classes in self._split.items()}
        return {"split": split, "split_hash": fingerprint(split)}

    def config_dict(self) -> dict:
        out = super().config_dict()
        out["root"] = str(Path(self.config.root).expanduser().resolve())
        return out

