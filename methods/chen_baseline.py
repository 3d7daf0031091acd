"""Baseline (Chen et al. 2019, "A closer look at few-shot classification"): a network trained as an
ordinary classifier over all background classes, then, for each test episode, a new linear
classifier fitted on the support's features (the network fixed) and applied to the queries.

The episode's classifier follows their code: a linear layer (PyTorch's default initialisation)
under the softmax cross-entropy, 100 epochs over the support in random minibatches of 4, SGD with
learning rate 0.01, momentum 0.9, dampening 0.9 and weight decay 0.001. The network is SimpleShot's
(``trains_as``: the same training serves both methods); Chen et al. report no Omniglot figures on
Vinyals' split, so the ``cpu`` preset is SimpleShot's Omniglot training without CL2N.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fewshot_bench.api import METHODS
from fewshot_bench.learning.configs import ClassifierConfig
from fewshot_bench.learning.method import ClassifierMethod, support_classes
from fewshot_bench.methods.simpleshot import CPU_PRESET as SIMPLESHOT_CPU, TINY_PRESET as SIMPLESHOT_TINY


@dataclass
class ChenConfig(ClassifierConfig):
    # the episode's linear classifier (scoring only: the trained network is SimpleShot's)
    support_epochs: int = 100
    support_batch: int = 4
    support_lr: float = 0.01


@METHODS.register("chen_baseline")
class ChenBaseline(ClassifierMethod):
    summary = "Baseline (Chen et al. 2019): a pretrained classifier's features, a linear classifier fitted per episode"
    Config = ChenConfig
    presets = {"cpu": {**SIMPLESHOT_CPU, "normalise": "none"}, "tiny": {**SIMPLESHOT_TINY, "normalise": "none"}}
    default_preset = "cpu"
    trains_as = "simpleshot"
    SCORING_OPTIONS = ClassifierMethod.SCORING_OPTIONS + ("support_epochs", "support_batch", "support_lr")

    @torch.inference_mode()
    def score_indexed(self, images, sets):
        """Every image embedded once; the sets of one shape (support size, classes) fit their
        classifiers together, one batched SGD run (each set's own weights, batches and gradients)."""
        h = self.embed(images)
        out = [None] * len(sets)
        shapes: dict[tuple, list[int]] = {}
        for i, (q, s, *rest) in enumerate(sets):
            classes = support_classes(s, rest[0] if rest else None)
            shapes.setdefault((len(s), int(classes.max()) + 1), []).append(i)
        for (n_support, n_classes), members in shapes.items():
            classes = torch.stack([support_classes(sets[i][1], sets[i][2] if len(sets[i]) > 2 else None)
                                   for i in members])
            support = torch.stack([h[torch.as_tensor(sets[i][1])] for i in members])
            weight, bias = self._fit_linear(support, classes, n_classes)
            for k, i in enumerate(members):
                logits = h[torch.as_tensor(sets[i][0])] @ weight[k] + bias[k]  # (Q, classes)
                out[i] = logits[:, classes[k]].float().cpu()  # each support image gets its class's score
        return out

    def _fit_linear(self, support: torch.Tensor, classes: torch.Tensor, n_classes: int):
        """(E, S, F) support features with (E, S) classes -> each episode's (F, C) weights, (C,) bias."""
        cfg = self.config
        n_sets, n_support, dim = support.shape
        gen = torch.Generator().manual_seed(self.seed)
        bound = dim ** -0.5  # nn.Linear's default initialisation
        with torch.inference_mode(False), torch.enable_grad():
            x, y = support.clone(), classes.clone()
            weight = ((torch.rand(n_sets, dim, n_classes, generator=gen) * 2 - 1) * bound).requires_grad_()
            bias = ((torch.rand(n_sets, n_classes, generator=gen) * 2 - 1) * bound).requires_grad_()
            optimiser = torch.optim.SGD([weight, bias], lr=cfg.support_lr, momentum=0.9, dampening=0.9,
                                        weight_decay=0.001)
            rows = torch.arange(n_sets)[:, None]
            for _ in range(cfg.support_epochs):
                order = torch.argsort(torch.rand(n_sets, n_support, generator=gen), dim=1)
                for start in range(0, n_support, cfg.support_batch):
                    pick = order[:, start:start + cfg.support_batch]
                    logits = torch.bmm(x[rows, pick], weight) + bias[:, None]
                    # each episode's mean loss; summed over episodes so each gets its own gradient
                    loss = F.cross_entropy(logits.transpose(1, 2), y[rows, pick], reduction="none").mean(1).sum()
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
        return weight.detach(), bias.detach()
