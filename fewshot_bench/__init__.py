"""fewshot-bench: Koch et al. 2015 one-shot benchmarks and a harness to compare methods.

The package in floors; imports point down only (tests/test_layout.py):

- core (this folder): ``api`` (Method, Protocol, TrialSet, the registries), ``registry``,
  ``config``, ``errors``, ``imageset``, ``evaluation``, ``stats``, ``records`` (the store),
  ``keys``, ``seeding``, ``progress``
- ``data``: the datasets, their caches and downloads, Lake's runs, the Vinyals split, splits
- ``learning``: networks, objectives, samplers, augmentation, the training loop, ensembles, the
  learned-method families
- ``tables``: the TABLES registry and one module per table family; ``bench table``'s view
- ``experiments``: one run, sweeps (here or on Ray), ``bench reproduce``, benchmarks
- ``pictures``: galleries, curves, heatmaps, the HTML report
- ``cli``: ``bench``, one module per subcommand

This file is the front door: ``run``, ``evaluate``, ``compare`` and ``load_runs`` (the Python face,
in ``experiments``) are read from here on first use.

``methods/`` and ``protocols/`` (installed as ``fewshot_bench.methods`` and
``fewshot_bench.protocols``) stand beside the core and import only from the floors below them.
"""

__version__ = "0.1.0"

# the Python API (``experiments/python_api.py``), loaded on first use so that ``import fewshot_bench``
# (and every module that reads ``__version__``) stays light: ``fewshot_bench.run(...)``
PYTHON_API = ("run", "evaluate", "compare", "load_runs", "Result", "Comparison")
__all__ = [*PYTHON_API, "__version__"]


def __getattr__(name: str):
    if name in PYTHON_API:
        from fewshot_bench.experiments import python_api

        return getattr(python_api, name)
    raise AttributeError(f"module 'fewshot_bench' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *PYTHON_API])
