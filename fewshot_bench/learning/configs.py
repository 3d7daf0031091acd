"""The configs of the learned-method families, each holding only its own fields.

A family's config extends the ones below it:

    NetworkConfig       the network (networks.py): a conv or MLP twin, Conv-4, relation or MAML net
    TrainingConfig      what every learned method has: objective, data, augmentation, schedule,
                        ensemble, precision, the weights kept and how they score
    ├── ClassifierConfig    a classifier over the background classes (simpleshot, chen_baseline)
    └── TrialConfig         batches of (drawers x characters) grids
        ├── TwinConfig      Koch's siamese twins: same/different pairs (the paper's SGD) or trials
        └── EpisodeConfig   support and query drawers, classes from one alphabet or any
            ├── MetricConfig    prototypical, matching and relation networks
            └── MamlConfig      MAML's inner loop

Defaults are Koch's paper network and schedule, as they were when one config served all; a
family's presets say what differs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fewshot_bench.config import require, require_minimums
from fewshot_bench.data.splits import TRAIN_DRAWERS


@dataclass
class NetworkConfig:
    # network: "conv" (channels, kernels) or "mlp" (hidden) twin, then an optional fully connected
    # sigmoid layer (fc_units, 0 = none) and the metric comparing two embeddings: "weighted_l1"
    # (Koch's head, sum_j alpha_j |h1_j - h2_j| + b), "euclidean" (-||h1 - h2||^2) or "cosine";
    # "relation" and "maml" are the fixed networks of those papers (see networks.py)
    network: str = "conv"
    metric: str = "weighted_l1"
    pool_last: bool = False  # pool after the last conv block too (Conv-4: 28x28 -> 64 features)
    hidden: tuple[int, ...] = (1024,)
    input_size: int = 105
    channels: tuple[int, ...] = (64, 128, 128, 256)
    kernels: tuple[int, ...] = (10, 7, 4, 4)
    strides: tuple[int, ...] = ()  # per conv layer; empty = all 1
    padding: str = "valid"  # "same" keeps feature maps large on small inputs
    batch_norm: bool = False
    fc_units: int = 4096
    # "paper": Koch's normal initialisations; "paper_gain": his, with conv weights scaled to their
    # fan-in (networks.py says why); "default": PyTorch's
    init: str = "paper"

    def check(self):
        from fewshot_bench.learning.networks import NETWORKS

        require(self.network in NETWORKS, f"network must be one of {', '.join(NETWORKS)}, got {self.network!r}")
        require(self.metric in ("weighted_l1", "euclidean", "cosine"),
                f"metric must be 'weighted_l1', 'euclidean' or 'cosine', got {self.metric!r}")
        require(not self.strides or len(self.strides) == len(self.channels),
                f"strides {self.strides} need one value per conv layer (or none)")
        require(len(self.kernels) == len(self.channels) >= 1,
                f"channels {self.channels} and kernels {self.kernels} need the same length")
        require(self.padding in ("valid", "same"), f"padding must be 'valid' or 'same', got {self.padding!r}")
        require(self.init in ("paper", "paper_gain", "default"),
                f"init must be 'paper', 'paper_gain' or 'default', got {self.init!r}")
        require(self.input_size >= 8, f"input_size must be >= 8, got {self.input_size}")
        require(self.fc_units >= 0, f"fc_units must be >= 0, got {self.fc_units}")


@dataclass
class TrainingConfig(NetworkConfig):
    objective: str = "pairs"  # a registered objective (objectives.OBJECTIVES): the loss and its batches
    # data: the background drawers trained on; ``distortions`` > 0 distorts every image (pairs:
    # distorted copies per pair); 90-degree turns / mirror images of whole alphabets (or of single
    # images, for the classifier) as new classes
    train_drawers: tuple[int, ...] = TRAIN_DRAWERS
    distortions: int = 8
    rotations: bool = False
    reflections: bool = False
    # scoring: average the logits over symmetries applied to query and support alike: 1 = none,
    # 4 = the four 90-degree turns, 8 = the turns and their mirror images (4x or 8x the scoring cost);
    # K shots of a class: "mean" of the per-shot scores, "prototypes" (the metric against the class's
    # mean embedding), "matching" (cosine attention summed per class)
    test_symmetries: int = 1
    class_score: str = "mean"
    # schedule: Adam (the twins' pair recipe may use the paper's SGD) with its learning rate
    # "cosine" (annealed to 0 over all steps), "halving" (halved every ``halve_every`` steps, as
    # Snell et al. and Sung et al.) or "constant" (Finn et al.)
    adam_lr: float = 1e-3
    schedule: str = "cosine"
    halve_every: int = 2000
    weight_decay: float = 0.0
    steps_per_epoch: int = 500
    epochs: int = 200
    patience: int = 20  # epochs without validation improvement before stopping
    # the weights kept: "best" = the best validation epoch's (early stopping, as in the paper);
    # "last" = the final epoch's (for a schedule that anneals to zero, where a few hundred
    # validation trials cannot tell apart epochs a point or less apart)
    keep: str = "best"
    # a fixed training compute instead of a step count: ``budget_gflop`` > 0 sets the steps of each
    # epoch so that the ``epochs`` spend it (a step's forward and backward FLOPs counted on a probe
    # step before training); ``snapshots``: epochs whose weights are kept too, scored with
    # keep="epochN" (one training read at several budgets)
    budget_gflop: float = 0.0
    snapshots: tuple[int, ...] = ()
    # ensemble: independently trained networks whose scores are averaged; on a CPU they train
    # side by side in processes (one thread each beats two threads on one small network)
    members: int = 1
    # training forward passes: "bf16" under bfloat16 autocast (with channels-last layout 1.7-1.9x
    # faster per epoch on an AVX512-BF16 CPU, slower where bf16 is emulated), "auto" = bf16 where
    # oneDNN supports it on the CPU, else fp32; evaluation always runs in float32
    precision: str = "fp32"
    # the training forward pass through torch.compile (inductor): opt-in, as it made steps slower on
    # both 2-core development CPUs (AVX2: a Conv-4 step 0.70-0.83x as fast; AVX512-BF16: the cpu
    # conv siamese step 0.75x in bf16, 0.93x in fp32); without a C++ compiler it trains eagerly
    compile: bool = False
    device: str = "auto"  # "auto": CUDA when available, else CPU

    def check(self):
        super().check()
        from fewshot_bench.learning.objectives import OBJECTIVES

        require(self.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        require(self.objective != "maml" or self.network == "maml", "objective=maml needs network=maml (the maml method)")
        require(self.class_score in ("mean", "prototypes", "matching"),
                f"class_score must be 'mean', 'prototypes' or 'matching', got {self.class_score!r}")
        require(self.members >= 1, f"members must be >= 1, got {self.members}")
        require(self.precision in ("fp32", "bf16", "auto"),
                f"precision must be 'fp32', 'bf16' or 'auto', got {self.precision!r}")
        require(self.test_symmetries in (1, 4, 8), f"test_symmetries must be 1, 4 or 8, got {self.test_symmetries}")
        snapshots = ", ".join(f"epoch{n}" for n in self.snapshots)
        require(self.keep in ("best", "last") or self.keep in {f"epoch{n}" for n in self.snapshots},
                f"keep must be 'best' or 'last'{f' (or a snapshot: {snapshots})' if snapshots else ''}, "
                f"got {self.keep!r}")
        require(all(1 <= n <= self.epochs for n in self.snapshots),
                f"snapshots must be epochs 1-{self.epochs}, got {self.snapshots}")
        require(self.budget_gflop >= 0, f"budget_gflop must be >= 0, got {self.budget_gflop}")
        require(self.schedule in ("cosine", "halving", "constant"),
                f"schedule must be 'cosine', 'halving' or 'constant', got {self.schedule!r}")
        require_minimums(self, halve_every=1, epochs=1, patience=1, distortions=0, steps_per_epoch=1)
        require(all(1 <= d <= 20 for d in self.train_drawers), f"train_drawers must be in 1-20, got {self.train_drawers}")


@dataclass
class ClassifierConfig(TrainingConfig):
    objective: str = "classes"
    batch_size: int = 128  # background images per step
    normalise: str = "none"  # "cl2n": features centred on the background mean, L2-normalised (SimpleShot)

    def check(self):
        super().check()
        require(self.objective == "classes", f"a classifier trains with objective=classes, got {self.objective!r}")
        require(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        require(self.normalise in ("none", "cl2n"), f"normalise must be 'none' or 'cl2n', got {self.normalise!r}")


@dataclass
class TrialConfig(TrainingConfig):
    # a step: ``alphabets_per_batch`` groups (MAML: tasks) of ``way`` characters by ``drawers_per_character``
    alphabets_per_batch: int = 4
    way: int = 20
    drawers_per_character: int = 4

    def check(self):
        super().check()
        require_minimums(self, way=2, alphabets_per_batch=1)
        require(2 <= self.drawers_per_character <= 20,
                f"drawers_per_character must be 2-20, got {self.drawers_per_character}")
        require(self.drawers_per_character <= len(self.train_drawers) or self.objective == "pairs",
                "drawers_per_character cannot exceed the number of train_drawers")


@dataclass
class TwinConfig(TrialConfig):
    # pairs objective (the paper): same/different pairs, loss "bce" (the sigmoid head) or
    # "contrastive" with a margin (Hadsell et al. 2006)
    loss: str = "bce"
    margin: float = 1.0
    optimizer: str = "sgd"  # "sgd": the paper's layer-wise schedule; "adam": cosine over all steps
    pairs: int = 150_000
    batch_size: int = 128
    # batches per epoch: 0 = one pass over the pairs and their distorted copies; N = exactly N
    # batches (fewer than a pass, or more passes over a small pool), a fixed budget for any pool
    pair_steps: int = 0
    # the paper's SGD: values per layer (conv1..convN, fc, head); one value = all layers
    lr: tuple[float, ...] = (1e-2,)
    momentum: tuple[float, ...] = (0.9,)  # final momentum per layer
    momentum_start: float = 0.5
    momentum_ramp_epochs: int = 20  # momentum rises linearly to its final value over these epochs
    l2: tuple[float, ...] = (2e-4,)
    lr_decay: float = 0.01  # per epoch
    # what scores a trained twin's pairs: "head" (its metric, as trained) or "l1" (the plain L1 distance
    # of the embeddings, the head's weights ignored); validation during training always uses the head
    score_with: str = "head"

    def check(self):
        super().check()
        require(self.loss in ("bce", "contrastive"), f"loss must be 'bce' or 'contrastive', got {self.loss!r}")
        require(self.optimizer in ("sgd", "adam"), f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        require(self.loss != "bce" or self.metric == "weighted_l1" or self.objective != "pairs",
                "the bce pair loss needs metric=weighted_l1 (the sigmoid head)")
        require(self.margin > 0, f"margin must be > 0, got {self.margin}")
        require(self.score_with in ("head", "l1"), f"score_with must be 'head' or 'l1', got {self.score_with!r}")
        require_minimums(self, pairs=2, batch_size=2, pair_steps=0)
        n = self.n_layers
        for name in ("lr", "momentum", "l2"):
            values = getattr(self, name)
            require(len(values) in (1, n), f"{name} needs 1 or {n} values (one per layer: twin layers, fc, head), "
                                           f"got {len(values)}")

    @property
    def pair_epoch_steps(self) -> int:
        """Batches an epoch of the pairs objective: ``pair_steps``, else one pass over the pairs and
        their distorted copies."""
        return self.pair_steps or -(-self.pairs * (1 + self.distortions) // self.batch_size)

    @property
    def n_layers(self) -> int:
        """Layers with their own SGD settings: twin layers, the fc layer and the head (if any)."""
        twin = len(self.channels) if self.network == "conv" else len(self.hidden)
        return twin + (self.fc_units > 0) + (self.metric == "weighted_l1")


@dataclass
class EpisodeConfig(TrialConfig):
    # the first ``shot`` drawers of a grid are the support, the others its queries; classes from one
    # alphabet (Koch's task) or from any (``across_alphabets``: Vinyals' episodes)
    shot: int = 1
    across_alphabets: bool = False

    def check(self):
        super().check()
        require(self.shot >= 1, f"shot must be >= 1, got {self.shot}")
        require(self.shot < self.drawers_per_character or self.objective == "trials",
                f"shot ({self.shot}) must leave query drawers (drawers_per_character {self.drawers_per_character})")


@dataclass
class MetricConfig(EpisodeConfig):
    objective: str = "prototypes"
    # K shots of a class compared as their "mean" embedding (Snell) or their "sum" (Sung et al.'s
    # relation networks, each trained for its K)
    pool_shots: str = "mean"
    cosine_scale: float = 0.0  # metric cosine: a learned scale on the similarities, starting here (0 = none)
    fce: bool = False  # matching networks' full-context embeddings
    fce_steps: int = 5  # attention steps of the query LSTM

    def check(self):
        super().check()
        require(self.pool_shots in ("mean", "sum"), f"pool_shots must be 'mean' or 'sum', got {self.pool_shots!r}")
        require(self.cosine_scale >= 0, f"cosine_scale must be >= 0, got {self.cosine_scale}")
        require(self.fce_steps >= 1, f"fce_steps must be >= 1, got {self.fce_steps}")
        require(self.objective != "relation" or self.network == "relation", "objective=relation needs network=relation")


@dataclass
class MamlConfig(EpisodeConfig):
    network: str = "maml"
    objective: str = "maml"
    # inner-loop steps and step size in training and at test; first-order approximation
    inner_steps: int = 1
    test_inner_steps: int = 3
    inner_lr: float = 0.4
    first_order: bool = False

    def check(self):
        super().check()
        require(self.network == "maml" and self.objective == "maml",
                f"MAML adapts its own network: network and objective must be 'maml', got {self.network!r}, "
                f"{self.objective!r}")
        require(self.inner_steps >= 1, f"inner_steps must be >= 1, got {self.inner_steps}")
        require(self.test_inner_steps >= 0, f"test_inner_steps must be >= 0, got {self.test_inner_steps}")


def field_names(config_class) -> list[str]:
    return [f.name for f in dataclasses.fields(config_class)]
