"""The bench from Python: what ``bench run``, ``bench compare`` and ``bench table`` do, as four calls
that return plain objects, for a notebook.

    import fewshot_bench as fb

    result = fb.run("pixel_1nn", "omniglot20", trial_seeds="0-9")   # a Result: accuracy, intervals, trials
    mine = fb.evaluate(my_module, "omniglot20")                     # any images -> embeddings callable
    fb.compare(result, mine)                                        # McNemar's exact test, paired
    fb.load_runs()                                                  # the store's runs as a DataFrame

``run`` uses the CLI's store (``$FEWSHOT_BENCH_STORE``, else ``./runs``), data root and decoded-data
cache, so a notebook and the CLI share trained networks and stored runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fewshot_bench.api import PROTOCOLS, Method
from fewshot_bench.config import require
from fewshot_bench.errors import UserError
from fewshot_bench.evaluation import class_means
from fewshot_bench.experiments.runner import PartialDraws, RunSpec, make_record, run as run_spec, score_draws, spec_key
from fewshot_bench.imageset import as_batch, to_tensor
from fewshot_bench.keys import record_key
from fewshot_bench.records import did_not_learn, learning_check, load_records, save_record, store_dir
from fewshot_bench.seeding import parse_seeds, seed_everything
from fewshot_bench.stats import mcnemar_exact, p_text, t_interval


@dataclass
class Result:
    """One run: a method scored on a protocol's trials (every trial draw), with its record.

    ``accuracy`` and the half-widths are fractions (0.885 ± 0.020); ``ci95`` is the 95% interval over
    trial sets (how precisely the method is measured on these trials), ``ci95_alphabets`` over Koch's
    10 test alphabets (what it says about new alphabets; None on other protocols)."""

    record: dict
    path: Path | None = None  # where the record is stored (None: not stored)

    @property
    def method(self) -> str:
        return self.record["method"]

    @property
    def protocol(self) -> str:
        return self.record["protocol"]

    @property
    def accuracy(self) -> float:
        return self.record["accuracy"]

    @property
    def ci95(self) -> float:
        return self.record["ci95"]

    @property
    def ci95_alphabets(self) -> float | None:
        return self.record.get("ci95_alphabets")

    @property
    def draw_accuracies(self) -> list[float]:
        """Accuracy of each trial draw, in ``trial_seeds`` order."""
        return self.record["draw_accuracies"]

    @property
    def correct(self) -> np.ndarray:
        """1/0 per trial, every draw's trials in order: what a paired test compares."""
        return np.array([c for d in self.record["draws"] for c in d["correct"]], dtype=int)

    @property
    def learned(self) -> bool | None:
        """Whether the training passed the learning check (None: nothing trained, or not checkable)."""
        training = self.record.get("training")
        return learning_check(training["history"], self.record.get("method_config"))["learned"] if training else None

    def trials(self) -> pd.DataFrame:
        """One row per trial: its draw, trial set, answer, prediction and whether it was right."""
        rows = []
        for d in self.record["draws"]:
            n = len(d["correct"])
            rows.append(pd.DataFrame({"trial_seed": d["trial_seed"], "group": d["groups"], "correct": d["correct"],
                                      "prediction": d.get("predictions", [None] * n),
                                      "answer": d.get("answers", [None] * n)}))
        return pd.concat(rows, ignore_index=True)

    def to_frame(self) -> pd.DataFrame:
        """This run as a one-row DataFrame, with the columns of `load_runs`."""
        return runs_frame([self.record])

    def __repr__(self) -> str:
        alphabets = f", ± {100 * self.ci95_alphabets:.2f} over alphabets" if self.ci95_alphabets is not None else ""
        flag = did_not_learn(self.record)
        preset = f" ({self.record['preset']})" if self.record.get("preset") else ""
        return (f"Result({self.method}{preset} on {self.protocol}: {100 * self.accuracy:.2f}% ± {100 * self.ci95:.2f} over "
                f"{self.record['ci_unit']}{alphabets}; {self.record['n_trials']:,} trials"
                f"{f'; {flag}' if flag else ''})")


def seeds_of(trial_seeds) -> list[int] | None:
    """Trial draws as a list: None, an int, a range or list of ints, or the CLI's text ("0-9", "0,4,7")."""
    if trial_seeds is None:
        return None
    if isinstance(trial_seeds, (int, np.integer)):
        return [int(trial_seeds)]
    if isinstance(trial_seeds, str):
        return parse_seeds(trial_seeds)
    return [int(s) for s in trial_seeds]


def run(method: str, protocol: str, preset: str | None = None, trial_seeds=None, *, seed: int = 0,
        protocol_options: dict | None = None, store: str | Path | None = None, data_root: str | Path | None = None,
        reuse: bool = True, progress=None, **options) -> Result:
    """Fit ``method`` (its ``preset``, with ``options`` as ``--set`` would give them) once and score it on
    ``protocol``'s trial draws, as ``bench run`` does; the record goes to the store.

    ``trial_seeds``: 3, range(10), [0, 4, 7] or "0-9" (default: the seed). With ``reuse``, a run the
    store already holds with the same key (method, config, protocol, seed, draws) is returned without
    scoring it again; a learned method's trained weights are reused from the store's checkpoints either
    way, and draws an interrupted run scored are kept. ``progress``: a ``StageProgress`` (``bench run``'s bars)."""
    store_path = store_dir(store)
    spec = RunSpec(method=method, protocol=protocol, preset=preset, method_options=dict(options),
                   protocol_options=dict(protocol_options or {}), seed=seed, trial_seeds=seeds_of(trial_seeds),
                   data_root=Path(data_root) if data_root else None, work_dir=store_path / "checkpoints")
    if reuse and store_path.is_dir():
        key = spec_key(spec)
        stored = [r for r in load_records(store_path) if record_key(r) == key]
        if stored:
            return Result(stored[-1], store_path / f"{stored[-1]['run_id']}.json")
    record = run_spec(spec, progress, partial=store_path / "partial")
    path = save_record(record, store_path)
    PartialDraws(store_path / "partial", record_key(record)).discard()
    return Result(record, path)


# ---------------------------------------------------------------- any embedding, no plugin


@dataclass
class EmbeddingConfig:
    """How `evaluate` scores an embedding (kept in the record as a method's config)."""

    input_size: int | None = 28  # side the images are resized to (None: as the protocol has them)
    classifier: str = "nearest"  # "nearest": a query takes its nearest support's class; "prototypes": the class mean's
    distance: str = "euclidean"  # "euclidean", "cosine" or "l1"
    batch_size: int = 256  # images embedded at once

    def check(self):
        require(self.classifier in ("nearest", "prototypes"),
                f"classifier must be 'nearest' or 'prototypes', got {self.classifier!r}")
        require(self.distance in ("euclidean", "cosine", "l1"),
                f"distance must be 'euclidean', 'cosine' or 'l1', got {self.distance!r}")
        require(self.input_size is None or self.input_size >= 4, f"input_size must be >= 4, got {self.input_size}")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")


class EmbeddingMethod(Method):
    """A user's embedding (a ``torch.nn.Module`` or any callable, images (N, C, H, W) in [0, 1] ->
    embeddings (N, F)) as a method: each distinct image of an evaluation embedded once, queries scored
    against the support (or the class means) by a distance."""

    Config = EmbeddingConfig
    takes_colour = True

    def __init__(self, embed, config: EmbeddingConfig, name: str):
        super().__init__(config)
        self.embedder, self.name, self.preset = embed, name, None
        module = embed if isinstance(embed, torch.nn.Module) else None
        parameter = next(iter(module.parameters()), None) if module is not None else None
        self.device = parameter.device if parameter is not None else torch.device("cpu")

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Float images (N, H, W) or (N, C, H, W) -> (N, F) float embeddings, in batches."""
        if isinstance(self.embedder, torch.nn.Module):
            self.embedder.eval()
        out = []
        for i in range(0, len(images), self.config.batch_size):
            h = self.embedder(as_batch(images[i:i + self.config.batch_size]).to(self.device))
            h = torch.as_tensor(h)
            if h.dim() != 2 or len(h) != len(images[i:i + self.config.batch_size]):
                raise UserError(f"{self.name} gave embeddings of shape {tuple(h.shape)} for "
                                f"{len(images[i:i + self.config.batch_size])} images; it must return (N, F)")
            out.append(h.float().cpu())
        return torch.cat(out)

    def distances(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(A, F), (B, F) -> (A, B) distances."""
        if self.config.distance == "cosine":
            return 1 - torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
        return torch.cdist(a, b, p=1 if self.config.distance == "l1" else 2)

    @torch.inference_mode()
    def score_indexed(self, images, sets):
        h = self.embed(images)
        return [self._set_scores(h[torch.as_tensor(q)], h[torch.as_tensor(s)], rest[0] if rest else None)
                for q, s, *rest in sets]

    def _set_scores(self, queries, support, support_class) -> torch.Tensor:
        """(Q, S) scores, higher = more alike. K shots: every shot of a class gets its class's score
        (the nearest shot's, or the prototype's), so the evaluation's mean over shots is that score."""
        if support_class is None:
            return -self.distances(queries, support)
        classes = torch.as_tensor(np.asarray(support_class), dtype=torch.long)
        if self.config.classifier == "prototypes":
            per_class = -self.distances(queries, class_means(support.T, classes).T)
        else:
            scores = -self.distances(queries, support)
            per_class = torch.full((len(queries), int(classes.max()) + 1), -torch.inf)
            per_class = per_class.scatter_reduce(1, classes.expand(len(queries), -1), scores, "amax")
        return per_class[:, classes]

    @torch.inference_mode()
    def score_pairs(self, first, second):
        a, b = self.embed(first), self.embed(second)
        return -self.distances(a, b).diagonal() if len(a) else torch.zeros(0)

    def score(self, queries, support):
        return self.score_indexed(torch.cat([queries, support]),
                                  [(torch.arange(len(queries)), torch.arange(len(queries), len(queries) + len(support)))])[0]


def evaluate(embed, protocol: str = "omniglot20", trial_seeds=None, *, classifier: str = "nearest",
             distance: str = "euclidean", input_size: int | None = 28, batch_size: int = 256,
             protocol_options: dict | None = None, name: str | None = None, seed: int = 0,
             data_root: str | Path | None = None, store: str | Path | None = None) -> Result:
    """Score an embedding on a protocol without a plugin file: ``embed`` is a ``torch.nn.Module`` or any
    callable mapping images (N, C, H, W) in [0, 1] (ink = 1; Omniglot and MNIST have C = 1) to
    embeddings (N, F). Images are resized to ``input_size`` (None: as the protocol has them; Omniglot's
    are 105x105). A query takes the class of its nearest support image (``classifier="nearest"``) or of
    the nearest class mean (``"prototypes"``, the same with one shot), by ``distance``. Nothing is trained:
    the module is used as it is (in eval mode, on its own device). The record is stored only where
    ``store`` is given."""
    config = EmbeddingConfig(input_size, classifier, distance, batch_size)
    config.check()
    name = name or f"embedding:{getattr(embed, '__name__', type(embed).__name__)}"
    method = EmbeddingMethod(embed, config, name)
    protocol_cls = PROTOCOLS.get(protocol)
    protocol_ = protocol_cls(protocol_cls.make_config(dict(protocol_options or {})),
                             data_root=Path(data_root) if data_root else None)
    spec = RunSpec(method=name, protocol=protocol, protocol_options=dict(protocol_options or {}), seed=seed,
                   trial_seeds=seeds_of(trial_seeds))
    protocol_.check_feasible(method)
    seed_everything(seed)
    record = make_record(spec, method, protocol_, score_draws(spec, method, protocol_), 0.0)
    path = save_record(record, store_dir(store)) if store is not None else None
    return Result(record, path)


# ---------------------------------------------------------------- paired tests and the store


@dataclass
class Comparison:
    """Two results on identical trials: accuracies, the paired difference (b - a, fractions) with its
    95% t-interval over the trial sets both share, and McNemar's exact test on the trials only one
    gets right."""

    a: Result
    b: Result
    only_a: int  # trials a gets right and b wrong
    only_b: int
    p_value: float
    difference: float  # accuracy of b minus a
    ci95: float  # half-width over paired trial sets

    def __repr__(self) -> str:
        return (f"Comparison({self.b.method} - {self.a.method} on {self.a.protocol}: {100 * self.difference:+.2f} "
                f"± {100 * self.ci95:.2f} points; only {self.a.method} right {self.only_a}, only {self.b.method} "
                f"right {self.only_b}; exact McNemar {p_text(self.p_value)} over {len(self.a.correct):,} paired trials)")


def compare(a, b, protocol: str | None = None, **run_options) -> Comparison:
    """The paired test of two methods on identical trials. ``a`` and ``b`` are Results, or method names
    run (or found in the store) on ``protocol`` with ``run_options`` (``trial_seeds``, ``seed``, ...,
    as `run` takes them; a preset as ``("conv_siamese", "cpu")``)."""
    results = []
    for x in (a, b):
        if isinstance(x, Result):
            results.append(x)
            continue
        if protocol is None:
            raise UserError("compare: give the protocol to run method names on (protocol='omniglot20')")
        method, preset = (x, None) if isinstance(x, str) else x
        results.append(run(method, protocol, preset, **run_options))
    first, second = results
    same = [(d["trial_seed"], d["groups"]) for d in first.record["draws"]] == \
           [(d["trial_seed"], d["groups"]) for d in second.record["draws"]]
    if first.protocol != second.protocol or first.record["protocol_config"] != second.record["protocol_config"] or not same:
        raise UserError(f"compare: {first.method} and {second.method} were not scored on identical trials (protocol, "
                        "its options and the trial draws must match)")
    test = mcnemar_exact(first.correct, second.correct)
    groups = np.array([f"{d['trial_seed']}/{g}" for d in first.record["draws"] for g in d["groups"]])
    gain = second.correct - first.correct
    _, half = t_interval([gain[groups == g].mean() for g in dict.fromkeys(groups)])
    return Comparison(first, second, test["only_a"], test["only_b"], test["p_value"],
                      float(second.accuracy - first.accuracy), half)


RUN_COLUMNS = ["run_id", "method", "preset", "protocol", "seed", "trial_seeds", "accuracy", "ci95", "ci95_alphabets",
               "n_trials", "learned", "train_seconds", "eval_seconds", "finished", "method_config", "protocol_config"]


def runs_frame(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        training = r.get("training")
        rows.append({**{k: r.get(k) for k in RUN_COLUMNS},
                     "learned": learning_check(training["history"], r.get("method_config"))["learned"] if training else None})
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def load_runs(store: str | Path | None = None) -> pd.DataFrame:
    """The store's runs (default the CLI's: ``$FEWSHOT_BENCH_STORE``, else ``./runs``), one row each,
    oldest first: method, preset, protocol, seeds, accuracy with both intervals (fractions), trials,
    whether the training learned, seconds, and the configs. ``bench table`` summarises the same runs."""
    return runs_frame(load_records(store_dir(store)))


__all__ = ["Comparison", "EmbeddingConfig", "Result", "compare", "evaluate", "load_runs", "run"]
