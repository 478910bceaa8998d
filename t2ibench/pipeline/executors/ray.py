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

import contextlib
import dataclasses
import json
import os
import socket
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t2ibench.errors import ConfigError, MissingExtraError, T2IBenchError
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


#: seconds the driver waits for a TCP answer at ``--address`` before giving up (Ray itself retries
#: for many minutes behind pages of warnings)
CONNECT_TIMEOUT_S = 5.0


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` a ``--address`` names (``auto``: the cluster ``ray start`` recorded
    here, if any), or None when it cannot be told (Ray then says what it makes of it)."""
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            address = canonicalize_bootstrap_address("auto") or ""
        except Exception:  # no cluster recorded: Ray's own error says so
            return None
    address = address.removeprefix("ray://")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """One line at once when nothing answers at ``address`` (a TCP connect to the GCS or the Ray
    client port), instead of Ray's minutes of retries."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise T2IBenchError(
            f"--address {address}: nothing answers at {target[0]}:{target[1]} ({why} within "
            f"{timeout:g} s); is the cluster up (`ray start --head` there) and is that its "
            "address (HOST:6379, or ray://HOST:10001)?"
        ) from None


#: How Ray 2.5x says a cluster refused a driver without its token (``AuthenticationError``
#: inside "Failed to connect to Ray cluster"): ray/_private/worker.py, ray/exceptions.py.
_AUTH_MARKS = ("InvalidAuthToken", "AuthenticationError", "Unauthenticated", "UNAUTHENTICATED")


def _chain_text(exc: BaseException) -> str:
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def connect_error(address: str, exc: BaseException) -> str:
    """One line for a failed ``ray.init(address=...)``; a token-authentication refusal names its
    cause and fix."""
    text = _chain_text(exc)
    if any(mark in text for mark in _AUTH_MARKS):
        mode = os.environ.get("RAY_AUTH_MODE") or "unset"
        return (
            f"--address {address}: the Ray cluster refused this driver: it uses token "
            f"authentication and this process does not have its token (RAY_AUTH_MODE is {mode}; "
            "Ray turns token auth on for `ray start` when ~/.ray/auth_token exists, which a "
            "first local `--executor ray` run writes). Set RAY_AUTH_MODE=token with the same "
            "token (~/.ray/auth_token or RAY_AUTH_TOKEN) on every node before `ray start` and on "
            "the driver, or remove ~/.ray/auth_token everywhere and restart the cluster"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"--address {address}: cannot join the Ray cluster ({first})"


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


def _run_task(
    options: Any, sentinel: str, status_dir: str, threads: int, since: float = 0.0
) -> dict[str, Any]:
    """One run on a Ray worker, with as many torch threads as CPUs it asked for (the same count a
    local sweep uses: :func:`~t2ibench.pipeline.executors.torch_threads`). Errors come back as
    data (only strings cross processes)."""
    import traceback

    import ray

    where = f"{socket.gethostname()}:{os.getpid()}"
    start = time.perf_counter()
    try:
        if not Path(sentinel).is_file():
            raise StorageError(
                f"--out {Path(sentinel).parent.parent}: not visible from Ray node "
                f"{ray.util.get_node_ip_address()} ({socket.gethostname()}); every node must see "
                "--out at the same path (a shared filesystem)"
            )
        # Who runs which run: the live view's "running", the process to signal if need be, and
        # the earlier attempts of this sweep whose worker or node was lost (Ray retried them).
        path = Path(status_dir) / f"{options.name}.json"
        earlier: list[str] = []
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            before = json.loads(path.read_text(encoding="utf-8"))
            if before["started"] >= since:
                earlier = [*before.get("retried_after", []), before["where"]]
        status = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "where": where,
            "node": ray.get_runtime_context().get_node_id(),
            "started": time.time(),
            "retried_after": earlier,
        }
        atomic_write(path, json.dumps(status))
        run_dir = run_one(options, threads)
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
        cpus_per_run: int = 1,
        max_retries: int = 2,
        poll_s: float = 1.0,
    ) -> None:
        if int(cpus_per_run) < 1 or int(cpus_per_run) != cpus_per_run:
            raise ConfigError(f"--cpus-per-run: a whole number ≥ 1, got {cpus_per_run}")
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_run = int(cpus_per_run)
        self.max_retries = max_retries
        self.poll_s = poll_s
        self._started = False
        self._sentinel: Path | None = None

    # -- the cluster --------------------------------------------------------------------------------

    @staticmethod
    def _import_ray() -> Any:
        try:
            import ray
        except ImportError:
            raise MissingExtraError(
                "--executor ray: Ray is not installed; pip install 't2ibench[ray]'"
            ) from None
        return ray

    def _ray(self) -> Any:
        ray = self._import_ray()
        if ray.is_initialized():
            return ray
        if self.address:
            check_reachable(self.address)
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
            if self.address:
                raise T2IBenchError(connect_error(self.address, exc)) from None
            raise T2IBenchError(
                f"--executor ray: cannot start a local Ray instance ({exc})"
            ) from None
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

    def check_runs(self, runs: Sequence[Any]) -> None:
        """A run that shards its generation or encoding over Ray workers cannot do so inside a
        Ray task (it holds one slot): refused once, before any run is scheduled."""
        from t2ibench.pipeline.executors import run_config

        sharded = []
        for options in runs:
            cfg = run_config(options)
            keys = [
                f"{stage}.workers = {getattr(cfg, stage).workers}"
                for stage in ("generate", "evaluate")
                if getattr(cfg, stage).workers > 1
            ]
            if keys:
                sharded.append(f"{options.name} ({', '.join(keys)})")
        if sharded:
            more = f" and {len(sharded) - 3} more" if len(sharded) > 3 else ""
            raise ConfigError(
                f"--executor ray: {', '.join(sharded[:3])}{more} shard over Ray workers, which a "
                "run cannot do inside a Ray sweep (each run is one Ray task); set workers = 1 in "
                "the grid (runs execute in parallel instead) or use --executor local"
            )

    # -- storage ------------------------------------------------------------------------------------

    def check_storage(self, out: Path) -> None:
        """Every alive node reads a sentinel the driver wrote under ``out`` and writes one back
        that the driver reads: the first node that fails stops the sweep with one line."""
        self._import_ray()
        super().check_storage(out)  # this machine first: nothing is started on a read-only --out
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
        progress.slots = self._slots(ray, runs)
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
            ).remote(remote, str(self._sentinel), str(status_dir), self.cpus_per_run, since)
            pending[ref] = options
        outcomes: dict[str, RunOutcome] = {}
        retries_seen: dict[str, int] = {}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_s)
                statuses = _statuses(status_dir, {o.name for o in pending.values()}, since)
                self._report_retries(statuses, retries_seen)
                for ref in ready:
                    options = pending.pop(ref)
                    status = statuses.get(options.name) or _statuses(
                        status_dir, {options.name}, since
                    ).get(options.name, {})
                    outcome = self._outcome(ray, ref, options.name, status)
                    if outcome.status == "failed":
                        log.warning("run %s failed: %s", options.name, outcome.error)
                    outcomes[options.name] = outcome
                    progress.finished(outcome)
                if progress.enabled:
                    pending_names = {o.name for o in pending.values()}
                    progress.set_running({n for n in statuses if n in pending_names})
                    progress.refresh()
        except KeyboardInterrupt:
            for ref in pending:  # stop the runs in flight; their finished work is kept
                ray.cancel(ref, force=True)
            raise
        finally:
            self._forget_sentinel()
        return [outcomes[o.name] for o in runs]

    def _report_retries(self, statuses: dict[str, dict], seen: dict[str, int]) -> None:
        """On the console, once per lost attempt: which worker was lost and that Ray retries."""
        for name, status in statuses.items():
            lost = status.get("retried_after") or []
            if len(lost) > seen.get(name, 0):
                seen[name] = len(lost)
                log.warning(
                    "run %s: its worker %s was lost (killed, out of memory or its node gone); "
                    "Ray retried it on %s (retry %d of %d), resuming from its saved state",
                    name,
                    lost[-1],
                    status.get("where", "?"),
                    len(lost),
                    self.max_retries,
                )

    def _slots(self, ray: Any, runs: Sequence[Any]) -> int | None:
        """How many runs the cluster holds at once (the live view never shows more running)."""
        if not runs:
            return None
        need = run_resources(runs[0], self.cpus_per_run)
        names = {"num_cpus": "CPU", "num_gpus": "GPU"}
        total = 0
        for node in ray.nodes():
            if node.get("Alive"):
                res = node.get("Resources", {})
                total += int(min(res.get(names[k], 0) // v for k, v in need.items()))
        return max(total, 1)

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

    def _outcome(self, ray: Any, ref: Any, name: str, status: dict[str, Any]) -> RunOutcome:
        retried = list(status.get("retried_after") or [])
        try:
            got = ray.get(ref)
        except ray.exceptions.RayError as exc:
            # The worker or its node died (SIGKILL, out of memory, node lost) after the retries:
            # where is the last attempt's process, from its status file.
            outcome = failed(name, exc, where=status.get("where", ""))
            tries = len(retried) + 1
            outcome.error = (
                f"worker lost after {tries} attempt(s) (max_retries {self.max_retries}): "
                f"{outcome.error}"
            )
            outcome.retried_after = retried
            return outcome
        seconds = round(got.get("seconds", 0.0), 3)
        if "error" in got:
            return RunOutcome(
                name, "failed", None, got["error"], seconds, got["where"], got["traceback"],
                retried,
            )  # fmt: skip
        return RunOutcome(name, "done", got["run_dir"], "", seconds, got["where"], "", retried)


def _statuses(status_dir: Path, names: set[str], since: float) -> dict[str, dict[str, Any]]:
    """The status files of runs in ``names`` whose task started during this sweep."""
    out = {}
    for name in names:
        try:
            status = json.loads((status_dir / f"{name}.json").read_text())
            started = status["started"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if started >= since:
            out[name] = status
    return out


register_executor("ray")(RayExecutor)
