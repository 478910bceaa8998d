"""The ``t2ibench`` command line: a thin typer shell over the library.

Each area adds its commands from its own module (``register(app)``), and every command imports its
heavy dependencies inside the function, so ``t2ibench --help`` stays fast.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys

# OpenMP's busy-waiting workers make 2-thread torch many times slower whenever the cores are
# shared; passive waiting costs little on an idle machine. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

app = typer.Typer(
    name="t2ibench",
    help="Benchmark customized text-to-image models (the LyCORIS ICLR 2024 protocol).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# One module per area; each defines ``register(app: typer.Typer) -> None``.
COMMAND_MODULES = [
    "t2ibench.cli.core",
    "t2ibench.cli.analysis",
    "t2ibench.cli.run",
    "t2ibench.cli.checkpoints",
    "t2ibench.cli.generate",
    "t2ibench.cli.train",
    "t2ibench.cli.export",
    "t2ibench.cli.toy",
    "t2ibench.cli.toy_validity",
    "t2ibench.cli.agreement",
    "t2ibench.cli.plan",
]

for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:
    """Console-script entry point; user errors print one line and exit 2, never a traceback."""
    import logging

    from t2ibench.cli._console import summarise_warnings
    from t2ibench.errors import T2IBenchError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    summarise_warnings()
    try:
        app()
    except T2IBenchError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(2)
    except OSError as exc:
        # A full disk, a read-only or missing folder anywhere outside the places that say more:
        # still one line naming the file, never a traceback.
        if exc.errno not in _ONE_LINE_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            why = "disk full; finished work is kept, free space and rerun the same command"
        else:
            why = exc.strerror or str(exc)
        typer.secho(f"error: {where}{why}", fg="red", err=True)
        sys.exit(2)


_ONE_LINE_ERRNOS = {
    errno.ENOSPC,
    getattr(errno, "EDQUOT", errno.ENOSPC),
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
}
