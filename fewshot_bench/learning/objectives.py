"""What the learned methods minimise. Episodic objectives read a batch as groups, each a grid of
embeddings (drawers, characters, F): the same column is the same character, and the first ``shot``
drawers are the support, the others the queries.

- pair BCE (Koch) and the contrastive loss (Hadsell et al. 2006) on same/different pairs
- trial softmax: every drawer the support for every other drawer's queries (the cpu twins)
- prototypes (Snell et al. 2017): softmax over negative squared distances to class means
- matching (Vinyals et al. 2016): cosine attention over the support, summed per class
- relation (Sung et al. 2018): the relation score regressed on 1 (same class) or 0 (MSE)
- classes (the baseline): cross-entropy of a classifier over all background classes
- MAML (Finn et al. 2017): the query loss after gradient steps on the support
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from fewshot_bench.evaluation import class_means


def pair_loss(model, a, b, same, loss: str = "bce", margin: float = 1.0) -> torch.Tensor:
    if loss == "bce":  # the paper: cross-entropy of the sigmoid head
        return F.binary_cross_entropy_with_logits(model.pair_logits(a, b), same)
    # contrastive: pull same pairs together, push others beyond the margin
    d = (a - b).pow(2).sum(-1).clamp_min(1e-12).sqrt()
    return 0.5 * (same * d.pow(2) + (1 - same) * F.relu(margin - d).pow(2)).mean()


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
        upper = model.logits(e[i], e[j])  # (pairs, c, c'): drawer i's queries vs drawer j's supports
        logits = torch.cat([upper, upper.transpose(1, 2)]).reshape(-1, c)  # every query vs another drawer
        target = torch.arange(c, device=h.device).repeat(d * (d - 1))
        loss = loss + F.cross_entropy(logits, target)
    return loss / len(shapes)


def class_scores(model, queries: torch.Tensor, support: torch.Tensor, support_class: torch.Tensor,
                 kind: str) -> torch.Tensor:
    """(Q, F) queries, (S, F) support with classes 0..C-1 -> (Q, C) class scores, as each method
    scores an episode:

    - ``prototypes``: the metric against each class's mean embedding (Snell; with one shot, the
      support itself); relation networks compare with the mean of a class's feature maps
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
    if kind == "prototypes":  # the class means of the support's features, as rows
        return model.logits(queries, class_means(support.T, support_class).T)
    return class_means(model.logits(queries, support), support_class)


def episode_loss(model, h: torch.Tensor, shapes, shot: int, kind: str) -> torch.Tensor:
    """Mean loss over the groups as episodes: the first ``shot`` drawers of a grid are the support,
    the others its queries; ``kind`` as :func:`class_scores` (``relation``: prototypes scored by
    the relation module and regressed on one-hot targets with the squared error, as Sung et al.)."""
    loss = 0.0
    for e in grids(h, shapes):
        d, c, dim = e.shape
        support, queries = e[:shot].reshape(-1, dim), e[shot:].reshape(-1, dim)
        support_class = torch.arange(c, device=h.device).repeat(shot)
        target = torch.arange(c, device=h.device).repeat(d - shot)
        if kind == "relation":
            scores = torch.sigmoid(class_scores(model, queries, support, support_class, "prototypes"))
            loss = loss + F.mse_loss(scores, F.one_hot(target, c).to(scores.dtype))
        else:
            loss = loss + F.cross_entropy(class_scores(model, queries, support, support_class, kind), target)
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
