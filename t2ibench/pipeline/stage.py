"""What a stage of ``t2ibench run`` is, and the run in progress that every stage reads and writes.

A stage is a small object beside the module that does its work: ``done(run)`` says whether its
outputs are on disk and current, ``run(run)`` makes (or completes) them. :func:`t2ibench.pipeline.run
.execute` runs each stage that is not done, in order. The first stage is the *checkpoint source*:
training (:mod:`t2ibench.pipeline.train_stage`) or, for ``evaluate-checkpoints``, the given files
(:mod:`t2ibench.pipeline.checkpoints`); the rest do not know which one it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol, TypeVar

from t2ibench.pipeline.record import RunRecord, RunState

log = logging.getLogger("t2ibench.run")
T = TypeVar("T")


class Stage(Protocol):
    #: the name in ``run.json``'s timings and ``state.json``
    name: str
    #: why the log says the stage was kept (skipped)
    kept: str

    def done(self, run: Run) -> bool:
        """Whether this stage's outputs are on disk and current (then it is skipped)."""
        ...

    def run(self, run: Run) -> None:
        """Make the outputs, resuming from what an interrupted earlier invocation left."""
        ...


class CheckpointSource(Stage, Protocol):
    """The first stage: where the checkpoints the later stages use come from."""

    def checkpoints(self, run: Run) -> list[Path]:
        """The checkpoints, in training order (valid once the stage is done)."""
        ...

    def columns(self, run: Run) -> dict[str, dict[str, Any]]:
        """Result columns per checkpoint name (config, seed, epoch, algorithm, ...)."""
        ...

    def identity(self, resolved: Any) -> Any:
        """The run hash's entry for the checkpoints (``resolved``: a ResolvedRun)."""
        ...

    def record(self) -> dict[str, Any]:
        """Fields this source adds to ``run.json``."""
        ...


@dataclass
class Run:
    """One invocation of a run: its resolved settings and its record on disk, plus what the
    stages derive from them once (jobs, the shared base-model images, the checkpoints)."""

    #: the :class:`~t2ibench.pipeline.run.ResolvedRun` (typed loosely: the stages sit below it)
    resolved: Any
    state: RunState
    record: RunRecord
    _once: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def run_dir(self) -> Path:
        return self.resolved.run_dir

    @property
    def options(self) -> Any:
        return self.resolved.options

    @property
    def images(self) -> Path:
        return self.run_dir / "images"

    @property
    def results_dir(self) -> Path:
        return self.run_dir / "results"

    @property
    def parts(self) -> Path:
        return self.results_dir / "parts"

    #: an adaptive run's admitted images: checkpoint name (``base`` included) → the jobs it has
    #: so far (:mod:`t2ibench.pipeline.adaptive`); None: every job (a full run)
    admitted: dict[str, list[Any]] | None = None

    @cached_property
    def jobs(self) -> list[Any]:
        """Every generation job, in the fixed seeded image order that full and adaptive runs
        share (:func:`t2ibench.pipeline.order.ordered_jobs`): batches are cut from this list."""
        from t2ibench.pipeline.order import ordered_jobs
        from t2ibench.prompts import jobs_for

        r = self.resolved
        return ordered_jobs(jobs_for(r.dataset, r.prompt_types, r.images_per_leaf))

    def jobs_of(self, name: str) -> list[Any]:
        """The jobs checkpoint ``name`` (or ``base``) has to have now: all, or those admitted."""
        if self.admitted is None:
            return self.jobs
        return self.admitted.get(name, [])

    @cached_property
    def base_images(self) -> Path:
        from t2ibench.pipeline.generate import shared_base_images
        from t2ibench.prompts import jobs_for

        r = self.resolved  # keyed by the jobs themselves; their order is a function of them
        return shared_base_images(r, jobs_for(r.dataset, r.prompt_types, r.images_per_leaf))

    @cached_property
    def checkpoints(self) -> list[Path]:
        out = self.resolved.source.checkpoints(self)
        log.info("checkpoints: %s", ", ".join(p.name for p in out))
        return out

    @cached_property
    def names(self) -> dict[Path, str]:
        """Each checkpoint's name (its images and results folder)."""
        from t2ibench.pipeline.generate import checkpoint_name

        return {ck: checkpoint_name(ck) for ck in self.checkpoints}

    def once(self, key: str, fn: Callable[[], T]) -> T:
        """``fn()`` computed once per invocation (a stage's ``done`` and ``run`` share it)."""
        if key not in self._once:
            self._once[key] = fn()
        return self._once[key]

    def forget(self, key: str) -> None:
        self._once.pop(key, None)


def run_stages(run: Run, stages: Sequence[Stage]) -> None:
    """Each stage not done, in order, timed into ``run.json``."""
    for stage in stages:
        if stage.done(run):
            log.info("%s: done before, kept (%s)", stage.name, stage.kept)
            continue
        run.record.timed(stage.name, lambda stage=stage: stage.run(run))
