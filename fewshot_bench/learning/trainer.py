"""The training loop every network method shares: epochs of steps under the config's objective
(``objectives.OBJECTIVES``), the optimiser and its schedule, validation, early stopping, and a
checkpoint after each epoch (keyed by config, data and seed) so reruns reuse finished trainings
and interrupted ones resume. A ``TrainingLoop`` is mixed into a network Method (``method.py``).
"""
from __future__ import annotations

import copy
import itertools
import math
import os
import shutil
import time
import warnings

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from fewshot_bench.evaluation import evaluate_trial_sets
from fewshot_bench.learning.checkpoints import Checkpoint, EarlyStopping
from fewshot_bench.learning.networks import build_network
from fewshot_bench.learning.objectives import OBJECTIVES
from fewshot_bench.learning.sampling import CharacterIndex


INFO_EVERY = 25  # steps between the progress bar's loss reads


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether training runs under bf16 autocast: "auto" where the device computes bfloat16 natively
    (a CUDA GPU that supports it; a CPU where oneDNN does: elsewhere it is emulated and slower)."""
    if precision != "auto":
        return precision == "bf16"
    try:
        if device.type == "cuda":
            return bool(torch.cuda.is_bf16_supported())
        return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def restore_generator(gen: torch.Generator, state: torch.Tensor, seed: int) -> None:
    """A checkpoint's generator state, on a generator of this training's device; a training resumed on
    another kind of device (a CPU checkpoint on a GPU) goes on from a generator seeded anew."""
    try:
        gen.set_state(state)
    except (RuntimeError, TypeError):
        gen.manual_seed(seed)


def start_epoch_of(state: dict) -> int:
    return state["epoch"] + 1


def lr_factor(schedule: str, total: int, halve_every: int):
    """The learning rate's factor after ``s`` steps of ``total``: a cosine to 0, halvings, or 1."""
    if schedule == "halving":
        return lambda s: 0.5 ** (s // halve_every)
    if schedule == "constant":
        return lambda s: 1.0
    return lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's inductor would build CPU kernels with, if any."""
    return shutil.which(os.environ.get("CXX", "")) or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


class TrainingLoop:
    """Trains ``self.model_`` per ``self.config``; see the module docstring."""

    def objective_for(self, index: CharacterIndex):
        """The config's objective, bound to this method and background."""
        return OBJECTIVES[self.config.objective](self, index)

    def train(self, data: torch.Tensor, index: CharacterIndex, key: str, validation=None):
        """Train one network (seeded by ``self.seed``) on ``data`` (N, 1, H, W), resuming or reusing
        its checkpoint ``key``. Returns (kept weights, history, whether a finished checkpoint was reused)."""
        cfg = self.config
        device = self.device
        checkpoint = Checkpoint(self.work_dir, f"{self.weights_name}-{key}")
        objective = self.objective_for(index)
        torch.manual_seed(self.seed)
        self.model_ = build_network(cfg, objective.n_classes(), data.shape[1]).to(device)
        state = checkpoint.load()
        if state and state.get("done"):
            return self._kept(state), state["history"], True

        data = data.to(device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick its fastest kernels
        self.bf16_ = use_bf16(cfg.precision, device) and objective.bf16
        optimizer, scheduler = self._optimizer(objective.steps_per_epoch())
        stopper = EarlyStopping(cfg.patience)
        rng = np.random.default_rng(self.seed)
        gen = torch.Generator(device=device).manual_seed(self.seed)  # distortions drawn where the data is
        history, start_epoch = [], 0
        objective.prepare(rng)
        # the learning check's baselines, measured before the first step: the untrained network on the
        # same validation trials, and the loss of a constant guess (checkpoints from before the check
        # gain them on resume: the network built above is still the seed's untrained one)
        start = {} if state and "untrained_validation" in state["history"][0] else self._baselines(objective, validation)
        if cfg.budget_gflop:
            objective.fixed_steps = self._budget_steps(objective, data)
        snapshots = {}  # epoch -> weights, for keep="epochN"
        if state:  # resume an interrupted training
            self.model_.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            stopper.load_state_dict(state["stopper"])
            rng.bit_generator.state = state["rng"]
            restore_generator(gen, state["gen"], self.seed + start_epoch_of(state))
            history, start_epoch = state["history"], state["epoch"] + 1
            history[0].update(start)
            snapshots = state.get("snapshots", {})
            self.resumed_epochs_ = start_epoch
            self._report_epochs(history)  # a tune's pruner sees the resumed epochs too

        for epoch in range(start_epoch, cfg.epochs):
            tick = time.perf_counter()
            self._set_epoch_schedule(optimizer, epoch)
            self.model_.train()
            self._stage(f"epoch {epoch + 1}/{cfg.epochs} ({objective.name})", objective.steps_per_epoch())
            losses, images = [], 0
            steps = objective.losses(data, rng, gen)
            with FlopCounterMode(display=False) as counter:  # the budget: the first step's forward and backward
                for loss in itertools.islice(steps, 1):
                    self._step(loss, optimizer, scheduler, losses)
                    images += objective.images
            step_images = images  # the counted step's images: objectives whose batches vary scale by them
            for loss in steps:
                self._step(loss, optimizer, scheduler, losses)
                images += objective.images
            loss = float(torch.stack(losses).double().mean())  # read once an epoch: no sync a step
            acc = self._validate(validation) if validation else float(epoch)
            self.last_validation_ = acc if validation else None
            stop = stopper.update(epoch, acc, self.model_)
            history.append({"epoch": epoch, "loss": loss, "validation_accuracy": acc if validation else None,
                            "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - tick,
                            "bf16": self.bf16_, "steps": len(losses), "images": images,
                            "step_gflop": counter.get_total_flops() / 1e9, "step_images": step_images,
                            **(start if not history else {})})
            done = stop or epoch == cfg.epochs - 1
            if epoch + 1 in cfg.snapshots:
                snapshots[epoch + 1] = {k: v.detach().clone() for k, v in self.model_.state_dict().items()}
            state = {"model": self.model_.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict() if scheduler is not None else None,
                     "stopper": stopper.state_dict(), "rng": rng.bit_generator.state,
                     "gen": gen.get_state(), "history": history, "epoch": epoch, "done": done,
                     "best_state": stopper.best_state, **({"snapshots": snapshots} if cfg.snapshots else {})}
            checkpoint.save(state)
            self._report_epochs(history)  # after the save: a pruned training's epochs are kept
            if done:
                break
        return self._kept(state), history, False

    def _baselines(self, objective, validation) -> dict:
        """What a training must beat to have learned: the untrained network's validation accuracy
        and its 95% interval over trial sets (where there is validation), and the loss of the best
        constant guess (where the objective has one). Stored in the first epoch's history entry."""
        out = {}
        if validation:
            untrained = self._validation_result(validation)
            out.update(untrained_validation=untrained["accuracy"], untrained_ci95=untrained["ci95"])
        constant = objective.constant_loss()
        if constant is not None:
            out["constant_loss"] = constant
        return out

    # called with the history after each epoch (and after a resume): ``bench tune`` reports the
    # validation curve to Optuna there, whose pruner may stop the training by raising
    epoch_callback = None

    def _report_epochs(self, history: list[dict]) -> None:
        if self.epoch_callback is not None:
            self.epoch_callback(history)

    def _kept(self, state: dict) -> dict:
        """The weights a finished training keeps (config ``keep``: last, best, or a snapshot epoch)."""
        keep = self.config.keep
        if keep.startswith("epoch"):
            return state["snapshots"][int(keep.removeprefix("epoch"))]
        return state["model"] if keep == "last" else state["best_state"]

    def _budget_steps(self, objective, data: torch.Tensor) -> int:
        """Steps per epoch that spend ``budget_gflop`` over the epochs: one probe step (forward and
        backward, counted) on a copy of the network with its own random draws, so the training's
        own draws and weights are untouched. Its FLOPs per image times the images a step holds on
        average (``mean_images``: the trial loss's batches vary with the alphabets drawn, and sizing
        by the probe's own batch made two networks of one budget spend 181,546 and 310,065 GFLOP)."""
        cfg, model = self.config, self.model_
        self.model_ = copy.deepcopy(model)
        try:
            with FlopCounterMode(display=False) as counter:
                loss = next(iter(objective.losses(data, np.random.default_rng(self.seed + 1),
                                                  torch.Generator(device=data.device).manual_seed(self.seed + 1))))
                loss.backward()
        finally:
            self.model_ = model
        per_image = counter.get_total_flops() / 1e9 / objective.images
        images = objective.mean_images() or objective.images
        return max(1, round(cfg.budget_gflop / cfg.epochs / (per_image * images)))

    def _validate(self, validation) -> float:
        return self._validation_result(validation)["accuracy"]

    def _validation_result(self, validation) -> dict:
        self.validating_ = True
        try:
            return evaluate_trial_sets(self, validation)
        finally:
            self.validating_ = False

    def _optimizer(self, steps_per_epoch: int):
        """Adam under the config's ``schedule``, stepped per step (the twins' pair recipe overrides
        it with SGD)."""
        cfg = self.config
        opt = torch.optim.Adam(self.model_.parameters(), lr=cfg.adam_lr, weight_decay=cfg.weight_decay)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg.schedule, cfg.epochs * steps_per_epoch,
                                                                     cfg.halve_every))

    def _set_epoch_schedule(self, optimizer, epoch: int) -> None:
        """A schedule set per epoch (the paper's SGD); Adam's cosine runs per step."""

    def _stage(self, label: str, total: int):
        if self.progress:
            self.progress.stage(label)
            self.progress.start(total)

    def _advance(self, losses: list[torch.Tensor], optimizer) -> None:
        """The bar advances every step; its loss is read every ``INFO_EVERY`` steps (a read waits for
        the device)."""
        if self.progress:
            info = None
            if len(losses) % INFO_EVERY == 1:
                last = getattr(self, "last_validation_", None)
                info = (f"loss {float(torch.stack(losses[-50:]).double().mean()):.3f}  "
                        f"lr {optimizer.param_groups[0]['lr']:.1e}" + (f"  val {100 * last:.1f}%" if last is not None else ""))
            self.progress.advance(info)

    def train_embed(self, x: torch.Tensor) -> torch.Tensor:
        """The training forward pass: under bf16 autocast where configured, compiled where
        configured and possible, features in float32 (the head and loss run in float32)."""
        embed = self._compiled_embed() if self.config.compile else self.model_.embed
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=getattr(self, "bf16_", False)):
            h = embed(x)
        return h.float()

    def _compiled_embed(self):
        """``model_.embed`` through torch.compile, made once per network; the eager one where the
        inductor cannot build (no C++ compiler on a CPU machine), with a warning saying so."""
        cached = getattr(self, "compiled_", None)
        if cached is not None and cached[0] is self.model_:
            return cached[1]
        embed = self.model_.embed
        if self.device.type == "cpu" and not cxx_compiler():
            warnings.warn("compile=true needs a C++ compiler for torch.compile on a CPU (none found: set CXX or "
                          "install g++); training eagerly", stacklevel=2)
        else:
            embed = torch.compile(embed)
        self.compiled_ = (self.model_, embed)
        return embed

    def _step(self, loss, optimizer, scheduler, losses: list[float]) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.detach())
        self._advance(losses, optimizer)
