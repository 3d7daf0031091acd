"""Koch et al. 2015's convolutional siamese network (weighted L1 + sigmoid head).

Presets:
- ``paper``: the paper's network at 105x105 and its training: balanced same/different pairs
  from the 30 background alphabets and drawers 1-12, affine distortions x8, binary
  cross-entropy with layer-wise L2, SGD with layer-wise learning rates and momenta (learning
  rate decays 1% per epoch, momentum rises linearly from 0.5), up to 200 epochs with early
  stopping on the 320 validation trials (patience 20). Needs a GPU to finish in hours.
- ``mnist``: the paper's reduced network for MNIST: Omniglot downsampled to 35x35.
- ``cpu``: the same kind of twin network (conv layers, sigmoid embedding, weighted-L1 head)
  sized for a 2-core laptop and trained on the one-shot trial itself; see ``CPU_PRESET``.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fewshot_bench.api import METHODS, Method
from fewshot_bench.augment import distort
from fewshot_bench.config import require
from fewshot_bench.imageset import to_tensor
from fewshot_bench.splits import ALL_DRAWERS, TRAIN_DRAWERS
from fewshot_bench.training import (CharacterIndex, Checkpoint, EarlyStopping, balanced_pairs,
                                    data_fingerprint, fingerprint, one_shot_accuracy, trial_batch)


@dataclass
class ConvSiameseConfig:
    # network
    input_size: int = 105
    channels: tuple[int, ...] = (64, 128, 128, 256)
    kernels: tuple[int, ...] = (10, 7, 4, 4)
    padding: str = "valid"  # "same" keeps feature maps large on small inputs
    batch_norm: bool = False
    fc_units: int = 4096
    init: str = "paper"  # "paper": Koch's normal initialisations; "default": PyTorch's
    # data
    train_drawers: tuple[int, ...] = TRAIN_DRAWERS
    distortions: int = 8  # pairs: distorted copies per pair; trials: >0 distorts every image
    rotations: bool = False  # trials: 90-degree rotations of whole alphabets as new alphabets
    # objective: "pairs" (the paper's binary cross-entropy) or "trials" (softmax over a trial's supports)
    objective: str = "pairs"
    # pairs objective (paper): SGD, values per layer (conv1..convN, fc, head); one value = all layers
    pairs: int = 150_000
    batch_size: int = 128
    lr: tuple[float, ...] = (1e-2,)
    momentum: tuple[float, ...] = (0.9,)  # final momentum per layer
    momentum_start: float = 0.5
    momentum_ramp_epochs: int = 20  # momentum rises linearly to its final value over these epochs
    l2: tuple[float, ...] = (2e-4,)
    lr_decay: float = 0.01  # per epoch
    # trials objective (cpu): Adam with a cosine schedule over all steps
    steps_per_epoch: int = 500
    alphabets_per_batch: int = 4
    way: int = 20
    drawers_per_character: int = 4
    adam_lr: float = 1e-3
    weight_decay: float = 0.0
    # schedule
    epochs: int = 200
    patience: int = 20  # epochs without validation improvement before stopping
    device: str = "auto"  # "auto": CUDA when available, else CPU

    def check(self):
        n = len(self.channels)
        require(n >= 1 and len(self.kernels) == n, f"channels {self.channels} and kernels {self.kernels} need the same length")
        require(self.padding in ("valid", "same"), f"padding must be 'valid' or 'same', got {self.padding!r}")
        require(self.objective in ("pairs", "trials"), f"objective must be 'pairs' or 'trials', got {self.objective!r}")
        require(self.init in ("paper", "default"), f"init must be 'paper' or 'default', got {self.init!r}")
        require(self.input_size >= 8, f"input_size must be >= 8, got {self.input_size}")
        require(self.fc_units >= 1 and self.epochs >= 1 and self.patience >= 1, "fc_units, epochs, patience must be >= 1")
        require(self.pairs >= 2 and self.batch_size >= 2, "pairs and batch_size must be >= 2")
        require(self.distortions >= 0, f"distortions must be >= 0, got {self.distortions}")
        require(2 <= self.way and 2 <= self.drawers_per_character <= 20, "way >= 2, drawers_per_character 2-20")
        require(all(1 <= d <= 20 for d in self.train_drawers), f"train_drawers must be in 1-20, got {self.train_drawers}")
        require(self.drawers_per_character <= len(self.train_drawers) or self.objective == "pairs",
                "drawers_per_character cannot exceed the number of train_drawers")
        for name in ("lr", "momentum", "l2"):
            values = getattr(self, name)
            require(len(values) in (1, n + 2), f"{name} needs 1 or {n + 2} values (conv layers, fc, head), got {len(values)}")


PAPER_PRESET = {}  # the dataclass defaults are the paper's settings
MNIST_PRESET = {"input_size": 35, "channels": (64, 128, 128), "kernels": (5, 3, 3), "fc_units": 1024,
                "padding": "same"}
# cpu: 28x28 inputs ('same' padding, batch norm, a 1024-unit sigmoid embedding, the weighted-L1
# head), trained on the one-shot trial itself: within-alphabet batches of 20 characters by 4
# drawers, each query's 20 support scores under a softmax, all 20 background drawers, 90-degree
# rotated alphabets as extra alphabets, Koch's affine distortions on every image; Adam, cosine.
CPU_PRESET = {
    "input_size": 28, "channels": (32, 64, 128, 256), "kernels": (3, 3, 3, 3), "padding": "same",
    "batch_norm": True, "fc_units": 1024, "init": "default", "objective": "trials",
    "train_drawers": ALL_DRAWERS, "rotations": True, "distortions": 1,
    "steps_per_epoch": 200, "alphabets_per_batch": 4, "way": 20, "drawers_per_character": 4,
    "adam_lr": 2e-3, "epochs": 20, "patience": 20,
}
TINY_PRESET = {**CPU_PRESET, "input_size": 16, "channels": (8, 16), "kernels": (3, 3), "fc_units": 32,
               "steps_per_epoch": 3, "alphabets_per_batch": 2, "way": 5, "epochs": 2, "patience": 2}


def per_layer(values: tuple, n: int) -> list:
    return list(values) * n if len(values) == 1 else list(values)


class SiameseNet(nn.Module):
    """Twin embedding (conv stack, fully connected sigmoid layer) and the weighted-L1 head."""

    def __init__(self, cfg: ConvSiameseConfig):
        super().__init__()
        layers, c_in = [], 1
        for i, (c_out, k) in enumerate(zip(cfg.channels, cfg.kernels)):
            block = [nn.Conv2d(c_in, c_out, k, padding="same" if cfg.padding == "same" else 0, bias=not cfg.batch_norm)]
            if cfg.batch_norm:
                block.append(nn.BatchNorm2d(c_out))
            block.append(nn.ReLU(inplace=True))
            if i < len(cfg.channels) - 1:  # the paper pools after every conv layer but the last
                block.append(nn.MaxPool2d(2))
            layers.append(nn.Sequential(*block))
            c_in = c_out
        self.convs = nn.ModuleList(layers)
        with torch.no_grad():
            flat = self._features(torch.zeros(1, 1, cfg.input_size, cfg.input_size)).shape[1]
        self.fc = nn.Linear(flat, cfg.fc_units)
        self.head = nn.Linear(cfg.fc_units, 1)  # alpha_j weights |h1_j - h2_j|, plus a bias
        if cfg.init == "paper":
            self._paper_init()

    def _paper_init(self):
        for conv in self.convs:
            nn.init.normal_(conv[0].weight, 0.0, 1e-2)
            if conv[0].bias is not None:
                nn.init.normal_(conv[0].bias, 0.5, 1e-2)
        for layer in (self.fc, self.head):
            nn.init.normal_(layer.weight, 0.0, 2e-1)
            nn.init.normal_(layer.bias, 0.5, 1e-2)

    def _features(self, x):
        for conv in self.convs:
            x = conv(x)
        return x.flatten(1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) -> (N, fc_units) sigmoid features."""
        return torch.sigmoid(self.fc(self._features(x)))

    def logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """All pairs of embeddings (A, F) x (B, F) -> (A, B) logits of 'same character'.

        sum_j alpha_j |a_j - b_j| is split by the sign of alpha into two weighted L1 distances
        (|alpha_j| |a_j - b_j| = ||alpha_j| a_j - |alpha_j| b_j|): exact, and torch.cdist never
        materialises the (A, B, F) difference tensor, so training steps run 2.4x faster.
        """
        alpha = self.head.weight[0]
        pos, neg = torch.relu(alpha), torch.relu(-alpha)
        return torch.cdist(a * pos, b * pos, p=1) - torch.cdist(a * neg, b * neg, p=1) + self.head.bias

    def pair_logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Matched pairs (n, F), (n, F) -> (n,) logits."""
        return self.head((a - b).abs()).squeeze(-1)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters per layer (conv1..convN, fc, head) for layer-wise SGD settings."""
        return [list(c.parameters()) for c in self.convs] + [list(self.fc.parameters()), list(self.head.parameters())]


@METHODS.register("conv_siamese")
class ConvSiamese(Method):
    summary = "Koch 2015 convolutional siamese network (weighted L1 + sigmoid), trained on background alphabets"
    Config = ConvSiameseConfig
    presets = {"paper": PAPER_PRESET, "mnist": MNIST_PRESET, "cpu": CPU_PRESET, "tiny": TINY_PRESET}
    default_preset = "cpu"
    progress = None  # set by the runner: a StageProgress

    # ---------------------------------------------------------------- scoring

    @property
    def device(self) -> torch.device:
        if self.config.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.config.device)

    @torch.inference_mode()
    def embed(self, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
        """Float images (N, H, W) -> embeddings (N, F), in batches, network in eval mode."""
        self.model_.eval()
        return torch.cat([self.model_.embed(images[i:i + batch, None].to(self.device))
                          for i in range(0, len(images), batch)])

    @torch.inference_mode()
    def score(self, queries, support):
        # each image is embedded once; the head compares all query x support pairs
        return self.model_.logits(self.embed(queries), self.embed(support)).float().cpu()

    @torch.inference_mode()
    def score_pairs(self, first, second):
        return self.model_.pair_logits(self.embed(first), self.embed(second)).float().cpu()

    # ---------------------------------------------------------------- training

    def fit(self, background, validation=None):
        cfg = self.config
        device = self.device
        background = background.select(background.meta["drawer"].isin(cfg.train_drawers))
        key = fingerprint(self.name, dataclasses.asdict(cfg), data_fingerprint(background), self.seed,
                          [fingerprint(ts.queries, ts.support, ts.answer) for ts in validation or []])
        checkpoint = Checkpoint(self.work_dir, f"{self.name}-{key}")
        self.checkpoint_key_ = key
        torch.manual_seed(self.seed)
        self.model_ = SiameseNet(cfg).to(device)
        state = checkpoint.load()
        if state and state.get("done"):
            self.model_.load_state_dict(state["best_state"])
            self.history_ = state["history"]
            self.reused_checkpoint_ = True
            return self
        self.reused_checkpoint_ = False

        data = to_tensor(background.images, cfg.input_size)[:, None].to(device)
        index = CharacterIndex(background)
        optimizer, scheduler = self._optimizer()
        stopper = EarlyStopping(cfg.patience)
        rng = np.random.default_rng(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        history, start_epoch = [], 0
        pairs = balanced_pairs(index, cfg.pairs, rng) if cfg.objective == "pairs" else None
        if state:  # resume an interrupted training
            self.model_.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            stopper.load_state_dict(state["stopper"])
            rng.bit_generator.state = state["rng"]
            gen.set_state(state["gen"])
            history, start_epoch = state["history"], state["epoch"] + 1

        for epoch in range(start_epoch, cfg.epochs):
            tick = time.perf_counter()
            self._set_epoch_schedule(optimizer, epoch)
            self.model_.train()
            if cfg.objective == "pairs":
                loss = self._pairs_epoch(data, pairs, optimizer, rng, gen, epoch)
            else:
                loss = self._trials_epoch(data, index, optimizer, scheduler, rng, gen, epoch)
            acc = one_shot_accuracy(self.score, validation, self.prepare) if validation else float(epoch)
            stop = stopper.update(epoch, acc, self.model_)
            history.append({"epoch": epoch, "loss": loss, "validation_accuracy": acc if validation else None,
                            "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - tick})
            done = stop or epoch == cfg.epochs - 1
            checkpoint.save({"model": self.model_.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict() if scheduler is not None else None,
                             "stopper": stopper.state_dict(), "rng": rng.bit_generator.state,
                             "gen": gen.get_state(), "history": history, "epoch": epoch, "done": done,
                             "best_state": stopper.best_state})
            if done:
                break
        self.model_.load_state_dict(stopper.best_state)
        self.history_ = history
        return self

    def _optimizer(self):
        cfg = self.config
        groups = self.model_.layer_groups()
        if cfg.objective == "trials":
            opt = torch.optim.Adam(self.model_.parameters(), lr=cfg.adam_lr, weight_decay=cfg.weight_decay)
            total = cfg.epochs * cfg.steps_per_epoch
            return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        n = len(groups)
        lrs, l2s = per_layer(cfg.lr, n), per_layer(cfg.l2, n)
        # L2 penalty lambda * ||w||^2 has gradient 2 * lambda * w: SGD's weight_decay is 2 * lambda
        param_groups = [{"params": p, "lr": lr, "base_lr": lr, "weight_decay": 2 * l2, "momentum": cfg.momentum_start}
                        for p, lr, l2 in zip(groups, lrs, l2s)]
        return torch.optim.SGD(param_groups, lr=lrs[0], momentum=cfg.momentum_start), None

    def _set_epoch_schedule(self, optimizer, epoch: int) -> None:
        """Paper schedule: learning rate decays 1% per epoch; momentum rises linearly to mu_j."""
        cfg = self.config
        if cfg.objective != "pairs":
            return
        finals = per_layer(cfg.momentum, len(optimizer.param_groups))
        ramp = min(1.0, epoch / max(cfg.momentum_ramp_epochs, 1))
        for group, final in zip(optimizer.param_groups, finals):
            group["lr"] = group["base_lr"] * (1 - cfg.lr_decay) ** epoch
            group["momentum"] = cfg.momentum_start + (final - cfg.momentum_start) * ramp

    def _stage(self, label: str, total: int):
        if self.progress:
            self.progress.stage(label)
            self.progress.start(total)

    def _advance(self, info: str):
        if self.progress:
            self.progress.advance(info)

    def _pairs_epoch(self, data, pairs, optimizer, rng, gen, epoch) -> float:
        """One pass over the pairs, each seen once as drawn and ``distortions`` times distorted."""
        cfg = self.config
        rows, targets = pairs
        copies = 1 + cfg.distortions
        order = rng.permutation(len(rows) * copies)
        batches = range(0, len(order), cfg.batch_size)
        self._stage(f"epoch {epoch + 1}/{cfg.epochs} (pairs)", len(batches))
        losses = []
        for start in batches:
            sel = order[start:start + cfg.batch_size]
            pair, copy = sel % len(rows), sel // len(rows)
            x = data[torch.as_tensor(rows[pair].reshape(-1))].float()  # (2B, 1, H, W)
            distorted = torch.as_tensor(np.repeat(copy > 0, 2))
            if distorted.any():
                x[distorted] = distort(x[distorted], gen)
            h = self.model_.embed(x).view(len(sel), 2, -1)
            logit = self.model_.pair_logits(h[:, 0], h[:, 1])
            loss = F.binary_cross_entropy_with_logits(logit, torch.as_tensor(targets[pair], device=logit.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            self._advance(f"loss {np.mean(losses[-50:]):.3f}")
        return float(np.mean(losses))

    def _trials_epoch(self, data, index, optimizer, scheduler, rng, gen, epoch) -> float:
        """Steps of within-alphabet one-shot trials: every query (character c, drawer d) is scored
        against the ``way`` characters of each other drawer d' and trained with a softmax."""
        cfg = self.config
        self._stage(f"epoch {epoch + 1}/{cfg.epochs} (trials)", cfg.steps_per_epoch)
        losses = []
        for _ in range(cfg.steps_per_epoch):
            groups = trial_batch(index, cfg.alphabets_per_batch, cfg.way, cfg.drawers_per_character, rng)
            x = data[torch.as_tensor(np.concatenate([g.ravel() for g in groups]))].float()
            if cfg.rotations:  # a rotated alphabet is a new alphabet: one turn for all its images
                turns = rng.integers(4, size=len(groups))
                parts = torch.split(x, [g.size for g in groups])
                x = torch.cat([torch.rot90(p, int(k), dims=(2, 3)) for p, k in zip(parts, turns)])
            if cfg.distortions:
                x = distort(x, gen)
            h = self.model_.embed(x)
            loss, offset = 0.0, 0
            for g in groups:
                d, c = g.shape
                e = h[offset:offset + g.size]
                offset += g.size
                logits = self.model_.logits(e, e).view(d, c, d, c).permute(0, 2, 1, 3)  # (d, d', c, c')
                off_diagonal = ~torch.eye(d, dtype=torch.bool, device=logits.device)
                logits = logits[off_diagonal].reshape(-1, c)  # each row: a query vs one drawer's supports
                target = torch.arange(c, device=logits.device).repeat(d * (d - 1))
                loss = loss + F.cross_entropy(logits, target)
            loss = loss / len(groups)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            self._advance(f"loss {np.mean(losses[-50:]):.3f}")
        return float(np.mean(losses))
