"""Run the ``t2ibench`` command in this process, as a test (ours or a plug-in's) would run
``python -m t2ibench ARGS`` in a subprocess: the same entry point (:func:`t2ibench.cli.main`, its
one-line errors and exit status 2, its warning summary, its logging format), stdout and stderr
captured apart, the exit status returned, nothing of the call left behind (argv, working folder,
environment, warning hook, logging handlers). A subprocess pays a fresh Python with torch,
diffusers and transformers imported (about 4 s of CPU on this project's machines) on every call;
tests that need a fresh process (signals, import weight, entry points) still start one."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path


def run_cli(
    *args: str | os.PathLike,
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``t2ibench ARGS`` in this process; returns what :func:`subprocess.run` with
    ``capture_output=True, text=True`` would (``returncode``, ``stdout``, ``stderr``). An uncaught
    exception propagates (a subprocess would print its traceback and exit 1)."""
    import atexit

    from t2ibench.cli import main

    argv = ["t2ibench", *map(str, args)]
    out, err = io.StringIO(), io.StringIO()
    at_exit: list = []
    saved_env = dict(os.environ)
    root = logging.getLogger()
    saved_logging = (root.handlers[:], root.level)
    saved_argv, saved_cwd = sys.argv, Path.cwd()
    saved_register = atexit.register
    torch = sys.modules.get("torch")
    saved_threads = torch.get_num_threads() if torch is not None else None
    code: int = 0
    try:
        sys.argv = argv
        if cwd is not None:
            os.chdir(cwd)
        os.environ.update(env or {})
        root.handlers = []  # so main()'s logging.basicConfig writes to this call's stderr
        # main() registers its warning summary to print at exit: here, when the command ends
        atexit.register = lambda fn, *a, **k: at_exit.append((fn, a, k)) or fn
        with (
            warnings.catch_warnings(),  # main() installs its own warning hook
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                main()
            except SystemExit as exc:  # typer always exits; main() exits 2 on a user error
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            finally:
                for fn, a, k in at_exit:
                    fn(*a, **k)
                for handler in root.handlers:
                    handler.flush()
    finally:
        atexit.register = saved_register
        root.handlers, root.level = saved_logging[0], saved_logging[1]
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        if saved_threads is not None:
            torch.set_num_threads(saved_threads)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
