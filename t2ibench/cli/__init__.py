"""The ``t2ibench`` command line: a thin typer shell over the library.

Every module of this package (but ``_*`` helpers) is a command or a small family of them and adds
them with ``register(app)``; plug-ins (the toy world included) add theirs through the entry-point
group ``t2ibench.commands`` (a module or object with ``register``). Commands import their heavy
dependencies inside the function, so ``t2ibench --help`` stays fast.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import pkgutil
import sys
from importlib.metadata import entry_points

# OpenMP's busy-waiting workers make 2-thread torch many times slower whenever the cores are
# shared; passive waiting costs little on an idle machine. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer

COMMANDS_GROUP = "t2ibench.commands"
log = logging.getLogger(__name__)

app = typer.Typer(
    name="t2ibench",
    help="Benchmark customized text-to-image models (the LyCORIS ICLR 2024 protocol).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def command_modules() -> list[str]:
    """The built-in command modules: every public module of this package, by name."""
    return sorted(
        f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")
    )


def _register_all(target: typer.Typer) -> None:
    for name in command_modules():
        importlib.import_module(name).register(target)
    for ep in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        try:
            ep.load().register(target)
        except Exception as exc:  # a broken plug-in must not break the built-in commands
            log.warning("command plug-in %s (%s) not loaded: %s", ep.name, ep.value, exc)


_register_all(app)


def main() -> None:
    """Console-script entry point; user errors print one line and exit 2, never a traceback."""
    from t2ibench.cli._console import summarise_warnings
    from t2ibench.errors import T2IBenchError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # diffusers imports bitsandbytes when it is installed (pyiqa requires it), and its 4-bit CPU
    # kernel lookup logs two warnings at every start about a kernel t2ibench never uses
    for name in ("bitsandbytes", "kernels"):
        logging.getLogger(name).setLevel(logging.ERROR)
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
