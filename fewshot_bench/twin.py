"""Twin networks trained on the background alphabets: Koch's siamese network and its relatives.

One configurable network (conv or MLP twin, optional sigmoid fc layer, weighted-L1 head or
Euclidean metric) and one trainer with two objectives: same/different pairs (the paper's
binary cross-entropy, or the contrastive loss) and one-shot trials (a softmax over each
query's supports). Methods (conv_siamese, mlp_siamese, contrastive_siamese, protonet) are
presets of this module.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import queue as queue_module
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .api import Method
from .augment import distort
from .config import require
from .evaluation import evaluate_trial_sets
from .imageset import to_tensor
from .splits import TRAIN_DRAWERS
from .training import (CharacterIndex, Checkpoint, EarlyStopping, balanced_pairs, data_fingerprint, fingerprint,
                       trial_batch)


@dataclass
class TwinConfig:
    # network: "conv" (channels, kernels) or "mlp" (hidden) twin, then an optional fully
    # connected sigmoid layer (fc_units, 0 = none) and the metric comparing two embeddings:
    # "weighted_l1" (Koch's head, sum_j alpha_j |h1_j - h2_j| + b) or "euclidean" (-||h1 - h2||^2)
    network: str = "conv"
    metric: str = "weighted_l1"
    hidden: tuple[int, ...] = (1024,)
    input_size: int = 105
    channels: tuple[int, ...] = (64, 128, 128, 256)
    kernels: tuple[int, ...] = (10, 7, 4, 4)
    strides: tuple[int, ...] = ()  # per conv layer; empty = all 1
    padding: str = "valid"  # "same" keeps feature maps large on small inputs
    batch_norm: bool = False
    fc_units: int = 4096
    init: str = "paper"  # "paper": Koch's normal initialisations; "default": PyTorch's
    # data
    train_drawers: tuple[int, ...] = TRAIN_DRAWERS
    distortions: int = 8  # pairs: distorted copies per pair; trials: >0 distorts every image
    rotations: bool = False  # trials: 90-degree rotations of whole alphabets as new alphabets
    reflections: bool = False  # trials: mirrored alphabets as new alphabets (with rotations: all 8 symmetries)
    # scoring: average the logits over symmetries applied to query and support alike: 1 = none,
    # 4 = the four 90-degree turns (for networks trained with rotations, alphabets they know),
    # 8 = the turns and their mirror images; a free ensemble, at 4x or 8x the scoring cost
    test_symmetries: int = 1
    # objective: "pairs" (same/different pairs, loss "bce" as in the paper or "contrastive" with
    # a margin, Hadsell et al. 2006) or "trials" (softmax over each query's supports)
    objective: str = "pairs"
    loss: str = "bce"
    margin: float = 1.0
    optimizer: str = "sgd"  # "sgd": the paper's layer-wise schedule; "adam": cosine over all steps
    # pairs objective (paper): SGD, values per layer (conv1..convN, fc, head); one value = all layers
    pairs: int = 150_000
    batch_size: int = 128
    # batches per epoch: 0 = one pass over the pairs and their distorted copies; N = exactly N
    # batches (fewer than a pass, or more passes over a small pool), a fixed budget for any pool
    pair_steps: int = 0
    lr: tuple[float, ...] = (1e-2,)
    momentum: tuple[float, ...] = (0.9,)  # final momentum per layer
    momentum_start: float = 0.5
    momentum_ramp_epochs: int = 20  # momentum rises linearly to its final value over these epochs
    l2: tuple[float, ...] = (2e-4,)
    lr_decay: float = 0.01  # per epoch
    # trials objective
    steps_per_epoch: int = 500
    alphabets_per_batch: int = 4
    way: int = 20
    drawers_per_character: int = 4
    adam_lr: float = 1e-3
    weight_decay: float = 0.0
    # ensemble: independently trained networks whose scores are averaged; on a CPU they train
    # side by side in processes (one thread each beats two threads on one small network)
    members: int = 1
    # training forward passes: "bf16" under bfloat16 autocast (with channels-last layout 1.7-1.9x
    # faster per epoch on an AVX512-BF16 CPU, slower where bf16 is emulated), "auto" = bf16 where
    # oneDNN supports it on the CPU, else fp32; evaluation always runs in float32
    precision: str = "fp32"
    # schedule
    epochs: int = 200
    patience: int = 20  # epochs without validation improvement before stopping
    # the weights kept: "best" = the best validation epoch's (early stopping, as in the paper);
    # "last" = the final epoch's (for a schedule that anneals to zero, where a few hundred
    # validation trials cannot tell apart epochs a point or less apart)
    keep: str = "best"
    device: str = "auto"  # "auto": CUDA when available, else CPU

    def check(self):
        require(self.network in ("conv", "mlp"), f"network must be 'conv' or 'mlp', got {self.network!r}")
        require(self.metric in ("weighted_l1", "euclidean"), f"metric must be 'weighted_l1' or 'euclidean', got {self.metric!r}")
        require(self.loss in ("bce", "contrastive"), f"loss must be 'bce' or 'contrastive', got {self.loss!r}")
        require(self.optimizer in ("sgd", "adam"), f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        require(self.loss != "bce" or self.metric == "weighted_l1" or self.objective == "trials",
                "the bce pair loss needs metric=weighted_l1 (the sigmoid head)")
        require(not self.strides or len(self.strides) == len(self.channels),
                f"strides {self.strides} need one value per conv layer (or none)")
        require(len(self.kernels) == len(self.channels) >= 1,
                f"channels {self.channels} and kernels {self.kernels} need the same length")
        require(self.members >= 1, f"members must be >= 1, got {self.members}")
        require(self.precision in ("fp32", "bf16", "auto"),
                f"precision must be 'fp32', 'bf16' or 'auto', got {self.precision!r}")
        require(self.test_symmetries in (1, 4, 8), f"test_symmetries must be 1, 4 or 8, got {self.test_symmetries}")
        require(self.keep in ("best", "last"), f"keep must be 'best' or 'last', got {self.keep!r}")
        require(self.margin > 0, f"margin must be > 0, got {self.margin}")
        n = self.n_layers
        require(self.padding in ("valid", "same"), f"padding must be 'valid' or 'same', got {self.padding!r}")
        require(self.objective in ("pairs", "trials"), f"objective must be 'pairs' or 'trials', got {self.objective!r}")
        require(self.init in ("paper", "default"), f"init must be 'paper' or 'default', got {self.init!r}")
        require(self.input_size >= 8, f"input_size must be >= 8, got {self.input_size}")
        for name, low in (("fc_units", 0), ("epochs", 1), ("patience", 1), ("pairs", 2), ("batch_size", 2),
                          ("pair_steps", 0), ("distortions", 0), ("way", 2), ("steps_per_epoch", 1),
                          ("alphabets_per_batch", 1)):
            require(getattr(self, name) >= low, f"{name} must be >= {low}, got {getattr(self, name)}")
        require(2 <= self.drawers_per_character <= 20,
                f"drawers_per_character must be 2-20, got {self.drawers_per_character}")
        require(all(1 <= d <= 20 for d in self.train_drawers), f"train_drawers must be in 1-20, got {self.train_drawers}")
        require(self.drawers_per_character <= len(self.train_drawers) or self.objective == "pairs",
                "drawers_per_character cannot exceed the number of train_drawers")
        for name in ("lr", "momentum", "l2"):
            values = getattr(self, name)
            require(len(values) in (1, n), f"{name} needs 1 or {n} values (one per layer: twin layers, fc, head), got {len(values)}")

    @property
    def n_layers(self) -> int:
        """Layers with their own SGD settings: twin layers, the fc layer and the head (if any)."""
        twin = len(self.channels) if self.network == "conv" else len(self.hidden)
        return twin + (self.fc_units > 0) + (self.metric == "weighted_l1")


def per_layer(values: tuple, n: int) -> list:
    return list(values) * n if len(values) == 1 else list(values)


class TwinNet(nn.Module):
    """Twin embedding (conv or MLP stack, optional fully connected sigmoid layer) and the metric."""

    def __init__(self, cfg: TwinConfig):
        super().__init__()
        self.metric = cfg.metric
        self.conv = cfg.network == "conv"
        self.layers = nn.ModuleList(self._conv_layers(cfg) if self.conv else self._mlp_layers(cfg))
        with torch.no_grad():
            flat = self._features(torch.zeros(1, 1, cfg.input_size, cfg.input_size)).shape[1]
        self.fc = nn.Linear(flat, cfg.fc_units) if cfg.fc_units else None
        dim = cfg.fc_units or flat
        # alpha_j weights |h1_j - h2_j|, plus a bias; the Euclidean metric has no parameters
        self.head = nn.Linear(dim, 1) if cfg.metric == "weighted_l1" else None
        if cfg.init == "paper":
            self._paper_init()
        if self.conv:
            self.to(memory_format=torch.channels_last)

    @staticmethod
    def _conv_layers(cfg):
        layers, c_in = [], 1
        strides = cfg.strides or (1,) * len(cfg.channels)
        for i, (c_out, k, stride) in enumerate(zip(cfg.channels, cfg.kernels, strides)):
            # 'same' padding (k // 2) keeps maps large; with stride 2 it halves them exactly
            block = [nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2 if cfg.padding == "same" else 0,
                               bias=not cfg.batch_norm)]
            if cfg.batch_norm:
                block.append(nn.BatchNorm2d(c_out))
            block.append(nn.ReLU(inplace=True))
            if i < len(cfg.channels) - 1:  # the paper pools after every conv layer but the last
                block.append(nn.MaxPool2d(2))
            layers.append(nn.Sequential(*block))
            c_in = c_out
        return layers

    @staticmethod
    def _mlp_layers(cfg):
        layers, n_in = [], cfg.input_size ** 2
        for i, n_out in enumerate(cfg.hidden):
            block = ([nn.Flatten()] if i == 0 else []) + [nn.Linear(n_in, n_out), nn.ReLU(inplace=True)]
            layers.append(nn.Sequential(*block))
            n_in = n_out
        return layers

    def _paper_init(self):
        for module in self.layers.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 1e-2)
                if module.bias is not None:
                    nn.init.normal_(module.bias, 0.5, 1e-2)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 2e-1)
                nn.init.normal_(module.bias, 0.5, 1e-2)
        for layer in (self.fc, self.head):
            if layer is not None:
                nn.init.normal_(layer.weight, 0.0, 2e-1)
                nn.init.normal_(layer.bias, 0.5, 1e-2)

    def _features(self, x):
        if self.conv:  # channels-last convolutions run 1.1-1.3x faster on CPU (oneDNN)
            x = x.contiguous(memory_format=torch.channels_last)
        for layer in self.layers:
            x = layer(x)
        return x.flatten(1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) -> (N, F): sigmoid features of the fc layer, or the flat twin features."""
        h = self._features(x)
        return torch.sigmoid(self.fc(h)) if self.fc is not None else h

    def logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """All pairs of embeddings (..., A, F) x (..., B, F) -> (..., A, B) logits of 'same character'.

        sum_j alpha_j |a_j - b_j| is split by the sign of alpha into two weighted L1 distances
        (|alpha_j| |a_j - b_j| = ||alpha_j| a_j - |alpha_j| b_j|): exact, and torch.cdist never
        materialises the (A, B, F) difference tensor, so training steps run 2.4x faster.
        """
        if self.head is None:
            return -torch.cdist(a, b).pow(2)
        alpha = self.head.weight[0]
        pos, neg = torch.relu(alpha), torch.relu(-alpha)
        return torch.cdist(a * pos, b * pos, p=1) - torch.cdist(a * neg, b * neg, p=1) + self.head.bias

    def pair_logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Matched pairs (n, F), (n, F) -> (n,) logits."""
        if self.head is None:
            return -(a - b).pow(2).sum(-1)
        return self.head((a - b).abs()).squeeze(-1)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters per layer (twin layers, fc, head) for layer-wise SGD settings."""
        groups = [list(layer.parameters()) for layer in self.layers]
        groups = [g for g in groups if g]
        return groups + [list(m.parameters()) for m in (self.fc, self.head) if m is not None]


def symmetry(images: torch.Tensor, k: int) -> torch.Tensor:
    """Symmetry k (0-7) of the square images (..., H, W): k % 4 quarter turns, mirrored when k >= 4."""
    images = torch.rot90(images, k % 4, dims=(-2, -1))
    return images.flip(-1) if k >= 4 else images


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether training runs under bf16 autocast: "auto" only where oneDNN supports bfloat16 on
    this CPU (elsewhere it is emulated and slower)."""
    if precision != "auto":
        return precision == "bf16"
    try:
        return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def trial_loss(model: TwinNet, h: torch.Tensor, shapes: list[tuple[int, int]]) -> torch.Tensor:
    """Mean one-shot trial loss over groups of embeddings laid out as (drawers, characters)
    grids: each image is a query against every other drawer's characters, under a softmax."""
    loss, offset = 0.0, 0
    for d, c in shapes:
        e = h[offset:offset + d * c].view(d, c, -1)
        offset += d * c
        # the metric is symmetric: score each pair of drawers (i < j) once, in one batched call, and
        # read drawer j's queries against drawer i's supports from the transpose (2.7x fewer pairs
        # than all (d c)^2, and none within a drawer, which the loss never uses)
        i, j = torch.triu_indices(d, d, offset=1, device=h.device)
        upper = model.logits(e[i], e[j])  # (pairs, c, c'): drawer i's queries vs drawer j's supports
        logits = torch.cat([upper, upper.transpose(1, 2)]).reshape(-1, c)  # every query vs another drawer
        target = torch.arange(c, device=h.device).repeat(d * (d - 1))
        loss = loss + F.cross_entropy(logits, target)
    return loss / len(shapes)


class TwinMethod(Method):
    """A twin network trained on the background alphabets; subclasses set presets."""

    Config = TwinConfig
    progress = None  # set by the runner: a StageProgress

    # ---------------------------------------------------------------- scoring

    @property
    def device(self) -> torch.device:
        if self.config.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.config.device)

    # options added after runs were stored: left out of records at their neutral value, so that
    # stored runs of configs not using them stay valid
    LATER_OPTIONS = {"test_symmetries": 1, "keep": "best"}
    # options that change how trained networks score, not how they train: left out of weight keys,
    # so that networks trained once serve every way of scoring them
    SCORING_OPTIONS = ("test_symmetries", "keep")

    def config_dict(self) -> dict:
        return {k: v for k, v in super().config_dict().items()
                if k not in self.LATER_OPTIONS or v != self.LATER_OPTIONS[k]}

    def training_config(self) -> dict:
        return {k: v for k, v in self.config_dict().items() if k not in self.SCORING_OPTIONS}

    def _members(self) -> list[TwinNet]:
        return getattr(self, "models_", None) or [self.model_]

    @torch.inference_mode()
    def _embed(self, model: TwinNet, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
        model.eval()
        return torch.cat([model.embed(images[i:i + batch, None].to(self.device)) for i in range(0, len(images), batch)])

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Float images (N, H, W) -> embeddings (N, F), in batches, networks in eval mode
        (an ensemble's members side by side)."""
        return torch.cat([self._embed(model, images) for model in self._members()], 1)

    def score(self, queries, support):
        return self.score_sets([(queries, support)])[0]

    def _views(self) -> list[tuple[TwinNet, int]]:
        """(member, symmetry) pairs whose logits are averaged; see ``symmetry``. Validation during
        training scores the plain images only: it tracks progress (and picks the best epoch under
        keep="best"), and the views would cost 8x as much every epoch."""
        symmetries = 1 if getattr(self, "validating_", False) else self.config.test_symmetries
        return [(m, k) for m in self._members() for k in range(symmetries)]

    @torch.inference_mode()
    def score_sets(self, sets):
        # all sets' images embedded together (big batches instead of a call per small set), each
        # image once per member and view; the head compares all query x support pairs of a set;
        # logits are averaged over members and views
        sizes = [n for q, s in sets for n in (len(q), len(s))]
        images = torch.cat([x for pair in sets for x in pair])
        views = self._views()
        per_view = [self._embed(m, symmetry(images, k)).split(sizes) for m, k in views]
        out = []
        for k in range(len(sets)):
            logits = [m.logits(h[2 * k], h[2 * k + 1]) for (m, _), h in zip(views, per_view)]
            out.append(torch.stack(logits).mean(0).float().cpu())
        return out

    @torch.inference_mode()
    def score_pairs(self, first, second):
        return torch.stack([m.pair_logits(self._embed(m, symmetry(first, k)), self._embed(m, symmetry(second, k)))
                            for m, k in self._views()]).mean(0).float().cpu()

    # ---------------------------------------------------------------- training

    def fit(self, background, validation=None):
        cfg = self.config
        background = background.select(background.meta["drawer"].isin(cfg.train_drawers))
        data_key = data_fingerprint(background)
        validation_key = [fingerprint(ts.queries, ts.support, ts.answer) for ts in validation or []]
        # members > 1: an ensemble of networks with their own seeds (100 * seed + k, so the
        # ensembles of different seeds share no member); one member keeps the seed itself
        seeds = [self.seed] if cfg.members == 1 else [100 * self.seed + k for k in range(cfg.members)]
        keys = [fingerprint(self.name, self.training_config(), data_key, seed, validation_key) for seed in seeds]
        self.checkpoint_key_ = keys[0]
        data = to_tensor(background.images, cfg.input_size)[:, None]
        index = CharacterIndex(background)
        workers = min(cfg.members, max(1, torch.get_num_threads()), os.cpu_count() or 1)
        # finished members are only loaded: no processes to spawn for that
        if workers > 1 and self.device.type == "cpu" and not all(self._finished(key) for key in keys):
            results = train_in_processes(type(self), cfg, self.preset, self.work_dir, seeds, keys, data, index,
                                         validation, workers, self.progress, self._steps_per_epoch() * cfg.epochs)
        else:
            trainers = [self] if cfg.members == 1 else [self._member(seed) for seed in seeds]
            results = [(*t.train(data, index, key, validation), None) for t, key in zip(trainers, keys)]
        self.models_ = []
        for state, *_ in results:
            model = TwinNet(cfg).to(self.device)
            model.load_state_dict(state)
            self.models_.append(model)
        self.model_ = self.models_[0]
        self.history_ = [{**h, "member": k} if cfg.members > 1 else h
                         for k, (_, history, _, _) in enumerate(results) for h in history]
        self.reused_checkpoint_ = all(reused for _, _, reused, _ in results)
        self.worker_peak_rss_mib_ = [peak for *_, peak in results if peak is not None]
        return self

    def resources(self) -> dict:
        """An ensemble's members train side by side, a CPU each (one process, GPU or not, otherwise)."""
        gpu = self.config.device.startswith("cuda")
        return {"cpus": 1 if gpu else self.config.members, "gpus": 1 if gpu else 0}

    def _finished(self, key: str) -> bool:
        state = Checkpoint(self.work_dir, f"{self.name}-{key}").load()
        return bool(state and state.get("done"))

    def _member(self, seed: int) -> TwinMethod:
        member = type(self)(self.config, seed=seed, preset=self.preset, work_dir=self.work_dir)
        member.progress = self.progress
        return member

    def train(self, data: torch.Tensor, index: CharacterIndex, key: str, validation=None):
        """Train one network (seeded by ``self.seed``) on ``data`` (N, 1, H, W), resuming or reusing
        its checkpoint ``key``. Returns (kept weights, history, whether a finished checkpoint was reused)."""
        cfg = self.config
        device = self.device
        checkpoint = Checkpoint(self.work_dir, f"{self.name}-{key}")
        torch.manual_seed(self.seed)
        self.model_ = TwinNet(cfg).to(device)
        state = checkpoint.load()
        if state and state.get("done"):
            return self._kept(state), state["history"], True

        data = data.to(device)
        self.bf16_ = use_bf16(cfg.precision, device)
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
                loss = self._pairs_epoch(data, pairs, optimizer, scheduler, rng, gen, epoch)
            else:
                loss = self._trials_epoch(data, index, optimizer, scheduler, rng, gen, epoch)
            acc = self._validate(validation) if validation else float(epoch)
            self.last_validation_ = acc if validation else None
            stop = stopper.update(epoch, acc, self.model_)
            history.append({"epoch": epoch, "loss": loss, "validation_accuracy": acc if validation else None,
                            "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - tick,
                            "bf16": self.bf16_})
            done = stop or epoch == cfg.epochs - 1
            state = {"model": self.model_.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict() if scheduler is not None else None,
                     "stopper": stopper.state_dict(), "rng": rng.bit_generator.state,
                     "gen": gen.get_state(), "history": history, "epoch": epoch, "done": done,
                     "best_state": stopper.best_state}
            checkpoint.save(state)
            if done:
                break
        return self._kept(state), history, False

    def _kept(self, state: dict) -> dict:
        """The weights a finished training keeps (config ``keep``)."""
        return state["model"] if self.config.keep == "last" else state["best_state"]

    def _validate(self, validation) -> float:
        self.validating_ = True
        try:
            return evaluate_trial_sets(self, validation)["accuracy"]
        finally:
            self.validating_ = False

    def _optimizer(self):
        cfg = self.config
        if cfg.optimizer == "adam":
            opt = torch.optim.Adam(self.model_.parameters(), lr=cfg.adam_lr, weight_decay=cfg.weight_decay)
            total = cfg.epochs * self._steps_per_epoch()
            return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        groups = self.model_.layer_groups()
        n = len(groups)
        lrs, l2s = per_layer(cfg.lr, n), per_layer(cfg.l2, n)
        # L2 penalty lambda * ||w||^2 has gradient 2 * lambda * w: SGD's weight_decay is 2 * lambda
        param_groups = [{"params": p, "lr": lr, "base_lr": lr, "weight_decay": 2 * l2, "momentum": cfg.momentum_start}
                        for p, lr, l2 in zip(groups, lrs, l2s)]
        return torch.optim.SGD(param_groups, lr=lrs[0], momentum=cfg.momentum_start), None

    def _steps_per_epoch(self) -> int:
        cfg = self.config
        if cfg.objective == "trials":
            return cfg.steps_per_epoch
        return cfg.pair_steps or -(-cfg.pairs * (1 + cfg.distortions) // cfg.batch_size)

    def _set_epoch_schedule(self, optimizer, epoch: int) -> None:
        """Paper schedule: learning rate decays 1% per epoch; momentum rises linearly to mu_j."""
        cfg = self.config
        if cfg.optimizer != "sgd":
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

    def _advance(self, losses: list[float], optimizer) -> None:
        if self.progress:
            last = getattr(self, "last_validation_", None)
            info = f"loss {np.mean(losses[-50:]):.3f}  lr {optimizer.param_groups[0]['lr']:.1e}"
            self.progress.advance(info + (f"  val {100 * last:.1f}%" if last is not None else ""))

    def _pairs_epoch(self, data, pairs, optimizer, scheduler, rng, gen, epoch) -> float:
        """One pass over the pairs, each seen once as drawn and ``distortions`` times distorted."""
        cfg = self.config
        rows, targets = pairs
        copies = 1 + cfg.distortions
        pool = len(rows) * copies
        views = cfg.pair_steps * cfg.batch_size or pool
        order = np.concatenate([rng.permutation(pool) for _ in range(-(-views // pool))])[:views]
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
            h = self._train_embed(x).view(len(sel), 2, -1)
            loss = self._pair_loss(h[:, 0], h[:, 1], torch.as_tensor(targets[pair], device=h.device))
            self._step(loss, optimizer, scheduler, losses)
        return float(np.mean(losses))

    def _train_embed(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=getattr(self, "bf16_", False)):
            h = self.model_.embed(x)
        return h.float()  # the head and loss in float32

    def _step(self, loss, optimizer, scheduler, losses: list[float]) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
        self._advance(losses, optimizer)

    def _pair_loss(self, a, b, same):
        if self.config.loss == "bce":  # the paper: cross-entropy of the sigmoid head
            return F.binary_cross_entropy_with_logits(self.model_.pair_logits(a, b), same)
        # contrastive (Hadsell, Chopra & LeCun 2006): pull same pairs together, push others beyond the margin
        d = (a - b).pow(2).sum(-1).clamp_min(1e-12).sqrt()
        return 0.5 * (same * d.pow(2) + (1 - same) * F.relu(self.config.margin - d).pow(2)).mean()

    def _symmetry(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """One random symmetry (turn and/or mirror, as configured) for all images of an alphabet."""
        turns = int(rng.integers(4)) if self.config.rotations else 0
        mirror = bool(rng.integers(2)) if self.config.reflections else False
        return symmetry(images, turns + 4 * mirror)

    def _trials_epoch(self, data, index, optimizer, scheduler, rng, gen, epoch) -> float:
        """Steps of within-alphabet one-shot trials: every query (character c, drawer d) is scored
        against the ``way`` characters of each other drawer d' and trained with a softmax."""
        cfg = self.config
        self._stage(f"epoch {epoch + 1}/{cfg.epochs} (trials)", cfg.steps_per_epoch)
        losses = []
        for _ in range(cfg.steps_per_epoch):
            groups = trial_batch(index, cfg.alphabets_per_batch, cfg.way, cfg.drawers_per_character, rng)
            x = data[torch.as_tensor(np.concatenate([g.ravel() for g in groups]))].float()
            if cfg.rotations or cfg.reflections:  # a turned or mirrored alphabet is a new alphabet
                x = torch.cat([self._symmetry(part, rng) for part in torch.split(x, [g.size for g in groups])])
            if cfg.distortions:
                x = distort(x, gen)
            loss = trial_loss(self.model_, self._train_embed(x), [g.shape for g in groups])
            self._step(loss, optimizer, scheduler, losses)
        return float(np.mean(losses))


# ---------------------------------------------------------------- ensemble members in processes

class _QueueProgress:
    """A worker's progress: forwards each step's info line to the parent's bar."""

    def __init__(self, queue, member: int):
        self.queue, self.member = queue, member

    def stage(self, label: str) -> None:
        self.label = label

    def start(self, total) -> None:
        pass

    def advance(self, info: str | None = None) -> None:
        self.queue.put(f"member {self.member + 1} {self.label}: {info or ''}")


def _train_member(cls, config, preset, work_dir, seed, key, data, index, validation, threads, queue, member):
    torch.set_num_threads(threads)
    method = cls(config, seed=seed, preset=preset, work_dir=work_dir)
    method.progress = _QueueProgress(queue, member)
    state, history, reused = method.train(torch.from_numpy(data), index, key, validation)
    return {k: v.numpy() for k, v in state.items()}, history, reused, peak_rss_mib()


def peak_rss_mib() -> float | None:
    """This process's peak resident memory (VmHWM; getrusage would report the parent's peak for a
    spawned child, inherited across the fork before exec). None where /proc is absent."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return None


def train_in_processes(cls, config, preset, work_dir, seeds, keys, data, index, validation, workers, progress,
                       steps_per_member: int):
    """Train ensemble members side by side, ``workers`` spawned processes sharing the threads."""
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(workers, mp_context=context) as pool:
        queue = manager.Queue()
        futures = [pool.submit(_train_member, cls, config, preset, work_dir, seed, key, data.numpy(), index,
                               validation, threads, queue, k) for k, (seed, key) in enumerate(zip(seeds, keys))]
        if progress:
            progress.stage(f"training {len(seeds)} members in {workers} processes")
            progress.start(steps_per_member * len(seeds))
        try:
            while not all(f.done() for f in futures):
                try:
                    info = queue.get(timeout=0.5)
                except queue_module.Empty:
                    continue
                if progress:
                    progress.advance(info)
        except BaseException:  # Ctrl-C or SIGTERM: stop the members (they resume from their checkpoints)
            for process in list(pool._processes.values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        results = [f.result() for f in futures]
    return [({k: torch.from_numpy(v) for k, v in state.items()}, history, reused, peak)
            for state, history, reused, peak in results]
