"""``bench list``: the registered methods and protocols, with their presets."""
from __future__ import annotations

from rich.table import Table

from fewshot_bench.cli.common import out, plugin_arg


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("list", help="methods and protocols with one-line descriptions",
                              description="Every registered method (with its presets) and protocol, built in or "
                                          "from plugins; a plugin that failed to load is listed with why.")
    plugin_arg(p)
    p.set_defaults(func=command)


def command(args) -> None:
    from fewshot_bench.api import METHODS, PROTOCOLS

    for title, registry in (("methods", METHODS), ("protocols", PROTOCOLS)):
        table = Table(title=title, title_justify="left", show_header=False, box=None)
        for name, cls in registry.items():
            presets = ", ".join(getattr(cls, "presets", {}) or [])
            table.add_row(f"[bold]{name}[/]", cls.summary + (f" [dim](presets: {presets})[/]" if presets else ""))
        for name, why in registry.broken.items():
            table.add_row(f"[red]{name}[/]", f"[red]failed to load: {why}[/]")
        out.print(table)
