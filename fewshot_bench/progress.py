"""Rich progress bars for long work; silent when not attached to a terminal-like console, but for the
steps a caller asks to log (a long job under nohup then leaves a line per finished run)."""
from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class StageProgress:
    """One bar per stage (``stage(label)``, then ``start(total)`` and ``advance()``)."""

    def __init__(self, console: Console | None = None, enabled: bool = True):
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 console=console, disable=not enabled, transient=False)
        self.label = ""
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def stage(self, label: str) -> None:
        self.label = label
        self.task = None

    def start(self, total: int | None) -> None:
        self.task = self.progress.add_task(self.label, total=total, info="")

    def advance(self, info: str | None = None, log: bool = False) -> None:
        """One step done; with ``log``, a console that is not a terminal (a log file) gets a line too."""
        if self.task is not None:
            self.progress.advance(self.task)
            if info is not None:
                self.progress.update(self.task, info=info)
            console = self.progress.console
            if log and not self.progress.disable and not console.is_terminal:
                task = next(t for t in self.progress.tasks if t.id == self.task)
                console.print(f"{time.strftime('%H:%M:%S')} {self.label}: {task.completed:.0f}/{task.total or 0:.0f}"
                              + (f" {info}" if info else ""), highlight=False, markup=False, soft_wrap=True)
