"""``--executor ray``: every run of the grid is a Ray task, run in parallel as the cluster allows.

Without ``--address`` a local Ray instance is started (this machine's cores and GPUs); with
``--address auto`` or ``ray://HOST:PORT`` the sweep joins a running cluster. Each task requests
what its run needs (one GPU and one CPU on ``--device cuda``; ``cpus_per_run`` CPUs on CPU) and
calls the normal run entry point, so a run resumes from its own state wherever it lands. Every
worker must see ``--out`` at the same path (a shared filesystem): that is checked on every node
before any run starts, and again by each task.

Faults: a run's own error comes back as its outcome (the other runs go on); a worker or node lost
mid-run is retried by Ray ``max_retries`` times (the retry resumes the run) and otherwise reported
as failed; rerunning the same sweep finishes whatever is left.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t2ibench.errors import MissingExtraError, T2IBenchError
from t2ibench.fsutil import atomic_write, remove_inside
from t2ibench.pipeline.executors import (
    SWEEP_DIR,
    Executor,
    RunOutcome,
    StorageError,
    SweepProgress,
    describe_error,
    failed,
    log,
    register_executor,
    run_one,
)

#: seconds a node may take to answer the storage check (a worker process has to start there)
STORAGE_TIMEOUT_S = 300


def run_resources(options: Any, cpus_per_run: float = 1) -> dict[str, float]:
    """The Ray resource request of one run: a GPU (train, generate and evaluate all use it) and
    one CPU when the run's device is CUDA, else ``cpus_per_run`` CPUs."""
    if str(options.device).startswith("cuda"):
        return {"num_cpus": 1, "num_gpus": 1}
    return {"num_cpus": cpus_per_run}


def probe_storage(out: str, token: str, node: str) -> str:
    """On one node: read the driver's sentinel under ``out`` and write this node's answer next to
    it. ``""`` when both work, else why not (in words)."""
    folder = Path(out) / SWEEP_DIR
    sentinel = folder / f"storage-{token}"
    try:
        seen = sentinel.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"the file the driver wrote there ({SWEEP_DIR}/{sentinel.name}) is not there"
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if seen != token:
        return f"{SWEEP_DIR}/{sentinel.name} there holds something else than the driver wrote"
    try:
        (folder / f"storage-{token}-{node}").write_text(token, encoding="utf-8")
    except OSError as exc:
        return f"cannot write there ({exc.strerror or exc})"
    return ""


def _run_task(options: Any, sentinel: str, status_dir: str, threads: int) -> dict[str, Any]:
    """One run on a Ray worker, with as many torch threads as CPUs it asked for. Errors come
    back as data (only strings cross processes)."""
    import traceback

    import ray
    import torch

    torch.set_num_threads(threads)

    where = f"{socket.gethostname()}:{os.getpid()}"
    start = time.perf_counter()
    try:
        if not Path(sentinel).is_file():
            raise StorageError(
                f"--out {Path(sentinel).parent.parent}: not visible from Ray node "
                f"{ray.util.get_node_ip_address()} ({socket.gethostname()}); every node must see "
                "--out at the same path (a shared filesystem)"
            )
        # Who runs which run: the live view's "running", and the process to signal if need be.
        status = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "node": ray.get_runtime_context().get_node_id(),
            "started": time.time(),
        }
        atomic_write(Path(status_dir) / f"{options.name}.json", json.dumps(status))
        run_dir = run_one(options)
    except Exception as exc:
        return {
            "error": describe_error(exc),
            "traceback": "".join(traceback.format_exception(exc)),
            "where": where,
            "seconds": time.perf_counter() - start,
        }
    return {"run_dir": str(run_dir), "where": where, "seconds": time.perf_counter() - start}


class RayExecutor(Executor):
    """Runs as Ray tasks. ``address``: a cluster to join (``auto``, ``ray://host:10001``); none
    starts a local instance with ``num_cpus`` CPUs (default: all). An already initialised Ray
    (``ray.init`` in this process) is used as it is."""

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        cpus_per_run: float = 1,
        max_retries: int = 2,
        poll_s: float = 1.0,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_run = cpus_per_run
        self.max_retries = max_retries
        self.poll_s = poll_s
        self._started = False
        self._sentinel: Path | None = None

    # -- the cluster --------------------------------------------------------------------------------

    def _ray(self) -> Any:
        try:
            import ray
        except ImportError:
            raise MissingExtraError(
                "--executor ray: Ray is not installed; pip install 't2ibench[ray]'"
            ) from None
        if ray.is_initialized():
            return ray
        try:
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(
                    address="local",  # a new instance, never one `ray start` left running here
                    num_cpus=self.num_cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                )
                self._started = True
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a local instance"
            raise T2IBenchError(f"--address {where}: cannot start or join Ray ({exc})") from None
        return ray

    def _forget_sentinel(self) -> None:
        if self._sentinel is not None:
            for path in self._sentinel.parent.glob(f"{self._sentinel.name}*"):
                remove_inside(path, self._sentinel.parent)
            self._sentinel = None

    def close(self) -> None:
        self._forget_sentinel()
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    # -- storage ------------------------------------------------------------------------------------

    def check_storage(self, out: Path) -> None:
        """Every alive node reads a sentinel the driver wrote under ``out`` and writes one back
        that the driver reads: the first node that fails stops the sweep with one line."""
        ray = self._ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        token = uuid.uuid4().hex
        folder = Path(out) / SWEEP_DIR
        folder.mkdir(parents=True, exist_ok=True)
        self._sentinel = folder / f"storage-{token}"
        atomic_write(self._sentinel, token)
        probe = ray.remote(probe_storage)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = {
            n["NodeID"]: probe.options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
            ).remote(str(out), token, n["NodeID"])
            for n in nodes
        }
        for node in nodes:
            node_id = node["NodeID"]
            try:
                why = ray.get(refs[node_id], timeout=STORAGE_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                why = f"it did not answer the storage check within {STORAGE_TIMEOUT_S} s"
            except ray.exceptions.RayError as exc:
                why = f"the storage check failed there ({describe_error(exc)})"
            if not why:
                back = folder / f"storage-{token}-{node_id}"
                if not (back.is_file() and back.read_text(encoding="utf-8") == token):
                    why = "what it writes there does not reach the driver"
            if why:
                name = node.get("NodeManagerHostname") or ""
                raise StorageError(
                    f"--out {out}: not visible from Ray node {node.get('NodeManagerAddress')} "
                    f"({name}, id {node_id[:12]}): {why}; every node must see --out at the same "
                    "path (a shared filesystem)"
                )

    # -- the runs -----------------------------------------------------------------------------------

    def run_all(self, runs: Sequence[Any], progress: SweepProgress) -> list[RunOutcome]:
        ray = self._ray()
        if self._sentinel is None:
            self.check_storage(Path(runs[0].out).parent if runs else Path("."))
        assert self._sentinel is not None
        self._check_feasible(ray, runs)
        status_dir = self._sentinel.parent / "runs"
        status_dir.mkdir(parents=True, exist_ok=True)
        task = ray.remote(_run_task)
        since = time.time()
        pending: dict[Any, Any] = {}
        for options in runs:
            # Ray picks the GPU (CUDA_VISIBLE_DEVICES), so the run uses "cuda"; the live view is
            # the sweep's, so the runs' own bars stay off.
            device = "cuda" if str(options.device).startswith("cuda") else options.device
            remote = dataclasses.replace(options, device=device, progress=False)
            ref = task.options(
                name=f"t2ibench run {options.name}",
                max_retries=self.max_retries,
                retry_exceptions=False,
                **run_resources(options, self.cpus_per_run),
            ).remote(remote, str(self._sentinel), str(status_dir), max(1, int(self.cpus_per_run)))
            pending[ref] = options
        outcomes: dict[str, RunOutcome] = {}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_s)
                for ref in ready:
                    options = pending.pop(ref)
                    outcome = self._outcome(ray, ref, options.name)
                    if outcome.status == "failed":
                        log.warning("run %s failed: %s", options.name, outcome.error)
                    outcomes[options.name] = outcome
                    progress.finished(outcome)
                if progress.enabled:
                    pending_names = {o.name for o in pending.values()}
                    progress.set_running(_running(status_dir, pending_names, since))
                    progress.refresh()
        except KeyboardInterrupt:
            for ref in pending:  # stop the runs in flight; their finished work is kept
                ray.cancel(ref, force=True)
            raise
        finally:
            self._forget_sentinel()
        return [outcomes[o.name] for o in runs]

    def _check_feasible(self, ray: Any, runs: Sequence[Any]) -> None:
        """A run no node could ever hold would wait forever: say so before scheduling."""
        if not runs:
            return
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        need = run_resources(runs[0], self.cpus_per_run)  # one --device for the whole sweep
        names = {"num_cpus": "CPU", "num_gpus": "GPU"}  # Ray's resource names
        if any(all(res.get(names[k], 0) >= v for k, v in need.items()) for res in nodes):
            return
        asked = " and ".join(f"{v:g} {names[k]}" for k, v in need.items())
        raise T2IBenchError(
            f"--device {runs[0].device}: each run asks for {asked} and no node of the Ray "
            f"cluster has that much ({len(nodes)} node(s)); use another --device or cluster"
        )

    @staticmethod
    def _outcome(ray: Any, ref: Any, name: str) -> RunOutcome:
        try:
            got = ray.get(ref)
        except ray.exceptions.RayError as exc:
            # The worker or its node died (SIGKILL, out of memory, node lost) after the retries.
            outcome = failed(name, exc)
            outcome.error = f"worker lost: {outcome.error}"
            return outcome
        seconds = round(got.get("seconds", 0.0), 3)
        if "error" in got:
            return RunOutcome(
                name, "failed", None, got["error"], seconds, got["where"], got["traceback"]
            )
        return RunOutcome(name, "done", got["run_dir"], "", seconds, got["where"])


def _running(status_dir: Path, pending: set[str], since: float) -> set[str]:
    """Pending runs whose task has started (it wrote its status file during this sweep)."""
    out = set()
    for name in pending:
        try:
            started = json.loads((status_dir / f"{name}.json").read_text())["started"]
        except (OSError, ValueError, KeyError):
            continue
        if started >= since:
            out.add(name)
    return out


register_executor("ray")(RayExecutor)
