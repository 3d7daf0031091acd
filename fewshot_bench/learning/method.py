"""Network methods: Koch's siamese twins and the methods of the few-shot literature that
learn a network on the background (prototypical, matching and relation networks, MAML, the
pretrained-classifier baseline). One config (``TwinConfig``) picks the network (``networks``),
the objective (``objectives``) and the schedule (``trainer``); an ensemble's members train side
by side (``ensemble``). Each method in ``methods/`` is a preset declaration of ``TwinMethod``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from fewshot_bench.api import Method
from fewshot_bench.errors import UserError
from fewshot_bench.config import require
from fewshot_bench.learning.ensemble import train_in_processes
from fewshot_bench.imageset import to_tensor
from fewshot_bench.learning.networks import NETWORKS, build_network, symmetry
from fewshot_bench.learning.objectives import adapt, class_scores
from fewshot_bench.data.splits import TRAIN_DRAWERS
from fewshot_bench.learning.trainer import EPISODE_OBJECTIVES, TrainingLoop
from fewshot_bench.keys import fingerprint
from fewshot_bench.learning.checkpoints import Checkpoint, data_fingerprint
from fewshot_bench.learning.sampling import CharacterIndex

OBJECTIVES = ("pairs", "trials") + EPISODE_OBJECTIVES + ("maml", "classes")


@dataclass
class TwinConfig:
    # network: "conv" (channels, kernels) or "mlp" (hidden) twin, then an optional fully
    # connected sigmoid layer (fc_units, 0 = none) and the metric comparing two embeddings:
    # "weighted_l1" (Koch's head, sum_j alpha_j |h1_j - h2_j| + b) or "euclidean" (-||h1 - h2||^2)
    # "relation" and "maml" are the fixed networks of those papers (see networks.py); "cosine" the
    # matching networks' metric
    network: str = "conv"
    metric: str = "weighted_l1"
    cosine_scale: float = 0.0  # metric cosine: a learned scale on the similarities, starting here (0 = none)
    pool_last: bool = False  # pool after the last conv block too (Conv-4: 28x28 -> 64 features)
    normalise: str = "none"  # "cl2n": features centred on the background mean, L2-normalised (SimpleShot)
    fce: bool = False  # matching networks' full-context embeddings
    fce_steps: int = 5  # attention steps of the query LSTM
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
    # ... or the episodes of another method (objectives.py): "prototypes", "matching", "relation",
    # "maml", each on ``shot`` support drawers and drawers_per_character - shot query drawers, or
    # "classes" (a classifier over all background classes: the baseline)
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
    # trials and episodes: ``alphabets_per_batch`` groups (MAML: tasks) of ``way`` characters
    shot: int = 1
    across_alphabets: bool = False  # a group's characters from any alphabet, not one
    # MAML: inner-loop steps and step size in training and at test, first-order approximation
    inner_steps: int = 1
    test_inner_steps: int = 3
    inner_lr: float = 0.4
    first_order: bool = False
    # K-shot scoring (scoring only, not a training option): "mean" of the per-shot scores (the
    # twins), "prototypes" (the metric against each class's mean embedding), "matching" (cosine
    # attention summed per class)
    class_score: str = "mean"
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
        require(self.network in NETWORKS, f"network must be one of {', '.join(NETWORKS)}, got {self.network!r}")
        require(self.metric in ("weighted_l1", "euclidean", "cosine"),
                f"metric must be 'weighted_l1', 'euclidean' or 'cosine', got {self.metric!r}")
        require(self.class_score in ("mean", "prototypes", "matching"),
                f"class_score must be 'mean', 'prototypes' or 'matching', got {self.class_score!r}")
        require(self.cosine_scale >= 0, f"cosine_scale must be >= 0, got {self.cosine_scale}")
        require(self.normalise in ("none", "cl2n"), f"normalise must be 'none' or 'cl2n', got {self.normalise!r}")
        require((self.network == "maml") == (self.objective == "maml"), "network=maml and objective=maml go together")
        require(self.objective != "relation" or self.network == "relation", "objective=relation needs network=relation")
        require(self.objective not in EPISODE_OBJECTIVES + ("maml",) or self.shot < self.drawers_per_character,
                f"shot ({self.shot}) must leave query drawers (drawers_per_character {self.drawers_per_character})")
        require(self.loss in ("bce", "contrastive"), f"loss must be 'bce' or 'contrastive', got {self.loss!r}")
        require(self.optimizer in ("sgd", "adam"), f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        require(self.loss != "bce" or self.metric == "weighted_l1" or self.objective != "pairs",
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
        require(self.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        require(self.init in ("paper", "default"), f"init must be 'paper' or 'default', got {self.init!r}")
        require(self.input_size >= 8, f"input_size must be >= 8, got {self.input_size}")
        for name, low in (("fc_units", 0), ("epochs", 1), ("patience", 1), ("pairs", 2), ("batch_size", 2),
                          ("pair_steps", 0), ("distortions", 0), ("way", 2), ("steps_per_epoch", 1),
                          ("alphabets_per_batch", 1), ("shot", 1), ("inner_steps", 1), ("test_inner_steps", 0),
                          ("fce_steps", 1)):
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
        if self.network in ("relation", "maml"):
            return 1
        twin = len(self.channels) if self.network == "conv" else len(self.hidden)
        return twin + (self.fc_units > 0) + (self.metric == "weighted_l1")


class TwinMethod(TrainingLoop, Method):
    """A network trained on the background; subclasses set presets."""

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
    LATER_OPTIONS = {"test_symmetries": 1, "keep": "best", "pool_last": False, "normalise": "none", "fce": False,
                     "fce_steps": 5, "shot": 1, "across_alphabets": False, "inner_steps": 1, "test_inner_steps": 3,
                     "inner_lr": 0.4, "first_order": False, "class_score": "mean",
                     "cosine_scale": 0.0}
    # options that change how trained networks score, not how they train: left out of weight keys,
    # so that networks trained once serve every way of scoring them
    SCORING_OPTIONS = ("test_symmetries", "keep", "test_inner_steps", "class_score")

    def config_dict(self) -> dict:
        return {k: v for k, v in super().config_dict().items()
                if k not in self.LATER_OPTIONS or v != self.LATER_OPTIONS[k]}

    def training_config(self) -> dict:
        return {k: v for k, v in self.config_dict().items() if k not in self.SCORING_OPTIONS}

    def _members(self) -> list:
        return getattr(self, "models_", None) or [self.model_]

    @torch.inference_mode()
    def _embed(self, model, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
        model.eval()
        return torch.cat([model.test_features(model.embed(images[i:i + batch, None].to(self.device)))
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
        # a set is (queries, support) or, K-shot, (queries, support, support_class)
        sets = [(q, s, rest[0] if rest else None) for q, s, *rest in sets]
        if self.config.network == "maml":
            return [self._adapted_scores(*s) for s in sets]
        # all sets' images embedded together (big batches instead of a call per small set), each
        # image once per member and view; the head compares all query x support pairs of a set;
        # logits are averaged over members and views
        sizes = [n for q, s, _ in sets for n in (len(q), len(s))]
        images = torch.cat([x for q, s, _ in sets for x in (q, s)])
        views = self._views()
        per_view = [self._embed(m, symmetry(images, k)).split(sizes) for m, k in views]
        out = []
        for k, (_, _, support_class) in enumerate(sets):
            logits = [self._set_logits(m, h[2 * k], h[2 * k + 1], support_class) for (m, _), h in zip(views, per_view)]
            out.append(torch.stack(logits).mean(0).float().cpu())
        return out

    def _set_logits(self, model, queries, support, support_class) -> torch.Tensor:
        """(Q, S) scores of one set. Where a method scores classes (``class_score``: prototypes,
        matching), every shot of a class gets its class's score, so the mean over shots is exact."""
        kind = self.config.class_score
        if kind == "mean":
            return model.logits(queries, support)
        classes = self._classes(support, support_class)
        return class_scores(model, queries, support, classes.to(support.device), kind)[:, classes]

    @staticmethod
    def _classes(support, support_class) -> torch.Tensor:
        """Each support image's class: as a K-shot set gives them, else one class per image."""
        if support_class is None:
            return torch.arange(len(support))
        return torch.tensor(support_class, dtype=torch.long)

    def _adapted_scores(self, queries, support, support_class) -> torch.Tensor:
        """MAML at test: ``test_inner_steps`` first-order steps from the learned initialisation on
        the support, then the adapted network's logits for the queries (batch norm on the queries'
        own statistics, as Finn et al. evaluate)."""
        cfg = self.config
        model = self.model_
        with torch.inference_mode(False), torch.enable_grad():  # the evaluation runs in inference mode
            classes = self._classes(support, support_class)  # made here: no inference tensor reaches autograd
            n_classes = int(classes.max()) + 1
            if n_classes > cfg.way:
                raise UserError(f"{self.name} has {cfg.way} outputs (way={cfg.way}) and cannot score episodes of "
                                f"{n_classes} classes; train it with --set way={n_classes}")
            q, s = queries.clone()[:, None].to(self.device), support.clone()[:, None].to(self.device)
            params = {name: p.detach().requires_grad_() for name, p in model.named_parameters()}
            adapted = adapt(model, params, s, classes.to(self.device), cfg.test_inner_steps, cfg.inner_lr, False)
            with torch.no_grad():
                logits = torch.func.functional_call(model, adapted, (q,))[:, :n_classes]
        return logits[:, classes].float().cpu()

    @torch.inference_mode()
    def score_pairs(self, first, second):
        if self.config.network == "maml":
            raise UserError(f"{self.name} adapts to a support set of classes: it scores trial sets, not pairs")
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
            model = build_network(cfg, self.n_classes(index)).to(self.device)
            model.load_state_dict(state)
            if cfg.normalise == "cl2n":  # SimpleShot's centring: the mean feature of the background images
                model.feature_mean = self._embed(model, data[:, 0]).mean(0)
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
