"""``--executor local`` (the default): the runs one after another, in this process."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Any

from t2ibench.errors import ConfigError
from t2ibench.pipeline.executors import (
    Executor,
    RunOutcome,
    SweepProgress,
    failed,
    log,
    register_executor,
    run_one,
)


class LocalExecutor(Executor):
    """Each run in turn through the normal entry point; a run that fails is recorded and the
    next one starts (Ctrl-C still stops the sweep: finished work is kept). Each run has
    ``cpus_per_run`` torch threads, as on Ray, so the results equal a Ray sweep's."""

    def __init__(self, cpus_per_run: int = 1) -> None:
        if int(cpus_per_run) < 1:
            raise ConfigError(f"--cpus-per-run: must be ≥ 1, got {cpus_per_run}")
        self.cpus_per_run = int(cpus_per_run)

    def run_all(self, runs: Sequence[Any], progress: SweepProgress) -> list[RunOutcome]:
        where = socket.gethostname()
        outcomes = []
        for options in runs:
            progress.started(options.name)
            start = time.perf_counter()
            try:
                run_dir = run_one(options, self.cpus_per_run)
            except Exception as exc:  # the run's own failure: report it, go on with the others
                outcome = failed(options.name, exc, time.perf_counter() - start, where)
                log.error("run %s failed: %s", options.name, outcome.error)
            else:
                seconds = round(time.perf_counter() - start, 3)
                outcome = RunOutcome(options.name, "done", str(run_dir), "", seconds, where)
            outcomes.append(outcome)
            progress.finished(outcome)
        return outcomes


register_executor("local")(LocalExecutor)
