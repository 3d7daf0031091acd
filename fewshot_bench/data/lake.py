"""Lake et al.'s official 20 one-shot runs, read from their published layout (a folder or zip).

Layout: ``runNN/class_labels.txt`` with lines ``runNN/test/itemMM.png runNN/training/classKK.png``,
``runNN/training/classKK.png`` (support) and ``runNN/test/itemMM.png`` (queries). The zip in
brendenlake/omniglot (``python/one-shot-classification/all_runs.zip``) holds exactly this.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from fewshot_bench.api import TrialSet
from fewshot_bench.errors import UserError

RUNS_FILE = "omniglot/all_runs.zip"  # where `bench data fetch` puts the runs under the data root


class RunFiles:
    """Reads files by their path relative to the runs' root, from a folder or a zip."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            raise UserError(f"runs not found at {path}; run `bench data fetch` to download Lake's all_runs.zip, "
                            "or pass --runs with the folder or zip holding run01..run20")
        if path.is_dir():
            self.names = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
            self._read = lambda name: (path / name).read_bytes()
        else:
            try:
                zf = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
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


def read_run(files: RunFiles, labels_name: str) -> TrialSet:
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
    return TrialSet(queries, support, answer, PurePosixPath(labels_name).parent.name, query_ids=items,
                    support_ids=classes)


def load_runs(path: Path) -> list[TrialSet]:
    """Every run under ``path`` (a folder or zip), in run order."""
    files = RunFiles(Path(path).expanduser())
    return [read_run(files, name) for name in files.label_files()]


def verify_runs_file(runs: list[TrialSet], path: Path) -> list[str]:
    """Problems with the data root's runs: their shape, and the zip's bytes against Lake's file."""
    from fewshot_bench.data.datasets import REMOTE_FILES, file_digest

    published = next(r.sha256 for r in REMOTE_FILES if r.name == RUNS_FILE)
    digest = file_digest(path)
    problems = verify_runs(runs)
    if digest != published:
        problems.append(f"SHA-256 {digest[:12]}... is not Lake's published all_runs.zip ({published[:12]}...)")
    return problems


def verify_runs(runs: list[TrialSet]) -> list[str]:
    """Problems with loaded runs (empty when they have the official shape: 20 runs, 20 x 20)."""
    problems = []
    if len(runs) != 20:
        problems.append(f"{len(runs)} runs, expected 20")
    odd = [r.group for r in runs if r.queries.shape[0] != 20 or r.support.shape[0] != 20]
    if odd:
        problems.append(f"runs without 20 queries and 20 support images: {', '.join(odd)}")
    return problems
