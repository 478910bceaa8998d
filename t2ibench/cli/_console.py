"""Rich console for commands: piped output gets wide lines instead of rich's 80 columns, so
names stay whole in logs and in ``grep``."""

from __future__ import annotations

from rich.console import Console


def console() -> Console:
    c = Console()
    return c if c.is_terminal else Console(width=200)


def summarise_warnings() -> None:
    """Each warning category is shown once, in one line without the source lines Python adds; the
    repeats (a small run's per-leaf Fréchet warnings: 16 of them) are counted and summarised in one
    line when the command ends."""
    import atexit
    import sys
    import warnings

    if getattr(warnings.showwarning, "summarised", False):
        return
    counts: dict[type, int] = {}

    def show(message, category, filename, lineno, file=None, line=None):
        counts[category] = counts.get(category, 0) + 1
        if counts[category] == 1:
            print(f"warning: {message} ({category.__name__})", file=file or sys.stderr)

    def summary() -> None:
        for category, n in counts.items():
            if n > 1:
                print(f"warning: {n - 1} more {category.__name__} warnings, the first one shown above",
                      file=sys.stderr)  # fmt: skip

    show.summarised = True
    warnings.showwarning = show
    atexit.register(summary)


def print_answer(report_dir) -> None:
    """The recommendation of the report in ``report_dir``: the last lines ``run``,
    ``evaluate-checkpoints`` and ``analyze`` print (:func:`t2ibench.analysis.answer.print_answer`)."""
    from t2ibench.analysis.answer import print_answer as _print

    _print(report_dir)
