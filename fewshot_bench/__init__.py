"""fewshot-bench: Koch et al. 2015 one-shot benchmarks and a harness to compare methods."""

__version__ = "0.1.0"
