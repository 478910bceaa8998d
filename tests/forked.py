"""A real process for the tests whose point is a process (SIGKILL or Ctrl-C mid-work, a hang
stopped by a timeout), made by forking the test's own process instead of starting a fresh Python:
the child already has torch, diffusers and transformers imported (a fresh one pays about 8 s of
CPU for them; docs/testing.md). The child runs a function (e.g. the ``t2ibench`` entry point
through :func:`t2ibench.testing.run_cli`), writes its stdout and stderr to files and leaves with
``os._exit``: no pytest teardown, no atexit handler of the parent runs in it.

Forking is safe here because the test process computes on one thread (tests/conftest.py pins
torch and OpenMP to one), as PyTorch's own DataLoader workers are forked processes running torch.
Where the fresh interpreter itself is the point (import weight, ``python -m t2ibench``, entry
points on a fresh path) the tests still start one."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path


class Forked:
    """``target()`` in a forked child; ``target`` returns ``(exit status, stdout, stderr)``.
    Mirrors the parts of :class:`subprocess.Popen` the tests use: ``pid``, ``poll``, ``wait``,
    ``send_signal``, ``kill``, ``returncode``, and after the end ``stdout`` and ``stderr`` (kept
    in a new folder under ``folder``)."""

    def __init__(self, target: Callable[[], tuple[int, str, str]], folder: Path):
        self._folder = Path(tempfile.mkdtemp(prefix="forked-", dir=folder))  # its streams
        self.returncode: int | None = None
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code, out, err = 1, "", ""
            try:
                # C-level output of the child stays out of the parent's captured streams
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 1)
                os.dup2(null, 2)
                # Ctrl-C raises KeyboardInterrupt, as in a fresh Python (the parent, an xdist
                # worker, may ignore SIGINT)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                code, out, err = target()
            except BaseException:
                err += traceback.format_exc()
            finally:
                try:
                    (self._folder / "stdout").write_text(out)
                    (self._folder / "stderr").write_text(err)
                finally:
                    os._exit(code)
        self.pid = pid

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """The exit status (``-N`` for a signal N); :class:`subprocess.TimeoutExpired` after
        ``timeout`` seconds, the child killed."""
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                self.kill()
                self.wait()
                raise subprocess.TimeoutExpired(f"forked {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _read(self, name: str) -> str:
        path = self._folder / name
        return path.read_text() if path.is_file() else ""

    @property
    def stdout(self) -> str:
        return self._read("stdout")

    @property
    def stderr(self) -> str:
        return self._read("stderr")


def forked_cli(*args, folder: Path, cwd=None) -> Forked:
    """``t2ibench ARGS`` (the console entry point, its exit status and streams) in a forked
    child."""

    def target():
        from t2ibench.testing import run_cli

        done = run_cli(*args, cwd=cwd)
        return done.returncode, done.stdout, done.stderr

    return Forked(target, folder)
