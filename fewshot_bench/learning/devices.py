"""Where networks train and score: ``bench --device`` (or ``FEWSHOT_BENCH_DEVICE``) for every config
that leaves its ``device`` at "auto"; "auto" itself means a CUDA GPU where there is one, else the CPU."""
from __future__ import annotations

import os

import torch

from fewshot_bench.errors import UserError

ENV = "FEWSHOT_BENCH_DEVICE"
CHOICES = ("auto", "cpu", "cuda")


def choose_device(name: str) -> None:
    """Make ``name`` the device of every "auto" config in this process and the ones it starts; a CUDA
    device on a machine without one is a user error, raised before any work."""
    if name not in CHOICES:
        raise UserError(f"--device must be one of {', '.join(CHOICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: this machine has no CUDA GPU that torch can use "
                        f"(torch {torch.__version__}, {'a CPU build' if torch.version.cuda is None else 'CUDA ' + torch.version.cuda}); "
                        "run with --device cpu, or install a CUDA build of torch on a GPU machine")
    os.environ[ENV] = name


def resolve(configured: str) -> torch.device:
    """The torch device of a config's ``device`` option: an explicit one as it is; "auto" as ``--device``
    chose, else a CUDA GPU where there is one, else the CPU."""
    name = configured if configured != "auto" else os.environ.get(ENV, "auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)
