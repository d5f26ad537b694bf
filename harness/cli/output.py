"""Where the commands write: ``console`` (stdout), ``errors`` (stderr), a progress bar.

Off a terminal the consoles are 160 columns wide, so piped tables do not wrap
at 80. A closed stdout raises ``BrokenPipeError``, which ``main`` turns into
exit 141. ``error`` prints the one-line ``error: ...`` that every failing command
ends with.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class _Console(Console):
    """rich's console, but a reader that went away is ``BrokenPipeError`` for ``main``
    to report (rich's own answer is ``SystemExit(1)``, the code of a failed gate)."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


console = _Console(width=None if sys.stdout.isatty() else 160)
errors = _Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def progress_bar() -> tuple[Progress, Callable[[str, float], None]]:
    """A bar per label, and the ``update(label, fraction)`` callback that drives them."""
    bar = Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def update(label: str, fraction: float) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=1.0)
        bar.update(tasks[label], completed=fraction)

    return bar, update


def error(message: str) -> None:
    """One line on stderr: ``error: message``."""
    errors.print("[red]error:[/] ", end="")
    errors.print(message, markup=False, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    """One line on stderr: ``warning: message``."""
    errors.print("[yellow]warning:[/] ", end="")
    errors.print(message, markup=False, highlight=False, soft_wrap=True)
