"""The training loop every network method shares: epochs of steps under an objective, the
optimiser and its schedule, validation, early stopping, and a checkpoint after each epoch (keyed
by config, data and seed) so reruns reuse finished trainings and interrupted ones resume.

A ``TrainingLoop`` is mixed into a Method whose ``config`` says the objective:
- ``pairs``: same/different pairs (Koch's BCE or the contrastive loss), ``distortions`` copies
- ``trials``, ``prototypes``, ``matching``, ``relation``, ``maml``: episodes drawn as
  (drawers, characters) grids of one alphabet each (or of any characters: ``across_alphabets``),
  see ``objectives``
- ``classes``: minibatches of background images, a classifier over all their classes
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from fewshot_bench.learning.augment import distort
from fewshot_bench.evaluation import evaluate_trial_sets
from fewshot_bench.learning.networks import build_network, symmetry
from fewshot_bench.learning.objectives import episode_loss, maml_loss, pair_loss, trial_loss
from fewshot_bench.learning.checkpoints import Checkpoint, EarlyStopping
from fewshot_bench.learning.sampling import CharacterIndex, balanced_pairs, trial_batch

EPISODE_OBJECTIVES = ("prototypes", "matching", "relation")


def per_layer(values: tuple, n: int) -> list:
    return list(values) * n if len(values) == 1 else list(values)


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether training runs under bf16 autocast: "auto" only where oneDNN supports bfloat16 on
    this CPU (elsewhere it is emulated and slower)."""
    if precision != "auto":
        return precision == "bf16"
    try:
        return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class TrainingLoop:
    """Trains ``self.model_`` per ``self.config``; see the module docstring."""

    def train(self, data: torch.Tensor, index: CharacterIndex, key: str, validation=None):
        """Train one network (seeded by ``self.seed``) on ``data`` (N, 1, H, W), resuming or reusing
        its checkpoint ``key``. Returns (kept weights, history, whether a finished checkpoint was reused)."""
        cfg = self.config
        device = self.device
        checkpoint = Checkpoint(self.work_dir, f"{self.name}-{key}")
        torch.manual_seed(self.seed)
        self.model_ = build_network(cfg, self.n_classes(index)).to(device)
        state = checkpoint.load()
        if state and state.get("done"):
            return self._kept(state), state["history"], True

        data = data.to(device)
        self.bf16_ = use_bf16(cfg.precision, device) and cfg.objective != "maml"  # MAML's double backward in fp32
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
            elif cfg.objective == "classes":
                loss = self._classes_epoch(data, index, optimizer, scheduler, rng, gen, epoch)
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

    def n_classes(self, index: CharacterIndex) -> int:
        """Outputs of the classifier the ``classes`` objective trains: every background character,
        in each of the four turns where rotations make new classes."""
        if self.config.objective != "classes":
            return 0
        return index.n_classes * (4 if self._turned_classes(index) else 1)

    def _turned_classes(self, index: CharacterIndex) -> bool:
        """Whether turned images are new classes (``rotations``), unless turns are classes already."""
        return self.config.rotations and not index.rotated

    def _steps_per_epoch(self) -> int:
        cfg = self.config
        if cfg.objective != "pairs":
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
            loss = pair_loss(self.model_, h[:, 0], h[:, 1], torch.as_tensor(targets[pair], device=h.device),
                             cfg.loss, cfg.margin)
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
            groups = trial_batch(index, cfg.alphabets_per_batch, cfg.way, cfg.drawers_per_character, rng,
                                 cfg.across_alphabets)
            x = data[torch.as_tensor(np.concatenate([g.ravel() for g in groups]))].float()
            if cfg.rotations or cfg.reflections:  # a turned or mirrored alphabet is a new alphabet
                x = torch.cat([self._symmetry(part, rng) for part in torch.split(x, [g.size for g in groups])])
            if cfg.distortions:
                x = distort(x, gen)
            shapes = [g.shape for g in groups]
            if cfg.objective == "maml":  # the adaptation steps differentiate through the network itself
                loss = maml_loss(self.model_, x, shapes, cfg.shot, cfg.inner_steps, cfg.inner_lr, not cfg.first_order)
            elif cfg.objective == "trials":
                loss = trial_loss(self.model_, self._train_embed(x), shapes)
            else:
                loss = episode_loss(self.model_, self._train_embed(x), shapes, cfg.shot, cfg.objective)
            self._step(loss, optimizer, scheduler, losses)
        return float(np.mean(losses))

    def _classes_epoch(self, data, index, optimizer, scheduler, rng, gen, epoch) -> float:
        """Steps of ``batch_size`` background images under a classifier over all their classes; a
        turned image (rotations) is a class of its own, as a turned alphabet is for the trials."""
        cfg = self.config
        self._stage(f"epoch {epoch + 1}/{cfg.epochs} (classes)", cfg.steps_per_epoch)
        losses = []
        for _ in range(cfg.steps_per_epoch):
            rows = rng.integers(len(index.labels), size=cfg.batch_size)
            x = data[torch.as_tensor(rows)].float()
            labels = torch.as_tensor(index.labels[rows])
            if self._turned_classes(index):
                turns = torch.as_tensor(rng.integers(4, size=len(rows)))
                x = torch.stack([symmetry(image, int(k)) for image, k in zip(x, turns)])
                labels = labels + index.n_classes * turns
            if cfg.distortions:
                x = distort(x, gen)
            logits = self.model_.classifier(self._train_embed(x))
            loss = F.cross_entropy(logits, labels.to(logits.device))
            self._step(loss, optimizer, scheduler, losses)
        return float(np.mean(losses))


