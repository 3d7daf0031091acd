"""Methods that learn a network on the background: ``NetworkMethod`` fits (an ensemble's members
side by side, checkpoints keyed by config, data and seed) and scores trial sets by embedding every
image once; the families below it differ in their config (``configs.py``), objective
(``objectives.py``) and, for MAML, in how they score. A method in ``methods/`` names its family and
its presets.

    TwinMethod        Koch's siamese twins: pairs (the paper's SGD) or one-shot trials
    EpisodicMethod    prototypical, matching and relation networks: a metric over episodes
    MamlMethod        MAML: an initialisation adapted by gradient steps on each support set
    ClassifierMethod  a classifier over the background classes, its features compared at test
"""
from __future__ import annotations

import dataclasses
import os

import torch

from fewshot_bench.api import Method
from fewshot_bench.errors import UserError
from fewshot_bench.imageset import as_batch, to_tensor
from fewshot_bench.keys import fingerprint
from fewshot_bench.learning.checkpoints import Checkpoint, data_fingerprint
from fewshot_bench.learning.configs import ClassifierConfig, MamlConfig, MetricConfig, TrainingConfig, TwinConfig
from fewshot_bench.learning.devices import resolve
from fewshot_bench.learning.ensemble import train_in_processes
from fewshot_bench.learning.legacy_keys import key_dict
from fewshot_bench.learning.networks import build_network, inference_copy, symmetry
from fewshot_bench.learning.objectives import OBJECTIVES, adapt, class_scores
from fewshot_bench.learning.sampling import CharacterIndex
from fewshot_bench.learning.spaces import ADAM, KOCH_SGD
from fewshot_bench.learning.trainer import TrainingLoop


class NetworkMethod(TrainingLoop, Method):
    """A network trained on the background; a family sets ``Config``, a method its presets."""

    Config = TrainingConfig
    takes_colour = True  # the first layer follows the images' channels
    progress = None  # set by the runner: a StageProgress
    # the values fields this family's config no longer has always had in its stored keys (legacy_keys.py)
    former_values: dict = {}
    # options that change how trained networks score, not how they train: left out of weight keys,
    # so that networks trained once serve every way of scoring them
    SCORING_OPTIONS = ("test_symmetries", "keep", "test_inner_steps", "class_score", "score_with")
    # options that change how fast a network trains, not what it learns: out of weight keys too
    SPEED_OPTIONS = ("compile",)
    # the method whose trained networks this one uses (their checkpoints): methods that differ only
    # in how they score share one training; None = its own name
    trains_as: str | None = None
    search_space = ADAM  # bench tune: the Adam rate and weight decay (a method file may declare more)

    @property
    def weights_name(self) -> str:
        return self.trains_as or self.name

    @property
    def device(self) -> torch.device:
        return resolve(self.config.device)

    def config_dict(self) -> dict:
        return key_dict(self.config, self.former_values)

    @staticmethod
    def ignored_options(objective: str) -> tuple[str, ...]:
        """The config options an objective never reads (``Objective.ignores``)."""
        return OBJECTIVES[objective].ignores

    def training_config(self) -> dict:
        """The config a training's checkpoint is keyed by: without the scoring and speed options,
        and with the options its objective never reads at their defaults."""
        unread = self.ignored_options(self.config.objective)
        defaults = {f.name: f.default for f in dataclasses.fields(self.config) if f.name in unread}
        return {k: defaults.get(k, v) for k, v in self.config_dict().items()
                if k not in self.SCORING_OPTIONS + self.SPEED_OPTIONS}

    def resources(self) -> dict:
        """An ensemble's members train side by side, a CPU each (one process, GPU or not, otherwise)."""
        gpu = self.device.type == "cuda"
        return {"cpus": 1 if gpu else self.config.members, "gpus": 1 if gpu else 0}

    # ---------------------------------------------------------------- scoring

    def _members(self) -> list:
        return getattr(self, "models_", None) or [self.model_]

    @torch.inference_mode()
    def _embed(self, model, images: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """Embeddings of one network, through a copy with its batch norms folded into the
        convolutions (``inference_copy``), in batches of 128 images on a CPU: their activations
        stay in cache (2 threads, 28x28: the cpu conv siamese 1.6x and Conv-4 2.7x as many images
        a second as in batches of 512; Koch's 105x105 net the same), 512 on a GPU."""
        batch = batch or (128 if self.device.type == "cpu" else 512)
        model.eval()
        net = inference_copy(model)
        return torch.cat([net.test_features(net.embed(as_batch(images[i:i + batch]).to(self.device)))
                          for i in range(0, len(images), batch)])

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Float images (N, H, W) -> embeddings (N, F), in batches, networks in eval mode
        (an ensemble's members side by side)."""
        return torch.cat([self._embed(model, images) for model in self._members()], 1)

    def score(self, queries, support):
        return self.score_sets([(queries, support)])[0]

    def _views(self) -> list[tuple]:
        """(member, symmetry) pairs whose logits are averaged; see ``symmetry``. Validation during
        training scores the plain images only: it tracks progress (and picks the best epoch under
        keep="best"), and the views would cost 8x as much every epoch."""
        symmetries = 1 if getattr(self, "validating_", False) else self.config.test_symmetries
        return [(m, k) for m in self._members() for k in range(symmetries)]

    @torch.inference_mode()
    def score_sets(self, sets):
        """Sets of their own images ((queries, support) or, K-shot, (queries, support, support_class)):
        scored as one evaluation of their images laid end to end (``score_indexed``)."""
        images, indexed, start = [], [], 0
        for q, s, *rest in sets:
            images += [q, s]
            indexed.append((torch.arange(start, start + len(q)), torch.arange(start + len(q), start + len(q) + len(s)),
                            *rest))
            start += len(q) + len(s)
        return self.score_indexed(torch.cat(images), indexed)

    @torch.inference_mode()
    def score_indexed(self, images, sets):
        """All sets of an evaluation at once: each distinct image embedded once per member and view
        (a test image in many episodes is embedded once, not once per episode), then each set's
        logits summed over the views, one view at a time (memory: one view's embeddings)."""
        views = self._views()
        totals = [None] * len(sets)
        for model, k in views:
            h = self._embed(model, symmetry(images, k))
            for i, (q, s, *rest) in enumerate(sets):
                logits = self._set_logits(model, h[torch.as_tensor(q)], h[torch.as_tensor(s)], rest[0] if rest else None)
                totals[i] = logits if totals[i] is None else totals[i] + logits
        return [(total / len(views)).float().cpu() for total in totals]

    def _set_logits(self, model, queries, support, support_class) -> torch.Tensor:
        """(Q, S) scores of one set. Where a method scores classes (``class_score``: prototypes,
        matching), every shot of a class gets its class's score, so the mean over shots is exact."""
        kind = self.config.class_score
        if kind == "mean":
            return model.logits(queries, support)
        classes = support_classes(support, support_class)
        pool = getattr(self.config, "pool_shots", "mean")
        return class_scores(model, queries, support, classes.to(support.device), kind, pool)[:, classes]

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
        self.validation_trials_ = sum(len(ts.answer) for ts in validation or [])
        # members > 1: an ensemble of networks with their own seeds (100 * seed + k, so the
        # ensembles of different seeds share no member); one member keeps the seed itself
        seeds = [self.seed] if cfg.members == 1 else [100 * self.seed + k for k in range(cfg.members)]
        keys = [fingerprint(self.weights_name, self.training_config(), data_key, seed, validation_key) for seed in seeds]
        self.checkpoint_key_ = keys[0]
        data = as_batch(to_tensor(background.images, cfg.input_size))
        index = CharacterIndex(background)
        workers = min(cfg.members, max(1, torch.get_num_threads()), os.cpu_count() or 1)
        # finished members are only loaded: no processes to spawn for that
        if workers > 1 and self.device.type == "cpu" and not all(self._finished(key) for key in keys):
            results = train_in_processes(self, seeds, keys, data, index, validation, workers)
        else:
            trainers = [self] if cfg.members == 1 else [self.member(seed) for seed in seeds]
            results = [(*t.train(data, index, key, validation), None) for t, key in zip(trainers, keys)]
        n_classes = self.objective_for(index).n_classes()
        self.models_ = []
        for state, *_ in results:
            model = build_network(cfg, n_classes, data.shape[1]).to(self.device)
            model.load_state_dict(state)
            self.finish_model(model, data)
            self.models_.append(model)
        self.model_ = self.models_[0]
        self.history_ = [{**h, "member": k} if cfg.members > 1 else h
                         for k, (_, history, _, _) in enumerate(results) for h in history]
        self.reused_checkpoint_ = all(reused for _, _, reused, _ in results)
        self.worker_peak_rss_mib_ = [peak for *_, peak in results if peak is not None]
        return self

    def finish_model(self, model, data: torch.Tensor) -> None:
        """What a trained network needs from the background before it scores (the classifier's
        feature mean); nothing for most families."""

    def _finished(self, key: str) -> bool:
        state = Checkpoint(self.work_dir, f"{self.weights_name}-{key}").load()
        return bool(state and state.get("done"))

    def member(self, seed: int) -> NetworkMethod:
        """The same method with another seed: one member of an ensemble."""
        member = type(self)(self.config, seed=seed, preset=self.preset, work_dir=self.work_dir)
        member.progress = self.progress
        return member


def support_classes(support, support_class) -> torch.Tensor:
    """Each support image's class: as a K-shot set gives them, else one class per image."""
    if support_class is None:
        return torch.arange(len(support))
    return torch.tensor(support_class, dtype=torch.long)


# ------------------------------------------------------------------ the families

def per_layer(values: tuple, n: int) -> list:
    return list(values) * n if len(values) == 1 else list(values)


class TwinMethod(NetworkMethod):
    """Koch's siamese twins: a twin embedding compared by a metric (his weighted-L1 sigmoid head),
    trained on same/different pairs (``objective=pairs``, with the paper's layer-wise SGD where
    ``optimizer=sgd``) or on the one-shot trial itself (``objective=trials``)."""

    Config = TwinConfig
    architecture_space: dict = {}  # the twin's layer ranges, searched under either optimiser

    @classmethod
    def search_space_for(cls, config) -> dict:
        """Koch's per-layer SGD ranges where the twin trains with the paper's SGD, else Adam's;
        with the twin's architecture ranges either way."""
        return {**cls.architecture_space, **(KOCH_SGD if config.optimizer == "sgd" else ADAM)}

    def _optimizer(self, steps_per_epoch: int):
        cfg = self.config
        if cfg.optimizer == "adam":
            return super()._optimizer(steps_per_epoch)
        groups = self.model_.layer_groups()
        n = len(groups)
        lrs, l2s = per_layer(cfg.lr, n), per_layer(cfg.l2, n)
        # L2 penalty lambda * ||w||^2 has gradient 2 * lambda * w: SGD's weight_decay is 2 * lambda
        param_groups = [{"params": p, "lr": lr, "base_lr": lr, "weight_decay": 2 * l2, "momentum": cfg.momentum_start}
                        for p, lr, l2 in zip(groups, lrs, l2s)]
        return torch.optim.SGD(param_groups, lr=lrs[0], momentum=cfg.momentum_start), None

    def _plain_l1(self) -> bool:
        """Whether scoring compares embeddings by plain L1 (``score_with=l1``); validation during
        training scores with the head, so that the training does not depend on a scoring option."""
        return self.config.score_with == "l1" and not getattr(self, "validating_", False)

    def _set_logits(self, model, queries, support, support_class):
        if self._plain_l1():
            return -torch.cdist(queries.float(), support.float(), p=1)
        return super()._set_logits(model, queries, support, support_class)

    @torch.inference_mode()
    def score_pairs(self, first, second):
        if not self._plain_l1():
            return super().score_pairs(first, second)
        return torch.stack([-(self._embed(m, symmetry(first, k)) - self._embed(m, symmetry(second, k))).abs().sum(-1)
                            for m, k in self._views()]).mean(0).float().cpu()

    def pair_image_gflop(self) -> float:
        """One training image's forward and backward GFLOP on Koch's pair loss, for this config's network
        at its input size, counted by torch's FlopCounterMode as every training counts its budget."""
        from torch.utils.flop_counter import FlopCounterMode

        from fewshot_bench.learning.objectives import pair_loss

        cfg = self.config
        model = build_network(cfg, 0, 1)
        x = torch.rand(2, 1, cfg.input_size, cfg.input_size)  # one pair: FLOPs per image do not depend on the batch
        with FlopCounterMode(display=False) as counter:
            h = model.embed(x).view(1, 2, -1)
            pair_loss(model, h[:, 0], h[:, 1], torch.ones(1), cfg.loss, cfg.margin).backward()
        return counter.get_total_flops() / 1e9 / len(x)

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


class EpisodicMethod(NetworkMethod):
    """A metric learned on episodes: prototypes, matching (cosine attention) or a learned relation."""

    Config = MetricConfig
    former_values = {"optimizer": "adam"}


class ClassifierMethod(NetworkMethod):
    """A classifier over every background class, trained on minibatches and dropped at test, where
    its features are compared (CL2N-normalised with ``normalise=cl2n``)."""

    Config = ClassifierConfig
    former_values = {"optimizer": "adam", "across_alphabets": True}
    # CL2N changes how the features are compared, not how the classifier trains
    SCORING_OPTIONS = NetworkMethod.SCORING_OPTIONS + ("normalise",)

    def finish_model(self, model, data):
        if self.config.normalise == "cl2n":  # SimpleShot's centring: the mean feature of the background images
            model.feature_mean = self._embed(model, data).mean(0)


class MamlMethod(NetworkMethod):
    """MAML: a network whose initialisation is meta-learned so that a few gradient steps on an
    episode's support classify its queries (``objectives.adapt`` is the inner loop)."""

    Config = MamlConfig
    former_values = {"optimizer": "adam"}

    score_indexed = Method.score_indexed  # each set adapts the network anew: no embedding to share

    def fit(self, background, validation=None):
        """A network of ``way`` outputs cannot score validation sets of more classes (the protocols'
        20-way validation, for a 5-way model): it then trains on its fixed budget alone."""
        def classes(ts):
            return len(ts.support) if ts.support_class is None else int(max(ts.support_class)) + 1
        if validation and max(classes(ts) for ts in validation) > self.config.way:
            validation = None
        return super().fit(background, validation)

    @torch.inference_mode()
    def score_sets(self, sets):
        return [self._adapted_scores(q, s, rest[0] if rest else None) for q, s, *rest in sets]

    def _adapted_scores(self, queries, support, support_class) -> torch.Tensor:
        """``test_inner_steps`` first-order steps from the learned initialisation on the support,
        then the adapted network's logits for the queries (batch norm on the queries' own
        statistics, as Finn et al. evaluate)."""
        cfg = self.config
        model = self.model_
        with torch.inference_mode(False), torch.enable_grad():  # the evaluation runs in inference mode
            classes = support_classes(support, support_class)  # made here: no inference tensor reaches autograd
            n_classes = int(classes.max()) + 1
            if n_classes > cfg.way:
                raise UserError(f"{self.name} has {cfg.way} outputs (way={cfg.way}) and cannot score episodes of "
                                f"{n_classes} classes; train it with --set way={n_classes}")
            q, s = as_batch(queries.clone()).to(self.device), as_batch(support.clone()).to(self.device)
            params = {name: p.detach().requires_grad_() for name, p in model.named_parameters()}
            adapted = adapt(model, params, s, classes.to(self.device), cfg.test_inner_steps, cfg.inner_lr, False)
            with torch.no_grad():
                logits = torch.func.functional_call(model, adapted, (q,))[:, :n_classes]
        return logits[:, classes].float().cpu()

    def score_pairs(self, first, second):
        raise UserError(f"{self.name} adapts to a support set of classes: it scores trial sets, not pairs")
