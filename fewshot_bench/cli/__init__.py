"""The ``bench`` command: one module per subcommand (``cli/<name>.py``), assembled in ``main``."""
from fewshot_bench.cli.main import main

__all__ = ["main"]
