"""Lake et al.'s official 20 one-shot runs, read from their published folder layout (or a zip).

Layout: ``runNN/class_labels.txt`` with lines ``runNN/test/itemMM.png runNN/training/classKK.png``,
``runNN/training/classKK.png`` (support) and ``runNN/test/itemMM.png`` (queries).
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from fewshot_bench.api import PROTOCOLS, TrialSet
from fewshot_bench.config import require
from fewshot_bench.errors import UserError
from fewshot_bench.omniglot import OmniglotBackgroundProtocol


@dataclass(frozen=True)
class LakeRunsConfig:
    runs: str = ""  # folder or zip holding run01..run20

    def check(self):
        require(bool(self.runs), "lake_runs needs the runs' location: pass --runs PATH "
                                 "(a folder or zip with run01..run20 from brendenlake/omniglot)")


class _Files:
    """Reads files by their path relative to the runs' root, from a folder or a zip."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            raise UserError(f"runs not found at {path}; pass --runs with the folder or zip holding run01..run20")
        if path.is_dir():
            self.names = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
            self._read = lambda name: (path / name).read_bytes()
        else:
            try:
                zf = zipfile.ZipFile(path)
            except zipfile.BadZipFile as exc:
                raise UserError(f"{path} is neither a folder nor a readable zip ({exc})") from exc
            self.names = {n for n in zf.namelist() if not n.endswith("/")}
            self._read = zf.read

    def label_files(self) -> list[str]:
        found = sorted(n for n in self.names if PurePosixPath(n).name == "class_labels.txt")
        if not found:
            raise UserError(f"no runNN/class_labels.txt under {self.path}; is this Lake's one-shot runs folder?")
        return found

    def read(self, name: str) -> bytes:
        if name not in self.names:
            raise UserError(f"{self.path}: missing image {name}")
        return self._read(name)

    def image(self, name: str) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(self.read(name))) as im:
                return (~np.asarray(im.convert("1"), dtype=bool)).astype(np.uint8)
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"{self.path}: cannot decode {name} ({exc})") from exc


def read_run(files: _Files, labels_name: str) -> TrialSet:
    """One run: queries in item order, support in class order, answers from class_labels.txt."""
    prefix = str(PurePosixPath(labels_name).parent.parent)  # paths in the file start at runNN/
    prefix = "" if prefix == "." else prefix + "/"
    pairs = []
    for number, line in enumerate(files.read(labels_name).decode().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or "/test/" not in parts[0] or "/training/" not in parts[1]:
            raise UserError(f"{files.path}/{labels_name} line {number}: expected "
                            f"'runNN/test/itemMM.png runNN/training/classKK.png', got {line.strip()!r}")
        pairs.append(parts)
    pairs.sort()  # the file may list test items in any order
    items = [q for q, _ in pairs]
    classes = sorted({c for _, c in pairs})
    queries = np.stack([files.image(prefix + q) for q in items])
    support = np.stack([files.image(prefix + c) for c in classes])
    answer = np.array([classes.index(c) for _, c in pairs])
    return TrialSet(queries, support, answer, PurePosixPath(labels_name).parent.name)


@PROTOCOLS.register("lake_runs")
class LakeRuns(OmniglotBackgroundProtocol):
    summary = "Lake et al.'s 20 official 20-way one-shot runs (400 trials), needs --runs PATH"
    version = "1"
    Config = LakeRunsConfig

    def trial_sets(self, trial_seed: int):
        # the runs are fixed: the trial seed draws nothing here
        files = _Files(Path(self.config.runs).expanduser())
        return [read_run(files, name) for name in files.label_files()]
