"""A training's state between epochs: checkpoints keyed by (config, data, seed), so reruns reuse
finished trainings and interrupted ones resume, and early stopping's best weights."""
from __future__ import annotations

import io
from pathlib import Path

import torch

from fewshot_bench.imageset import ImageSet
from fewshot_bench.keys import fingerprint
from fewshot_bench.records import write_atomic


def data_fingerprint(images: ImageSet) -> str:
    return fingerprint(images.images, images.meta.astype(str).to_numpy().ravel().tolist())


class Checkpoint:
    """One training's state on disk: saved atomically after each epoch, loaded to resume."""

    def __init__(self, folder: Path | None, key: str):
        self.path = Path(folder) / f"{key}.pt" if folder else None

    def load(self) -> dict | None:
        if self.path is None or not self.path.is_file():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception:  # a damaged checkpoint is retrained, not fatal
            return None

    def save(self, state: dict) -> None:
        if self.path is None:
            return
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomic(self.path, buffer.getvalue())


# ------------------------------------------------------------------ early stopping

class EarlyStopping:
    """Keeps the best epoch's weights; says stop after ``patience`` epochs without improvement."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best_score = -float("inf")
        self.best_epoch = -1
        self.best_state = None

    def update(self, epoch: int, score: float, model: torch.nn.Module) -> bool:
        """Record an epoch's validation score; True when training should stop."""
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return epoch - self.best_epoch >= self.patience

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best_score, self.best_epoch, self.best_state = state["best_score"], state["best_epoch"], state["best_state"]
