"""Generation and encoding of one run sharded over Ray workers, with results equal to a local run.

**Generation.** The (checkpoint × leaf × prompt type × seed) jobs are cut into the same aligned
batches as a local run (:func:`t2ibench.pipeline.generate.aligned_batches`: pixels depend on the
batch's composition, so each image must come from the batch it would come from locally). Whole
batches go to a pool of Ray actors, each of which loads the base model once and puts a checkpoint's
adapter on it when its batches come (taking it off exactly afterwards). A worker writes each image
atomically under the run's images folder (a file system every worker sees) and returns its manifest
lines; the driver, the only writer of each manifest and holder of its folder lock, appends them in
job order, so a manifest is byte for byte the local one. A worker killed mid-batch is restarted and
its batch made again (``retries``); past that, the run stops with what finished kept, and rerunning
the same command makes only what is missing. Workers run with the driver's number of CPU threads:
on the CPU, kernels sum in an order that depends on it.

**Encoding.** The evaluation is first run in *recording* mode (:func:`t2ibench.pipeline.evaluate.
recording`): no metric is computed, and every encoder batch the local evaluation would run (same
calls, same order, same cache hits) is listed instead. The batches go to a pool of actors that load
the encoders once and store each feature row in the shared feature cache; the real evaluation then
runs locally and finds every row there, so metric values equal the local run's. The only features
left to the driver are those never cached (a checkpoint's own Gram matrices) and text features.

**One pool per run.** Inside :func:`worker_pool` (``t2ibench run`` opens one around its stages) the
actors a stage starts are kept for the next: the workers that generated a run's images then encode
them (dropping the base model first), so a run starts its workers, and pays their imports, once.
Outside it each call starts its own actors and ends them when it returns.

``ray`` is imported only here and only when a run asks for more than one worker.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t2ibench.errors import ConfigError, T2IBenchError

log = logging.getLogger(__name__)

#: Environment a worker needs to load the same models from the same places as the driver.
FORWARDED_ENV = (
    "T2IBENCH_CACHE",
    "T2IBENCH_OFFLINE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "TORCH_HOME",
)


def ensure_ray(address: str | None = None) -> Any:
    """The ``ray`` module, connected: an existing connection (inside a Ray task, or a caller's
    ``ray.init``), else ``address`` / ``$RAY_ADDRESS``, else a new local instance."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "sharding over workers needs Ray: pip install 't2ibench[ray]' (or set workers = 1)"
        ) from None
    if ray.is_initialized():
        if ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
            # A run that is itself a Ray task (sweep --executor ray) holds the CPU/GPU its shard
            # workers would wait for: with every slot held by such runs, none would ever start.
            raise ConfigError(
                "generate.workers / evaluate.workers > 1 inside a Ray sweep: the sweep already "
                "spreads runs over the cluster; set workers = 1 for its runs"
            )
        return ray
    # "local": a new instance, never a stale cluster a past `ray start` left registered here.
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    return ray


def _env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


def _worker_device(device: str) -> str:
    # Ray gives each GPU actor its own CUDA_VISIBLE_DEVICES: the GPU it holds is cuda:0 there.
    return "cuda" if str(device).startswith("cuda") else str(device)


def _resources(device: str) -> dict[str, float]:
    return {"num_cpus": 1, "num_gpus": 1 if str(device).startswith("cuda") else 0}


def _setup_worker(env: dict[str, str], threads: int) -> None:
    import torch

    os.environ.update(env)
    torch.set_num_threads(threads)
    with contextlib.suppress(Exception):  # the libraries' own loading bars would flood the driver
        import diffusers
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()


def _cause(exc: BaseException) -> BaseException:
    """The worker's own exception inside a Ray error (``RayTaskError.cause``), else ``exc``."""
    return getattr(exc, "cause", None) or exc


def _one_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line`` of a Ray error, without its terminal colours, at most ``limit`` long."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    first = text.splitlines()[0] if text else ""
    if len(first) > limit:
        first = first[: limit - 1] + "…"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _workers(ray: Any, workers: int, device: str, units: int) -> int:
    """``workers``, at most one per GPU (CUDA) or CPU of the cluster and one per unit of work."""
    if workers < 1:
        raise ConfigError(f"workers: must be ≥ 1, got {workers}")
    kind = "GPU" if str(device).startswith("cuda") else "CPU"
    have = int(ray.cluster_resources().get(kind, 0))
    if have < 1:
        raise ConfigError(f"--device {device}: the Ray cluster has no {kind} for a worker")
    return max(1, min(workers, have, units))


class _WorkerFailed(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _run_pool(
    ray: Any, actors: Sequence[Any], units: Sequence[Any], call: Callable, on_result: Callable
) -> None:
    """Feed ``units`` to ``actors`` — two in flight each, and only once an actor is up, so one the
    cluster cannot place yet takes nothing — calling ``on_result(unit, result)`` as each returns.
    On a failure the results already back are handed over too, then :class:`_WorkerFailed`."""
    queue = deque(units)
    pending: dict[Any, tuple[int, Any]] = {}
    starting = {actor.pid.remote(): a for a, actor in enumerate(actors)}

    def feed(a: int) -> None:
        if queue:
            unit = queue.popleft()
            pending[call(actors[a], unit)] = (a, unit)

    failure: BaseException | None = None
    while pending or (queue and starting):
        ref = ray.wait([*pending, *starting], num_returns=1)[0][0]
        try:
            result = ray.get(ref)
        except Exception as exc:  # a worker died (past its retries) or raised
            failure = exc
            pending.pop(ref, None)
            break
        if ref in starting:
            a = starting.pop(ref)
            feed(a)
            feed(a)  # two in flight: no idle round trip between batches
            continue
        a, unit = pending.pop(ref)
        on_result(unit, result)
        feed(a)
    if failure is None:
        return
    for ref, (_, unit) in list(pending.items()):
        if ray.wait([ref], timeout=0)[0]:
            with contextlib.suppress(Exception):
                on_result(unit, ray.get(ref))
    raise _WorkerFailed(_cause(failure))


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One images folder to fill: ``checkpoint`` is ``"base"``, an adapter file or a diffusers
    folder; ``name`` the checkpoint's name in the manifest."""

    checkpoint: str | Path
    name: str
    folder: Path


class ShardWorker:
    """A Ray actor that generates and encodes: the base model is loaded at its first batch (a
    checkpoint's adapter put on when needed), the run's encoders at its first encoder batch; one
    is dropped when the other is needed, so a worker holds one set of models at a time. What it
    loads comes with each call, so a worker Ray restarts loads it again."""

    def __init__(self, device: str, threads: int, env: dict[str, str]) -> None:
        _setup_worker(env, threads)
        self.device = _worker_device(device)
        self.base_key: tuple | None = None
        self.pipe: Any = None
        self.current: tuple | None = None
        self.stack = contextlib.ExitStack()
        self.tuned: Any = None
        self.encoders_key: str | None = None
        self.encoders: list | None = None

    def pid(self) -> int:
        return os.getpid()

    def _drop_models(self) -> None:
        import gc

        import torch

        self.stack.close()  # the adapter off before the pipeline goes
        self.stack, self.current, self.tuned = contextlib.ExitStack(), None, None
        self.pipe = self.base_key = self.encoders = self.encoders_key = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def use_base(self, base: str, load_kwargs: dict, multiplier: float) -> None:
        """The base model loaded (once while the same is asked for)."""
        key = (base, tuple(sorted(load_kwargs.items())), multiplier)
        if self.base_key != key:
            from t2ibench.models import load_base

            self._drop_models()
            self.load_kwargs = {**load_kwargs, "device": self.device}
            self.multiplier = multiplier
            self.pipe = load_base(base, **self.load_kwargs)
            _eval_denoiser(self.pipe)
            self.pipe.set_progress_bar_config(disable=True)
            self.base_key = key

    def _switch(self, checkpoint: str | Path, settings: Any) -> Any:
        from t2ibench.pipeline.generate import (
            _set_scheduler,
            checkpoint_on_base,
            sampling_options,
        )

        scheduler = settings.scheduler
        key = (str(checkpoint), scheduler, tuple(sorted(settings.speed_options().items())))
        if self.current != key:
            self.stack.close()  # the previous adapter off, its scheduler back
            self.stack = contextlib.ExitStack()
            tuned = self.stack.enter_context(
                checkpoint_on_base(
                    self.pipe,
                    checkpoint,
                    multiplier=self.multiplier,
                    fuse=settings.fuse_adapter,
                    **self.load_kwargs,
                )
            )
            previous = _set_scheduler(tuned, scheduler)
            self.stack.callback(setattr, tuned, "scheduler", previous)
            self.stack.enter_context(sampling_options(tuned, settings))
            self.tuned, self.current = tuned, key
        return self.tuned

    def generate(
        self, model: tuple, target: Target, batch: list, positions: list[int], settings: Any
    ) -> list[Any]:
        """``model``: (base, load kwargs, adapter multiplier)."""
        from t2ibench.pipeline.generate import _disk_full, write_batch

        self.use_base(*model)
        pipe = self._switch(target.checkpoint, settings)
        try:
            return write_batch(
                pipe, batch, positions, target.folder, checkpoint=target.name, settings=settings
            )
        except OSError as exc:
            if _disk_full(exc):
                raise T2IBenchError(
                    f"{target.folder}: disk full while writing images; finished images are kept "
                    "— free space and rerun to resume"
                ) from None
            raise

    def encode(self, encoders: tuple[str, Callable], batch: Any) -> int:
        """``encoders``: (a name for the list, the picklable function that makes it for a
        device); stores the batch's rows in the feature cache."""
        from t2ibench.encoders import FeatureCache
        from t2ibench.pipeline.evaluate import encode_batch

        key, make_encoders = encoders
        if self.encoders_key != key:
            self._drop_models()
            self.encoders, self.encoders_key = make_encoders(self.device), key
        encode_batch(self.encoders[batch.encoder], batch, FeatureCache(batch.cache_root))
        return len(batch.items)


def _new_actor(ray: Any, device: str, retries: int, threads: int) -> Any:
    """One :class:`ShardWorker` on the cluster."""
    actor_cls = ray.remote(ShardWorker).options(
        **_resources(device), max_restarts=retries, max_task_retries=retries
    )
    return actor_cls.remote(device, threads, _env())


class _Pool:
    """The actors of :func:`worker_pool`: reused while the next call asks for workers of the same
    kind (device, retries, threads, environment), ended when it asks for another or on exit."""

    def __init__(self) -> None:
        self.ray: Any = None
        self.key: tuple | None = None
        self.actors: list[Any] = []

    def take(self, ray: Any, n: int, device: str, retries: int, threads: int) -> list[Any]:
        key = (str(device), retries, threads, tuple(sorted(_env().items())))
        if key != self.key:
            self.close()
            self.ray, self.key = ray, key
        while len(self.actors) < n:
            self.actors.append(_new_actor(ray, device, retries, threads))
        return self.actors[:n]

    def close(self) -> None:
        _kill(self.ray, self.actors)
        self.ray, self.key, self.actors = None, None, []


#: The open :func:`worker_pool` of this thread (a context variable: a new thread has none).
_POOL: contextvars.ContextVar[_Pool | None] = contextvars.ContextVar("shard_pool", default=None)


@contextlib.contextmanager
def worker_pool() -> Any:
    """Within: the shard workers a call starts stay up for the next call (a run's generation
    workers encode its images too), their restarts (``retries``) counted over both; on exit they
    are ended. Nested: the outer pool serves."""
    if _POOL.get() is not None:
        yield
        return
    pool = _Pool()
    token = _POOL.set(pool)
    try:
        yield
    finally:
        _POOL.reset(token)
        pool.close()


def _kill(ray: Any, actors: Sequence[Any]) -> None:
    for actor in actors:
        with contextlib.suppress(Exception):
            ray.kill(actor)


@contextlib.contextmanager
def _shard_workers(ray: Any, n: int, device: str, retries: int, threads: int) -> Any:
    """``n`` workers: the open :func:`worker_pool`'s (left up; all ended if one failed), else
    new ones, ended on return."""
    pool = _POOL.get()
    if pool is None:
        actors = [_new_actor(ray, device, retries, threads) for _ in range(n)]
        try:
            yield actors
        finally:
            _kill(ray, actors)
        return
    actors = pool.take(ray, n, device, retries, threads)
    try:
        yield actors
    except BaseException:
        pool.close()  # a worker may be lost or busy with a cancelled batch: none is reused
        raise


def generate_sharded(
    base: str | Path,
    targets: Sequence[Target],
    jobs: Sequence[Any],
    settings: Any,
    *,
    workers: int,
    load_kwargs: dict[str, Any],
    multiplier: float = 1.0,
    progress: bool = True,
    retries: int = 2,
    threads: int | None = None,
    address: str | None = None,
) -> dict[str, Path]:
    """Fill every target folder with the images of ``jobs`` on ``workers`` Ray actors; returns
    name → manifest path. Same files and manifests as :func:`generate_images` on each target.
    ``load_kwargs`` go to ``load_base`` (device, dtype, ...); ``retries``: times a killed worker
    is restarted and its batches made again; ``threads``: CPU threads per worker (default: this
    process's, which CPU results depend on)."""
    import torch
    from tqdm.auto import tqdm

    from t2ibench.pipeline.generate import (
        _folder_lock,
        aligned_batches,
        make_folder,
        prepare_folder,
    )
    from t2ibench.pipeline.manifest import append_records

    if workers < 1:  # before any lock or Ray start
        raise ConfigError(f"workers: must be ≥ 1, got {workers}")
    manifests: dict[str, Path] = {}
    with contextlib.ExitStack() as locks:
        # unit = (target number, its batch number, the batch, positions to write)
        units: list[tuple[int, int, list, list[int]]] = []
        for t, target in enumerate(targets):
            folder = make_folder(target.folder)
            locks.enter_context(_folder_lock(folder))
            manifest, todo, _ = prepare_folder(
                jobs,
                folder,
                checkpoint=target.name,
                settings=settings.of_checkpoint(target.checkpoint),
            )
            manifests[target.name] = manifest
            for b, (batch, wanted) in enumerate(aligned_batches(jobs, todo, settings.batch_size)):
                positions = [i for i, job in enumerate(batch) if id(job) in wanted]
                units.append((t, b, list(batch), positions))
        if not units:
            return manifests
        ray = ensure_ray(address)
        device = load_kwargs.get("device", "cpu")
        threads = threads or torch.get_num_threads()
        kwargs = {k: (str(v) if isinstance(v, Path) else v) for k, v in load_kwargs.items()}
        model = (str(base), kwargs, multiplier)
        n = _workers(ray, workers, device, len(units))
        total = sum(len(u[3]) for u in units)
        bar = tqdm(total=total, unit="img", desc="generate (sharded)", disable=not progress)
        done: list[dict[int, list]] = [{} for _ in targets]  # finished, not yet appended
        appended = [0] * len(targets)  # next batch number to append, per target

        def flush(t: int, everything: bool = False) -> None:
            path = manifests[targets[t].name]
            while appended[t] in done[t]:
                append_records(path, done[t].pop(appended[t]))
                appended[t] += 1
            if everything:  # stopping: finished images out of order are kept too
                for b in sorted(done[t]):
                    append_records(path, done[t].pop(b))

        def call(actor: Any, unit: tuple) -> Any:
            t, _, batch, positions = unit
            target = targets[t]
            return actor.generate.remote(
                model, target, batch, positions, settings.of_checkpoint(target.checkpoint)
            )

        def on_result(unit: tuple, records: list) -> None:
            t, b, _, positions = unit
            done[t][b] = records
            flush(t)
            bar.update(len(positions))

        try:
            with _shard_workers(ray, n, device, retries, threads) as actors:
                _run_pool(ray, actors, units, call, on_result)
        except _WorkerFailed as failed:
            for t in range(len(targets)):
                flush(t, everything=True)
            kept = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in manifests.values())
            if isinstance(failed.cause, T2IBenchError):
                raise T2IBenchError(str(failed.cause)) from None
            raise T2IBenchError(
                f"generation worker failed ({_one_line(failed.cause)}); {kept} finished images "
                "are kept — rerun the same command to make the rest"
            ) from None
        finally:
            bar.close()
    return manifests


def generate_checkpoints_sharded(
    base: str | Path,
    checkpoints: Sequence[str | Path],
    jobs: Sequence[Any],
    out_dir: Path,
    *,
    settings: Any = None,
    multiplier: float = 1.0,
    progress: bool = True,
    workers: int = 2,
    address: str | None = None,
    **load_kwargs: Any,
) -> dict[str, Path]:
    """:func:`t2ibench.pipeline.generate.generate_checkpoints` on Ray workers: the same folders,
    files and manifests (``t2ibench generate --executor ray``)."""
    from t2ibench.pipeline.generate import GenerationSettings, checkpoint_names

    names = checkpoint_names(checkpoints)
    targets = [Target(c, n, Path(out_dir) / n) for c, n in zip(checkpoints, names, strict=True)]
    settings = settings or GenerationSettings()
    return generate_sharded(
        base,
        targets,
        jobs,
        settings,
        workers=workers,
        load_kwargs={**settings.load_kwargs(), **load_kwargs},
        multiplier=multiplier,
        progress=progress,
        address=address,
    )


# --------------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------------


def encode_sharded(
    record: Callable[[], Any],
    encoders: Sequence[Any],
    *,
    make_encoders: Callable[[str], list],
    device: str,
    workers: int,
    progress: bool = True,
    retries: int = 2,
    threads: int | None = None,
    address: str | None = None,
) -> int:
    """Run ``record()`` (the evaluations, as the driver will run them) in recording mode, then
    encode the batches it lists on ``workers`` Ray actors into the feature cache. ``encoders`` are
    the driver's, made by ``make_encoders(device)``, a picklable function each worker calls for
    its own, the same list in the same order. Returns the number of images encoded."""
    import torch
    from tqdm.auto import tqdm

    from t2ibench.pipeline.evaluate import recording

    with recording(encoders) as recorder:
        record()
    batches = recorder.batches
    if not batches:
        return 0
    ray = ensure_ray(address)
    threads = threads or torch.get_num_threads()
    n = _workers(ray, workers, device, len(batches))
    # the name workers know this list by: one per call, so a reused worker makes it once
    encoders_spec = (uuid.uuid4().hex, make_encoders)
    bar = tqdm(
        total=sum(len(b.items) for b in batches),
        unit="img",
        desc="encode (sharded)",
        disable=not progress,
    )
    encoded = 0

    def on_result(batch: Any, n: int) -> None:
        nonlocal encoded
        encoded += n
        bar.update(n)

    try:
        with _shard_workers(ray, n, device, retries, threads) as actors:
            _run_pool(
                ray, actors, batches, lambda a, b: a.encode.remote(encoders_spec, b), on_result
            )
    except _WorkerFailed as failed:
        if isinstance(failed.cause, T2IBenchError):
            raise T2IBenchError(str(failed.cause)) from None
        raise T2IBenchError(
            f"encoding worker failed ({_one_line(failed.cause)}); the features stored are kept "
            "in the cache — rerun the same command to go on"
        ) from None
    finally:
        bar.close()
    return encoded


def _eval_denoiser(pipe: Any) -> None:
    """A pipeline handed over from training may still have its denoiser in train mode."""
    from t2ibench.architectures import architecture_of_pipe

    denoiser = architecture_of_pipe(pipe).denoiser_of(pipe)
    if denoiser.training:
        denoiser.eval()
