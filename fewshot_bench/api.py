"""The two contracts: a Method scores trials, a Protocol makes trials and evaluates methods."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fewshot_bench.config import build_config
from fewshot_bench.errors import UserError
from fewshot_bench.imageset import ImageSet, to_tensor
from fewshot_bench.registry import Registry


@dataclass
class TrialSet:
    """Queries matched against one shared support set.

    ``queries``: (Q, H, W) and ``support``: (S, H, W) images (uint8 ink = 1, or 0-255);
    ``answer[q]`` is the index of query q's correct support image, or, when
    ``support_class`` is given (K-shot), of its correct class. ``group`` names the set for
    statistics (e.g. ``Tibetan#1``): CIs resample whole sets. ``query_ids`` and ``support_ids``
    name each image in its dataset (``Tibetan/character05/17``: alphabet, character, drawer;
    ``run01/test/item01.png``; ``mnist/1234``), so records can show trials without redrawing them.
    """

    queries: np.ndarray
    support: np.ndarray
    answer: np.ndarray
    group: str
    support_class: np.ndarray | None = None  # (S,) class of each support image, K-shot only
    query_ids: list[str] | None = None
    support_ids: list[str] | None = None


@dataclass
class PairSet:
    """Same/different pairs: ``first[i]`` vs ``second[i]``, ``same[i]`` the truth."""

    first: np.ndarray
    second: np.ndarray
    same: np.ndarray
    first_ids: list[str] | None = None  # each image's identity, as in TrialSet
    second_ids: list[str] | None = None


@dataclass
class EmptyConfig:
    pass


class Method:
    """A few-shot method. Subclasses set ``summary``, ``Config`` and ``presets``.

    The constructor stores config only; ``fit`` learns (learned state ends in ``_``);
    ``score`` compares images of one trial set.
    """

    name: str = "?"  # set by the registry
    summary: str = ""
    Config: type = EmptyConfig
    presets: dict[str, dict] = {}
    # where a built-in preset chosen by bench tune came from (study, trial, score, scored_on, command),
    # as a tune-written preset file's [about] says it
    preset_sources: dict[str, dict] = {}
    default_preset: str | None = None
    takes_colour: bool = False  # whether it scores colour images (N, 3, H, W); else grey ones only

    def __init__(self, config=None, seed: int = 0, preset: str | None = None, work_dir: Path | None = None):
        self.config = config if config is not None else self.make_config(preset or self.default_preset)
        self.seed = seed
        self.preset = preset or self.default_preset
        self.work_dir = work_dir  # where a learning method may cache checkpoints

    # options ``bench tune`` searches (name -> ``space.Param``), declared beside the presets
    search_space: dict = {}

    @classmethod
    def search_space_for(cls, config) -> dict:
        """The ranges ``bench tune`` searches from ``config`` (a family may pick by its optimiser)."""
        return dict(cls.search_space)

    @classmethod
    def make_config(cls, preset: str | None = None, overrides: dict | None = None):
        """The config of a named preset (the method's own, else one ``bench tune`` wrote: see
        ``presets.py``) with ``overrides`` applied."""
        presets = cls.presets
        if preset and preset not in presets:
            from fewshot_bench.presets import find_preset

            tuned = find_preset(cls.name, preset)
            if tuned is not None:
                presets = {**presets, preset: tuned}
        return build_config(cls.Config, presets, preset, overrides, f"method {cls.name}")

    @property
    def input_size(self) -> int | None:
        """Side in pixels the method wants its images at; None = as the protocol has them."""
        return getattr(self.config, "input_size", None)

    def fit(self, background: ImageSet, validation: list[TrialSet] | None = None) -> None:
        """Learn from the background set (a no-op for non-learning methods)."""

    def score(self, queries: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """Float images (Q, H, W) and (S, H, W) in [0, 1] -> scores (Q, S), higher = more alike."""
        raise NotImplementedError

    def score_sets(self, sets: list[tuple]) -> list[torch.Tensor]:
        """Several (queries, support) trial sets at once -> their score matrices. Override to
        batch across sets (many small sets, as in MNIST 10-versus-1, cost a call each). K-shot sets
        come as (queries, support, support_class); a method that scores whole classes gives every
        shot of a class that class's score (the evaluation takes the mean over a class's shots)."""
        return [self.score(queries, support) for queries, support, *_ in sets]

    sets_per_call: int = 64  # trial sets handed to score_sets at once: batching without holding all

    def score_indexed(self, images: torch.Tensor, sets: list[tuple]) -> list[torch.Tensor]:
        """Trial sets that share images: ``images`` (N, H, W) prepared once, each set a tuple
        (query rows, support rows[, support_class]) of indices into them -> its (Q, S) scores. The
        default scores the sets through ``score_sets``, ``sets_per_call`` at a time; a method that
        embeds images overrides it to embed each distinct image once for the whole evaluation."""
        out = []
        for first in range(0, len(sets), self.sets_per_call):
            out += self.score_sets([(images[q], images[s], *rest) for q, s, *rest in sets[first:first + self.sets_per_call]])
        return out

    def score_pairs(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """(n, H, W) and (n, H, W) -> (n,) same-ness scores. Override with a batched version."""
        return torch.stack([self.score(a[None], b[None])[0, 0] for a, b in zip(first, second)])

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)

    def resources(self) -> dict:
        """What one run of this method occupies: a scheduler (Ray) reserves it. Override where a
        config trains several processes or on a GPU."""
        return {"cpus": 1, "gpus": 0}

    def prepare(self, images) -> torch.Tensor:
        if np.ndim(images) == 4 and not self.takes_colour:
            raise UserError(f"method {self.name} works on grey images only; run it with --protocol-set channels=1")
        return to_tensor(images, self.input_size)


def check_alphabets(background: ImageSet, heldout_alphabets) -> None:
    """The firewall of alphabet splits: a method's training data holds no validation or test alphabet."""
    leaked = background.alphabets & set(heldout_alphabets)
    if leaked:
        raise RuntimeError(f"held-out alphabets reached training data: {sorted(leaked)}")


class Protocol:
    """An evaluation procedure. Subclasses set ``summary``, ``version`` and ``Config``."""

    name: str = "?"
    summary: str = ""
    version: str = "1"
    Config: type = EmptyConfig
    ci_unit: str = "trial sets"  # what the 95% CI resamples
    fixed_trials: bool = False  # True: one published set of trials, trial seeds draw nothing
    # True: each trial seed draws the trials anew, and one draw swings by points (Koch's 400 trials),
    # so tables evaluate a fitted method on 10 draws; episode protocols average 1,000 episodes instead
    redrawn: bool = False
    later_options: dict = {}  # options added after runs were stored, left out of keys at these values

    def __init__(self, config=None, data_root: Path | None = None, **options):
        self.config = config if config is not None else self.make_config(options)
        self.data_root = data_root

    @classmethod
    def make_config(cls, overrides: dict | None = None):
        return build_config(cls.Config, {}, None, overrides, f"protocol {cls.name}")

    # What a method may learn from, and what it must never see.
    def background(self) -> ImageSet:
        raise NotImplementedError

    def background_key(self):
        """What tells this protocol's background apart from another protocol's, without decoding it:
        protocols whose keys differ train their own networks, so two reproduces may fit them side by
        side. None: the same background as every protocol that says nothing (grouped, as before)."""
        return None

    heldout_alphabets: frozenset = frozenset()

    def check_background(self, background: ImageSet) -> None:
        """The firewall the runner applies before ``fit``: raise if held-out data reached the
        background. Protocols whose split is not by alphabet override it."""
        check_alphabets(background, self.heldout_alphabets)

    def validation(self, seed: int = 0) -> list[TrialSet] | None:
        return None

    def check_feasible(self, method: Method) -> None:
        """Before the method is fitted: raise a UserError if this protocol cannot score it (too few
        test classes for ``way``, too few images for ``shot + queries``, colour images for a method of
        grey ones), so that no training is thrown away. Protocols whose configs fix this need nothing."""

    def tuning_sets(self, trials: int, seed: int = 0) -> list[TrialSet]:
        """About ``trials`` trials drawn from validation data alone (never a test class): what
        ``bench tune`` scores settings on. A protocol without validation data cannot be tuned on."""
        raise UserError(f"protocol {self.name} has no validation data to tune on; tune on omniglot20, "
                        "verification or vinyals")

    def trial_sets(self, trial_seed: int) -> list[TrialSet]:
        raise NotImplementedError

    def evaluate(self, method: Method, trial_seed: int, progress=None) -> dict:
        """Score every trial set; see `fewshot_bench.evaluation.evaluate_trial_sets`."""
        from fewshot_bench.evaluation import evaluate_trial_sets

        return evaluate_trial_sets(method, self.trial_sets(trial_seed), progress)

    def config_dict(self) -> dict:
        """The config as run keys hash it and records keep it; an option in ``later_options`` at
        that value is left out, as runs stored before it existed have it."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self.config).items()
                if k not in self.later_options or v != self.later_options[k]}

    def provenance(self) -> dict | None:
        """What the run record should keep about the data beyond the config (a folder's split)."""
        return None


METHODS = Registry("method", "fewshot_bench.methods", "fewshot_bench.methods", Method)
PROTOCOLS = Registry("protocol", "fewshot_bench.protocols", "fewshot_bench.protocols", Protocol)
