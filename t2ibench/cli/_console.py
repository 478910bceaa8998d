"""Rich console for commands: piped output gets wide lines instead of rich's 80 columns, so
names stay whole in logs and in ``grep``."""

from __future__ import annotations

from rich.console import Console


def console() -> Console:
    c = Console()
    return c if c.is_terminal else Console(width=200)
