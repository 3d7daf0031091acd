"""Lake et al.'s official 20 one-shot runs (400 trials), the trials behind Koch 2015's Table 2
baselines. Read from the data root's ``omniglot/all_runs.zip`` (``bench data fetch`` downloads
it) or from ``--runs PATH``, a folder or zip in the published layout (see ``fewshot_bench.lake``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fewshot_bench.api import PROTOCOLS
from fewshot_bench.data.datasets import data_root
from fewshot_bench.data.lake import RUNS_FILE, load_runs
from fewshot_bench.data.omniglot import OmniglotBackgroundProtocol


@dataclass(frozen=True)
class LakeRunsConfig:
    runs: str = ""  # folder or zip holding run01..run20; empty: <data root>/omniglot/all_runs.zip


@PROTOCOLS.register("lake_runs")
class LakeRuns(OmniglotBackgroundProtocol):
    summary = "Lake et al.'s 20 official 20-way one-shot runs (400 trials; --runs PATH to override)"
    version = "1"
    Config = LakeRunsConfig
    fixed_trials = True

    def runs_path(self) -> Path:
        return Path(self.config.runs).expanduser() if self.config.runs else data_root(self.data_root) / RUNS_FILE

    def trial_sets(self, trial_seed: int):
        return load_runs(self.runs_path())  # the runs are fixed: the trial seed draws nothing here
