"""Sweep executors: where the runs of a ``t2ibench sweep`` execute.

An executor takes the grid's runs (:class:`~t2ibench.pipeline.run.RunOptions`), executes each
through the normal run entry point (:func:`run_one`) and answers one :class:`RunOutcome` per run;
the sweep (:mod:`t2ibench.pipeline.sweep`) then writes the summary and runs the joint analysis
once, on the driver. A run that fails for a reason of its own (a bad config, a NaN loss) is an
outcome carrying its error, never the end of the sweep; runs resume from their own state, so
running the same sweep again finishes what failed or was cut off and redoes nothing finished.

Each executor is one file in this package that registers itself (``@register_executor("name")``
at the bottom); third parties use the entry-point group ``t2ibench.executors``. An executor module
imports its backend (Ray) inside its functions: ``--executor local`` never imports Ray.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import os
import pkgutil
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.registry import Registry

log = logging.getLogger("t2ibench.sweep")

#: Folder (under the sweep's ``--out``) for the sweep's own bookkeeping: which process runs which
#: run, the storage sentinels.
SWEEP_DIR = ".sweep"


class StorageError(T2IBenchError):
    """A worker cannot see the sweep's ``--out`` folder (runs need one filesystem all share)."""


@dataclass
class RunOutcome:
    """What became of one run: ``status`` is ``done`` or ``failed`` (then ``error`` says why)."""

    name: str
    status: str
    run_dir: str | None = None
    error: str = ""
    seconds: float = 0.0
    where: str = ""  # host:pid that ran it (the last attempt)
    traceback: str = ""
    #: host:pid of earlier attempts whose worker or node was lost (Ray retried the run)
    retried_after: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_error(exc: BaseException) -> str:
    """One line for the summary: the exception's type and its first line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:1000]


def failed(name: str, exc: BaseException, seconds: float = 0.0, where: str = "") -> RunOutcome:
    tb = "".join(traceback.format_exception(exc))
    return RunOutcome(name, "failed", None, describe_error(exc), round(seconds, 3), where, tb)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for the block (None: as they are). CPU kernels
    split their sums by thread, so images and values depend on the count in their last bits:
    every executor runs a run with the same count (``cpus_per_run``), whatever this machine's
    cores, so a sweep's results do not depend on where it ran."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_one(options: Any, threads: int | None = None) -> Path:
    """One run through the normal entry point (:func:`t2ibench.pipeline.run.run`), resumable,
    with ``threads`` torch threads (:func:`torch_threads`).

    Runs of one sweep share folders (the base model's images under ``--out``); a run that finds
    one being written by another run waits for that writer, then resumes, instead of failing."""
    from filelock import FileLock

    from t2ibench.fsutil import LockBusyError
    from t2ibench.pipeline.run import run

    with torch_threads(threads):
        for _ in range(100):
            try:
                return run(options)
            except LockBusyError as exc:
                log.info("%s: waiting for another run that writes %s", options.name, exc.lock_file)
                with FileLock(exc.lock_file):
                    pass
        return run(options)


def run_config(options: Any) -> Any:
    """The run config (:class:`t2ibench.runconfig.RunConfig`) a run resolves to: its profile and
    override layers, without loading anything (for checks before scheduling)."""
    from t2ibench.pipeline.run import choose_profile
    from t2ibench.runconfig import Layers

    user = Layers()
    for where, table in options.layers:
        user.add_table(where, table)
    profile = choose_profile(options, user.values.get("base"), user.values.get("dataset"))
    layers = Layers().add_table(f"profile {profile.name}", profile.values)
    for where, table in options.layers:
        layers.add_table(where, table)
    return layers.run_config()


class Executor:
    """Base class: executes runs and answers their outcomes in the order given."""

    name: ClassVar[str] = ""
    #: torch threads of each run (and, on Ray, the CPUs each run asks for): the same in every
    #: executor, so results do not depend on where runs execute (:func:`torch_threads`)
    cpus_per_run: int = 1

    def check_runs(self, runs: Sequence[Any]) -> None:
        """Refuse, before anything is scheduled, what this executor cannot run (one line)."""

    def check_storage(self, out: Path) -> None:
        """Stop with one :class:`StorageError` line if ``out`` cannot be written here (nothing was
        done yet); executors with other machines also check that each worker sees it."""
        probe = Path(out) / SWEEP_DIR / f"write-probe-{os.getpid()}"
        try:
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.write_text("t2ibench", encoding="utf-8")
            probe.unlink()
        except OSError as exc:
            raise StorageError(
                f"--out {out}: cannot write there ({exc.strerror or exc}); nothing was done"
            ) from None

    def run_all(self, runs: Sequence[Any], progress: SweepProgress) -> list[RunOutcome]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the executor started (a local Ray instance)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


EXECUTORS: Registry[type[Executor]] = Registry("sweep executor", "t2ibench.executors")


def register_executor(name: str):
    """Class decorator: register a sweep executor under ``name`` (``--executor name``)."""

    def add(cls: type[Executor]) -> type[Executor]:
        cls.name = name
        EXECUTORS.register(name, cls)
        return cls

    return add


def get_executor(name: str, **options: Any) -> Executor:
    """The executor ``name`` built with ``options`` (None values dropped); an option the executor
    does not take is one clear line naming it."""
    cls = EXECUTORS.get(name)
    options = {k: v for k, v in options.items() if v is not None}
    try:
        inspect.signature(cls).bind(**options)
    except TypeError:
        params = inspect.signature(cls).parameters
        key = next((k for k in options if k not in params), next(iter(options), ""))
        raise ConfigError(
            f"--{key.replace('_', '-')}: not an option of the {name!r} executor"
        ) from None
    return cls(**options)


class ImageCounter:
    """Images finished under a sweep's runs folder: the lines of every manifest, read
    incrementally (only what was appended since the last look)."""

    def __init__(self, runs_root: Path) -> None:
        self.root = Path(runs_root)
        self._seen: dict[Path, tuple[int, int]] = {}  # manifest → (bytes read, lines)

    def count(self) -> int:
        from t2ibench.pipeline.manifest import MANIFEST_NAME

        total = 0
        paths = set(self.root.glob(f"*/images/*/{MANIFEST_NAME}"))
        paths |= set(self.root.glob(f".base-images/*/{MANIFEST_NAME}"))
        for path in paths:
            offset, lines = self._seen.get(path, (0, 0))
            try:
                size = path.stat().st_size
                if size < offset:  # rewritten (a changed image dropped): count again
                    offset, lines = 0, 0
                if size > offset:
                    with open(path, "rb") as fh:
                        fh.seek(offset)
                        chunk = fh.read(size - offset)
                    lines += chunk.count(b"\n")
                    offset += len(chunk)
            except OSError:
                continue
            self._seen[path] = (offset, lines)
            total += lines
        return total


class SweepProgress:
    """The sweep's one live view, a tqdm bar like the stages' own (``--no-progress`` hides it):
    runs finished out of all, with runs done / running / failed and images done so far."""

    def __init__(
        self, total: int, runs_root: Path, enabled: bool = True, slots: int | None = None
    ) -> None:
        from tqdm.auto import tqdm

        self.enabled = enabled
        self.bar = tqdm(
            total=total, unit="run", desc="sweep", disable=not enabled, dynamic_ncols=True
        )
        self.images = ImageCounter(runs_root)
        self.done = self.failed = 0
        self.running: set[str] = set()
        #: runs that can run at once (the executor's slots): a killed worker's status lingers
        #: until its retry starts, so "running" never shows more than this
        self.slots = slots
        self._shown = 0.0

    def started(self, name: str) -> None:
        self.running.add(name)
        self.refresh(force=True)

    def set_running(self, names: set[str]) -> None:
        self.running = set(sorted(names)[: self.slots] if self.slots else names)

    def finished(self, outcome: RunOutcome) -> None:
        self.running.discard(outcome.name)
        if outcome.status == "done":
            self.done += 1
        else:
            self.failed += 1
        self.bar.update(1)
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Recount images (at most every 2 s unless forced) and redraw."""
        if not self.enabled or (not force and time.monotonic() - self._shown < 2.0):
            return
        self._shown = time.monotonic()
        self.bar.set_postfix_str(
            f"done {self.done}, running {len(self.running)}, failed {self.failed}, "
            f"images {self.images.count()}"
        )

    def close(self) -> None:
        self.refresh(force=True)
        self.bar.close()


# The executor files register on import: import them all (a new file needs no edit here).
for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")
