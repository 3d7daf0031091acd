"""What the learned methods minimise, and how each step's batch is drawn for it.

An objective is a small registered class (``OBJECTIVES``, by the name a config's ``objective``
gives): ``losses`` yields one loss per training step of an epoch, drawing its own batches from the
background. Episodic objectives read a batch as groups, each a grid of embeddings (drawers,
characters, F): the same column is the same character, and the first ``shot`` drawers are the
support, the others the queries.

- ``pairs``: pair BCE (Koch) or the contrastive loss (Hadsell et al. 2006) on same/different pairs
- ``pair_grid``: Koch's pair BCE on every pair within each batch's grids, same and different half each
- ``trials``: trial softmax, every drawer the support for every other drawer's queries (the cpu twins)
- ``prototypes`` (Snell et al. 2017): softmax over negative squared distances to class means
- ``matching`` (Vinyals et al. 2016): cosine attention over the support, summed per class
- ``relation`` (Sung et al. 2018): the relation score regressed on 1 (same class) or 0 (MSE)
- ``maml`` (Finn et al. 2017): the query loss after gradient steps on the support
- ``classes`` (simpleshot, chen_baseline): cross-entropy of a classifier over all background classes
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from fewshot_bench.evaluation import class_means
from fewshot_bench.learning.augment import distort
from fewshot_bench.learning.networks import symmetry
from fewshot_bench.learning.sampling import CharacterIndex, balanced_pairs, trial_batch


def pair_loss(model, a, b, same, loss: str = "bce", margin: float = 1.0) -> torch.Tensor:
    if loss == "bce":  # the paper: cross-entropy of the sigmoid head
        return F.binary_cross_entropy_with_logits(model.pair_logits(a, b), same)
    # contrastive: pull same pairs together, push others beyond the margin
    d = (a - b).pow(2).sum(-1).clamp_min(1e-12).sqrt()
    return 0.5 * (same * d.pow(2) + (1 - same) * F.relu(margin - d).pow(2)).mean()


def grid_pair_loss(model, h: torch.Tensor, shapes: list[tuple[int, int]]) -> torch.Tensor:
    """Koch's pair cross-entropy on every pair of images within each group's (drawers, characters)
    grid, same and different pairs weighted half and half as Koch's balanced pairs are: the loss his
    pairs estimate, from all the pairs a batch's embeddings make (a grid of 8 x 16 images makes 8,128
    pairs from 128 embeddings, where Koch's batches of 128 pairs need 256)."""
    loss = 0.0
    for e in grids(h, shapes):
        d, c, dim = e.shape
        flat = e.reshape(d * c, dim)
        character = torch.arange(c, device=h.device).repeat(d)  # rows are drawer-major
        i, j = torch.triu_indices(d * c, d * c, offset=1, device=h.device)
        logits = model.logits(flat, flat)[i, j]
        same = (character[i] == character[j]).to(logits.dtype)
        per_pair = F.binary_cross_entropy_with_logits(logits, same, reduction="none")
        loss = loss + 0.5 * (per_pair[same > 0].mean() + per_pair[same == 0].mean())
    return loss / len(shapes)


def groups(x: torch.Tensor, shapes: list[tuple[int, int]]) -> tuple[torch.Tensor, ...]:
    """Split a batch (N, ...) into its groups' rows, drawer-major (d * c rows each)."""
    return x.split([d * c for d, c in shapes])


def grids(h: torch.Tensor, shapes: list[tuple[int, int]]):
    """Split a batch of embeddings (N, F) into its groups' (drawers, characters, F) grids."""
    return [part.view(d, c, -1) for part, (d, c) in zip(groups(h, shapes), shapes)]


def trial_loss(model, h: torch.Tensor, shapes: list[tuple[int, int]]) -> torch.Tensor:
    """Mean one-shot trial loss over groups of embeddings laid out as (drawers, characters)
    grids: each image is a query against every other drawer's characters, under a softmax."""
    loss = 0.0
    for e in grids(h, shapes):
        d, c = e.shape[:2]
        # the metric is symmetric: score each pair of drawers (i < j) once, in one batched call, and
        # read drawer j's queries against drawer i's supports from the transpose (2.7x fewer pairs
        # than all (d c)^2, and none within a drawer, which the loss never uses)
        i, j = torch.triu_indices(d, d, offset=1, device=h.device)
        upper = model.logits(e.index_select(0, i), e.index_select(0, j))  # (pairs, c, c'): i's queries vs j's supports
        logits = torch.cat([upper, upper.transpose(1, 2)]).reshape(-1, c)  # every query vs another drawer
        target = torch.arange(c, device=h.device).repeat(d * (d - 1))
        loss = loss + F.cross_entropy(logits, target)
    return loss / len(shapes)


def class_scores(model, queries: torch.Tensor, support: torch.Tensor, support_class: torch.Tensor,
                 kind: str, pool: str = "mean") -> torch.Tensor:
    """(Q, F) queries, (S, F) support with classes 0..C-1 -> (Q, C) class scores, as each method
    scores an episode:

    - ``prototypes``: the metric against each class's mean embedding (Snell; with one shot, the
      support itself); relation networks compare with the mean of a class's feature maps, or
      their sum (``pool="sum"``, Sung et al.)
    - ``matching``: log of the cosine attention summed over a class's shots (full-context
      embeddings first, where the network has them)
    - ``mean``: the mean of the per-shot scores (the twins)
    """
    if kind == "matching":
        if getattr(model, "fce", None) is not None:
            queries, support = model.fce(queries, support)
        attention = torch.softmax(model.logits(queries, support), dim=1)
        shots = torch.bincount(support_class).to(attention.dtype)  # the sum over a class = its mean x shots
        return (class_means(attention, support_class) * shots).clamp_min(1e-12).log()
    if kind == "prototypes":  # the class means (or sums) of the support's features, as rows
        pooled = class_means(support.T, support_class).T
        if pool == "sum":
            pooled = pooled * torch.bincount(support_class).to(pooled.dtype)[:, None]
        return model.logits(queries, pooled)
    return class_means(model.logits(queries, support), support_class)


def episode_loss(model, h: torch.Tensor, shapes, shot: int, kind: str, pool: str = "mean") -> torch.Tensor:
    """Mean loss over the groups as episodes: the first ``shot`` drawers of a grid are the support,
    the others its queries; ``kind`` as `class_scores` (``relation``: prototypes scored by
    the relation module and regressed on one-hot targets with the squared error, as Sung et al.)."""
    loss = 0.0
    for e in grids(h, shapes):
        d, c, dim = e.shape
        support, queries = e[:shot].reshape(-1, dim), e[shot:].reshape(-1, dim)
        support_class = torch.arange(c, device=h.device).repeat(shot)
        target = torch.arange(c, device=h.device).repeat(d - shot)
        if kind == "relation":
            scores = torch.sigmoid(class_scores(model, queries, support, support_class, "prototypes", pool))
            loss = loss + F.mse_loss(scores, F.one_hot(target, c).to(scores.dtype))
        else:
            loss = loss + F.cross_entropy(class_scores(model, queries, support, support_class, kind, pool), target)
    return loss / len(shapes)


def adapt(model, params: dict, support: torch.Tensor, labels: torch.Tensor, steps: int, lr: float,
          second_order: bool) -> dict:
    """MAML's inner loop: ``steps`` gradient steps of the parameters on the support's
    cross-entropy; through the steps (``second_order``) or with the gradients detached (first order)."""
    n_classes = int(labels.max()) + 1  # an episode of fewer classes than outputs uses the first ones
    for _ in range(steps):
        loss = F.cross_entropy(functional_call(model, params, (support,))[:, :n_classes], labels)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=second_order)
        params = {name: p - lr * g for (name, p), g in zip(params.items(), grads)}
    return params


def maml_loss(model, x: torch.Tensor, shapes, shot: int, steps: int, lr: float, second_order: bool) -> torch.Tensor:
    """Mean query loss over the groups as tasks, each after ``steps`` adaptation steps on its support."""
    loss = 0.0
    params = dict(model.named_parameters())
    for images, (d, c) in zip(groups(x, shapes), shapes):
        labels = torch.arange(c, device=x.device).repeat(d)  # rows are drawer-major: column = class
        support, queries = images[:shot * c], images[shot * c:]
        adapted = adapt(model, params, support, labels[:shot * c], steps, lr, second_order)
        loss = loss + F.cross_entropy(functional_call(model, adapted, (queries,))[:, :c], labels[shot * c:])
    return loss / len(shapes)


# ------------------------------------------------------------------ the objectives as classes

OBJECTIVES: dict[str, type["Objective"]] = {}


def objective(name: str):
    """Class decorator: register an objective under the name configs give it."""
    def wrap(cls):
        cls.name = name
        OBJECTIVES[name] = cls
        return cls
    return wrap


class Objective:
    """What one training minimises. ``method`` is the method being trained: its ``config``, its
    network ``model_`` and ``train_embed`` (the forward pass under the training precision)."""

    name = "?"
    bf16 = True  # whether the forward pass may run under bf16 autocast
    images = 0  # images in the last step's batch (the training budget counts them)
    fixed_steps = 0  # steps per epoch set by a compute budget (the trainer's probe), else the config's
    # config options this objective never reads: a training's checkpoint key holds them at their
    # defaults, so configs that differ only in them share one training
    ignores: tuple[str, ...] = ()

    def __init__(self, method, index: CharacterIndex):
        self.method, self.config, self.index = method, method.config, index

    def n_classes(self) -> int:
        """Outputs of a classifier the network needs for this objective (0: none)."""
        return 0

    def prepare(self, rng: np.random.Generator) -> None:
        """Draw what stays fixed for the whole training (Koch's pairs); before any resume."""

    def steps_per_epoch(self) -> int:
        return self.fixed_steps or self.config.steps_per_epoch

    def constant_loss(self) -> float | None:
        """The loss of the best constant guess (the same output whatever the images), which a network
        that learned nothing sits at; None where the objective has no such figure."""
        return None

    def mean_images(self) -> float | None:
        """The images a step holds on average, where batches vary with what is drawn (None: every
        step holds as many as the last one)."""
        return None

    def losses(self, data: torch.Tensor, rng: np.random.Generator, gen: torch.Generator) -> Iterator[torch.Tensor]:
        """One epoch: a loss per step, on batches of ``data`` (N, 1, H, W) drawn with ``rng``/``gen``."""
        raise NotImplementedError

    def bare_loss(self, data: torch.Tensor):
        """A function giving a step's loss on one fixed batch of random images of this objective's
        batch shape: the network and loss alone, without sampling or distortions (``bench speed
        train``'s bare loop). Sets ``images``."""
        raise NotImplementedError


@objective("pairs")
class Pairs(Objective):
    """Koch's balanced same/different pairs, each seen as drawn and ``distortions`` times distorted."""

    ignores = ("rotations", "reflections")  # Koch's pairs never turn or mirror an alphabet

    def prepare(self, rng):
        self.rows, self.targets = balanced_pairs(self.index, self.config.pairs, rng)

    def steps_per_epoch(self):
        return self.fixed_steps or self.config.pair_epoch_steps

    def constant_loss(self):
        """The cross-entropy of guessing the share of same pairs (ln 2 for balanced pairs); the
        contrastive loss has no constant guess."""
        if self.config.loss != "bce":
            return None
        p = float(np.mean(self.targets))
        return float(-(p * np.log(p) + (1 - p) * np.log(1 - p))) if 0 < p < 1 else 0.0

    def losses(self, data, rng, gen):
        """The epoch's order drawn on the host once, then every step's pairs, images and targets indexed
        where the data lives (on a GPU: no transfer a step)."""
        cfg, model = self.config, self.method.model_
        copies = 1 + cfg.distortions
        pool = len(self.rows) * copies
        views = (self.fixed_steps or cfg.pair_steps) * cfg.batch_size or pool
        order = np.concatenate([rng.permutation(pool) for _ in range(-(-views // pool))])[:views]
        # each step's distorted images (a copy > 0), as positions in its 2B images: found here, so no
        # step asks the device which images a mask holds (a sync a step on a GPU)
        starts = range(0, len(order), cfg.batch_size)
        distorted = [np.flatnonzero(np.repeat(order[s:s + cfg.batch_size] >= len(self.rows), 2)) for s in starts]
        bounds = np.cumsum([0] + [len(d) for d in distorted]).tolist()  # step k's are bounds[k]:bounds[k + 1]
        order, rows, targets, distorted = (torch.as_tensor(a, device=data.device) for a in
                                           (order, self.rows, self.targets, np.concatenate(distorted)))
        for step, start in enumerate(starts):
            sel = order[start:start + cfg.batch_size]
            pair = sel % len(rows)
            x = data[rows[pair].reshape(-1)].float()  # (2B, 1, H, W)
            which = distorted[bounds[step]:bounds[step + 1]]
            if len(which):
                x[which] = distort(x[which], gen)
            self.images = len(x)
            h = self.method.train_embed(x).view(len(sel), 2, -1)
            yield pair_loss(model, h[:, 0], h[:, 1], targets[pair], cfg.loss, cfg.margin)

    def bare_loss(self, data):
        cfg, model = self.config, self.method.model_
        x = torch.rand(2 * cfg.batch_size, *data.shape[1:])
        same = (torch.arange(cfg.batch_size) % 2).float()
        self.images = len(x)

        def loss():
            h = self.method.train_embed(x).view(cfg.batch_size, 2, -1)
            return pair_loss(model, h[:, 0], h[:, 1], same.to(h.device), cfg.loss, cfg.margin)
        return loss


class Grids(Objective):
    """Steps of ``alphabets_per_batch`` grids of ``way`` characters by ``drawers_per_character``
    drawers, within one alphabet (or across all: ``across_alphabets``); a turned or mirrored
    alphabet counts as a new alphabet; Koch's distortions on every image."""

    def losses(self, data, rng, gen):
        """The epoch's grids and symmetries drawn on the host first (in the order a step at a time drew
        them), their rows sent where the data lives at once, then each step's images indexed there."""
        cfg = self.config
        plan = []  # per step: its grids, and each grid's symmetry
        for _ in range(self.steps_per_epoch()):
            groups = trial_batch(self.index, cfg.alphabets_per_batch, cfg.way, cfg.drawers_per_character, rng,
                                 getattr(cfg, "across_alphabets", False))
            plan.append((groups, [self._symmetry_code(rng) for _ in groups] if cfg.rotations or cfg.reflections
                         else None))
        rows = torch.as_tensor(np.concatenate([g.ravel() for groups, _ in plan for g in groups]), device=data.device)
        end = 0
        for groups, codes in plan:
            sizes = [g.size for g in groups]
            start, end = end, end + sum(sizes)
            x = data[rows[start:end]].float()
            if codes is not None:
                x = torch.cat([symmetry(part, code) for part, code in zip(torch.split(x, sizes), codes)])
            if cfg.distortions:
                x = distort(x, gen)
            self.images = len(x)
            yield self.loss(x, [g.shape for g in groups])

    def mean_images(self) -> float:
        """A within-alphabet group holds ``way`` characters or all of a smaller alphabet's, alphabets
        drawn alike: the mean over alphabets of min(way, its characters), by drawers and groups."""
        cfg = self.config
        way = cfg.way if getattr(cfg, "across_alphabets", False) else float(np.mean(
            [min(cfg.way, self.index.table[a].shape[0]) for a in self.index.alphabets]))
        return cfg.alphabets_per_batch * cfg.drawers_per_character * way

    def constant_loss(self) -> float | None:
        """A softmax over a group's characters guessing uniformly: ln of its characters, averaged
        over the alphabets a group is drawn from (a smaller alphabet gives all its characters)."""
        cfg = self.config
        if getattr(cfg, "across_alphabets", False):
            return math.log(cfg.way)
        return float(np.mean([math.log(min(cfg.way, self.index.table[a].shape[0])) for a in self.index.alphabets]))

    def _symmetry_code(self, rng: np.random.Generator) -> int:
        """One random symmetry (turn and/or mirror, as configured) for all images of an alphabet, as
        ``symmetry``'s code."""
        turns = int(rng.integers(4)) if self.config.rotations else 0
        mirror = bool(rng.integers(2)) if self.config.reflections else False
        return turns + 4 * mirror

    def loss(self, x: torch.Tensor, shapes: list[tuple[int, int]]) -> torch.Tensor:
        raise NotImplementedError

    def bare_loss(self, data):
        cfg = self.config
        shapes = [(cfg.drawers_per_character, cfg.way)] * cfg.alphabets_per_batch
        x = torch.rand(sum(d * c for d, c in shapes), *data.shape[1:])
        self.images = len(x)
        return lambda: self.loss(x, shapes)


@objective("trials")
class Trials(Grids):
    def loss(self, x, shapes):
        return trial_loss(self.method.model_, self.method.train_embed(x), shapes)


@objective("pair_grid")
class PairGrid(Grids):
    """Koch's pair loss on every pair of each batch's grids (``grid_pair_loss``): his loss and his head,
    with the trials' sampling (a change of sampling from his fixed pool of pairs, labelled where used)."""

    ignores = ("pairs", "pair_steps", "batch_size")  # grids, not a pool of pairs in batches

    def constant_loss(self):
        return math.log(2)  # same and different pairs weigh half each: the best constant guess is 1/2

    def loss(self, x, shapes):
        return grid_pair_loss(self.method.model_, self.method.train_embed(x), shapes)


class Episodes(Grids):
    """Grids as episodes: ``shot`` support drawers, the others queries, scored as ``name`` says."""

    def loss(self, x, shapes):
        cfg = self.config
        return episode_loss(self.method.model_, self.method.train_embed(x), shapes, cfg.shot, self.name, cfg.pool_shots)


@objective("prototypes")
class Prototypes(Episodes):
    """Snell et al. 2017: a softmax over the metric against each class's mean embedding."""


@objective("matching")
class Matching(Episodes):
    """Vinyals et al. 2016: the log of the cosine attention summed over each class's shots."""


@objective("relation")
class Relation(Episodes):
    """Sung et al. 2018: relation scores regressed on one-hot targets with the squared error."""

    def constant_loss(self):
        return None  # the squared error's guess depends on the sigmoid, not a softmax's ln c


@objective("maml")
class Maml(Grids):
    """Grids as tasks; the loss differentiates through the adaptation steps (in fp32: the double
    backward of second-order MAML has no bf16 kernels worth it)."""

    bf16 = False

    def loss(self, x, shapes):
        cfg = self.config
        return maml_loss(self.method.model_, x, shapes, cfg.shot, cfg.inner_steps, cfg.inner_lr, not cfg.first_order)


@objective("classes")
class Classes(Objective):
    """Minibatches of ``batch_size`` background images under a classifier over all their classes;
    a turned image (``rotations``) is a class of its own, as a turned alphabet is for the trials,
    unless the background holds turns as classes already (Vinyals' split)."""

    def turned_classes(self) -> bool:
        return self.config.rotations and not self.index.rotated

    def n_classes(self):
        return self.index.n_classes * (4 if self.turned_classes() else 1)

    def constant_loss(self):
        return math.log(self.n_classes())

    def losses(self, data, rng, gen):
        cfg, index = self.config, self.index
        for _ in range(self.steps_per_epoch()):
            rows = rng.integers(len(index.labels), size=cfg.batch_size)
            x = data[torch.as_tensor(rows)].float()
            labels = torch.as_tensor(index.labels[rows])
            if self.turned_classes():
                turns = torch.as_tensor(rng.integers(4, size=len(rows)))
                x = torch.stack([symmetry(image, int(k)) for image, k in zip(x, turns)])
                labels = labels + index.n_classes * turns
            if cfg.distortions:
                x = distort(x, gen)
            self.images = len(x)
            logits = self.method.model_.classifier(self.method.train_embed(x))
            yield F.cross_entropy(logits, labels.to(logits.device))

    def bare_loss(self, data):
        cfg = self.config
        x = torch.rand(cfg.batch_size, *data.shape[1:])
        labels = torch.arange(cfg.batch_size) % self.n_classes()
        self.images = len(x)

        def loss():
            logits = self.method.model_.classifier(self.method.train_embed(x))
            return F.cross_entropy(logits, labels.to(logits.device))
        return loss
