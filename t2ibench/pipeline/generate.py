"""The ``generate`` stage: images for generation jobs, batched, seed-paired, resumable.

The same job gives the same initial noise for the base model and for every checkpoint (one CPU
``torch.Generator`` per image, seeded with the job's seed), so base and tuned images pair by seed.
Batches are cut from the whole job list at fixed positions (jobs ``[b·B, (b+1)·B)`` for batch size
B), also on a rerun: CPU kernels sum in an order that depends on the batch's size and content, so an
image made in another batch can land one 8-bit level off on a few pixels; with aligned batches a
resumed run makes every image in exactly the batch an uninterrupted run would have, and its bytes
are the same. Files are written to a temporary name and renamed; the manifest line follows only once
the image is in place, so a killed run loses at most the batch in flight and a rerun redoes nothing
finished (a batch with some images finished is made again whole, and only the missing ones written).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import re
import time
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.fsutil import atomic_write, exclusive_lock, file_sha256, remove_stale_temps
from t2ibench.pipeline.manifest import (
    MANIFEST_NAME,
    ManifestRecord,
    append_records,
    read_manifest,
    repair_tail,
    safe_join,
    write_manifest,
)
from t2ibench.registry import Registry

log = logging.getLogger(__name__)
LOCK_NAME = ".generate.lock"
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]*$")

# name → diffusers scheduler class name; resolved lazily so this module does not import diffusers.
SCHEDULERS: Registry[str] = Registry("scheduler")
for _name, _cls in {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "dpm++2m": "DPMSolverMultistepScheduler",
    "flow-euler": "FlowMatchEulerDiscreteScheduler",  # rectified-flow bases (SD3, FLUX)
}.items():
    SCHEDULERS.register(_name, _cls)


class Job(Protocol):
    """What a generation job must provide (``t2ibench.prompts.GenerationJob`` does)."""

    leaf: str
    prompt_type: str
    prompt: str
    seed: int
    index: int


@dataclass(frozen=True)
class GenerationSettings:
    """Sampler settings; the defaults are the paper's (DDIM 30 steps, CFG 7, 512 px, no negative)."""

    steps: int = 30
    guidance_scale: float = 7.0
    height: int = 512
    width: int = 512
    negative_prompt: str | None = None
    scheduler: str = "ddim"
    batch_size: int = 8
    eta: float = 0.0
    # How the sampler runs (docs/performance.md#generation-speed). Each can move a pixel by float
    # rounding, so a value other than the default is part of the image settings (manifest, run
    # key, base-images folder); at their defaults they are left out, so folders and run names
    # made before these options existed stay valid.
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    fuse_adapter: bool = False
    attention: str = "plain"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"generation settings: steps must be ≥ 1, got {self.steps}")
        if self.batch_size < 1:
            raise ConfigError(f"generation settings: batch_size must be ≥ 1, got {self.batch_size}")
        for side in ("height", "width"):
            value = getattr(self, side)
            if value < 8 or value % 8:
                raise ConfigError(
                    f"generation settings: {side} must be a multiple of 8, got {value}"
                )
        if self.dtype not in DTYPES:
            raise ConfigError(
                f"generation settings: dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}"
            )
        if self.attention not in ATTENTIONS:
            raise ConfigError(
                f"generation settings: attention must be 'plain' or 'sdpa', got {self.attention!r}"
            )
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(
                f"generation settings: unknown scheduler {self.scheduler!r}; known: "
                + ", ".join(SCHEDULERS.names())
            )

    def image_settings(self) -> dict[str, Any]:
        """The settings that change pixels (``batch_size`` does not), as recorded in the manifest;
        the speed options only where they differ from their defaults (see the fields)."""
        data = self.key()
        data.pop("batch_size")
        return data

    def key(self) -> dict[str, Any]:
        """Every field, the speed options only where not at their defaults: what names a run and
        a shared base-images folder (a changed dtype is another run, never mixed into one)."""
        data = asdict(self)
        for name, default in SPEED_DEFAULTS.items():
            if data[name] == default:
                data.pop(name)
        return data

    def of_checkpoint(self, checkpoint: str | Path) -> GenerationSettings:
        """The settings ``checkpoint``'s images are made and recorded with: the base model has no
        adapter to fuse, so its images are made with ``fuse_adapter`` off and shared by runs with
        and without it (the other options change the base model's pixels too)."""
        return replace(self, fuse_adapter=False) if str(checkpoint) == BASE else self

    def speed_options(self) -> dict[str, Any]:
        """The speed options with their values, defaults included (for results metadata)."""
        return {name: getattr(self, name) for name in SPEED_DEFAULTS}

    def load_kwargs(self) -> dict[str, Any]:
        """What :func:`t2ibench.models.load_base` needs to load the base these settings sample."""
        return {"dtype": torch_dtype(self.dtype), "attention": self.attention}


DTYPES = ("fp32", "fp16", "bf16")
ATTENTIONS = ("plain", "sdpa")
SPEED_DEFAULTS = {
    "dtype": "fp32",
    "channels_last": False,
    "compile": False,
    "fuse_adapter": False,
    "attention": "plain",
}


def torch_dtype(name: str) -> Any:
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def folder_name(part: str) -> str:
    """A safe, deterministic folder name for one part of a leaf key or a prompt type.

    Plain names (letters, digits, ``. _ + -``, not starting with a dot) stay as they are; any other
    name the dataset spec allows (spaces, unicode, ``<b>``, a leading dot) becomes an ASCII slug
    plus 8 hex digits of its sha256, e.g. ``"onex outfit"`` → ``"onex_outfit-369e30c7"``, so two
    names never share a folder. The manifest keeps the real leaf key.
    """
    if _SAFE_PART.match(part):
        return part
    ascii_text = unicodedata.normalize("NFKD", part).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^A-Za-z0-9._+\-]+", "_", ascii_text).lstrip("._+-")[:48] or "x"
    return f"{slug}-{hashlib.sha256(part.encode('utf-8')).hexdigest()[:8]}"


def job_file(job: Job) -> str:
    """``<leaf>/<prompt_type>/<index:04d>-s<seed>.png``, each part mapped by :func:`folder_name`."""
    parts = [*str(job.leaf).split("/"), str(job.prompt_type)]
    for part in parts:
        if part in {"", ".", ".."}:
            raise ConfigError(
                f"generation job {job.leaf}/{job.prompt_type}#{job.index}: {part!r} is not a safe "
                "folder name (empty, '.' or '..')"
            )
    if job.index < 0:
        raise ConfigError(
            f"generation job {job.leaf}/{job.prompt_type}: negative index {job.index}"
        )
    return "/".join(folder_name(p) for p in parts) + f"/{job.index:04d}-s{job.seed}.png"


def _line_count(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _folder_lock(out_dir: Path):
    """One writer per images folder (two would interleave manifest lines and race on files)."""
    busy = f"{out_dir}: another t2ibench process is generating into this folder"
    return exclusive_lock(out_dir / LOCK_NAME, busy)


def _disk_full(exc: OSError) -> bool:
    return exc.errno in {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _write_png(image: Any, path: Path) -> str:
    """Encode ``image`` as PNG, write it under a temp name, fsync, rename; return its sha256."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data = buffer.getvalue()
    atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()


def pending_jobs(
    jobs: Sequence[Job], out_dir: Path, *, checkpoint: str, settings: GenerationSettings
) -> tuple[list[Job], list[ManifestRecord]]:
    """(jobs still to generate, manifest records that are finished and valid).

    A record is finished when its file exists, hashes to the recorded sha256, and matches the job's
    prompt and seed. Records of another checkpoint or other image settings are an error: one images
    folder holds one checkpoint at one set of settings.
    """
    out_dir = Path(out_dir)
    manifest = out_dir / MANIFEST_NAME
    records = read_manifest(manifest) if manifest.is_file() else []
    wanted = settings.image_settings()
    for rec in records:
        if rec.checkpoint != checkpoint or (rec.settings and rec.settings != wanted):
            what = (
                f"checkpoint {rec.checkpoint!r}"
                if rec.checkpoint != checkpoint
                else f"other settings {rec.settings}"
            )
            raise T2IBenchError(
                f"{manifest}: holds images of {what} (file {rec.file!r}); generating "
                f"{checkpoint!r} with {wanted} needs its own folder"
            )
    by_file = {rec.file: rec for rec in records}
    seen: set[str] = set()
    todo: list[Job] = []
    done: list[ManifestRecord] = []
    for job in jobs:
        rel = job_file(job)
        if rel in seen:
            raise ConfigError(f"generation jobs: two jobs write {rel!r} (same leaf, type, index)")
        seen.add(rel)
        rec = by_file.get(rel)
        path = out_dir / rel
        if (
            rec is not None
            and rec.prompt == job.prompt
            and rec.seed == job.seed
            and path.is_file()
            and rec.sha256 == file_sha256(path)
        ):
            done.append(rec)
        else:
            todo.append(job)
    # Keep records of files that exist even when they are not in this job list (another prompt-type
    # selection); only records whose file is gone or changed are dropped.
    kept_files = {r.file for r in done}
    for rec in records:
        if rec.file not in seen and rec.file not in kept_files:
            path = safe_join(out_dir, rec.file, where=str(manifest))
            if path.is_file() and rec.sha256 == file_sha256(path):
                done.append(rec)
    return todo, done


def aligned_batches(
    jobs: Sequence[Job], todo: Sequence[Job], batch_size: int
) -> Iterator[tuple[list[Job], set[int]]]:
    """The batches of ``jobs`` cut at fixed positions that hold at least one job of ``todo``, each
    with the ids of its jobs still to write (see the module docstring: pixels depend on the batch)."""
    pending = {id(job) for job in todo}
    for first in range(0, len(jobs), batch_size):
        batch = list(jobs[first : first + batch_size])
        wanted = {id(job) for job in batch if id(job) in pending}
        if wanted:
            yield batch, wanted


def _set_scheduler(pipe: Any, name: str) -> Any:
    import diffusers

    cls = getattr(diffusers, SCHEDULERS.get(name))
    previous = pipe.scheduler
    if type(previous) is not cls:
        pipe.scheduler = cls.from_config(previous.config)
    return previous


#: keyword arguments of ``torch.compile`` for ``generate.compile`` (the default inductor backend;
#: tests run the same path with ``backend="eager"``, which compiles nothing)
COMPILE_KWARGS: dict[str, Any] = {}


@contextlib.contextmanager
def sampling_options(pipe: Any, settings: GenerationSettings) -> Iterator[Any]:
    """The pipeline set up as ``settings`` say for one generation call, restored on exit:
    the attention processor (UNet bases: plain or SDPA's ``AttnProcessor2_0``; the transformer
    bases' own processors already call SDPA), channels-last memory layout of the denoiser and the
    VAE, and ``torch.compile`` of the denoiser. The dtype is the loaded pipeline's
    (``load_base(..., **settings.load_kwargs())``): a pipeline of another dtype is refused, as
    casting it here and back would not restore its weights exactly."""
    import torch

    from t2ibench.architectures import architecture_of_pipe

    try:
        arch = architecture_of_pipe(pipe)
    except ConfigError:
        if settings.speed_options() != SPEED_DEFAULTS:
            raise
        yield pipe  # a stand-in pipeline (tests) at the defaults: nothing to set up
        return
    denoiser = arch.denoiser_of(pipe)
    want = torch_dtype(settings.dtype)
    if denoiser.dtype != want:
        raise ConfigError(
            f"generation: the pipeline's {arch.denoiser} is {denoiser.dtype} but the settings ask "
            f"for dtype {settings.dtype!r}; load the base with that dtype "
            "(load_base(spec, **settings.load_kwargs()))"
        )
    with contextlib.ExitStack() as undo:
        parts = [m for m in (denoiser, getattr(pipe, "vae", None)) if m is not None]
        processors = [(m, m.attn_processors) for m in parts if hasattr(m, "attn_processors")]
        arch.finish(pipe, settings.attention)
        for module, previous in processors:
            undo.callback(module.set_attn_processor, previous)
        if settings.channels_last:
            for module in parts:
                module.to(memory_format=torch.channels_last)
                undo.callback(module.to, memory_format=torch.contiguous_format)
        if settings.compile:
            setattr(pipe, arch.denoiser, torch.compile(denoiser, **COMPILE_KWARGS))
            undo.callback(setattr, pipe, arch.denoiser, denoiser)
        yield pipe


def generate_batch(pipe: Any, jobs: Sequence[Job], settings: GenerationSettings) -> list[Any]:
    """PIL images for ``jobs`` in one pipeline call, one CPU generator per image (seed-paired)."""
    import numpy as np
    import torch

    # CPU generators: the initial noise is then the same on every device, so a GPU run pairs with
    # a CPU run of the same job (diffusers draws on the generator's device and moves the tensor).
    generators = [torch.Generator("cpu").manual_seed(int(job.seed)) for job in jobs]
    negative = None
    if settings.negative_prompt is not None:
        negative = [settings.negative_prompt] * len(jobs)
    from t2ibench.architectures import pipeline_call_kwargs

    kwargs = {
        "prompt": [job.prompt for job in jobs],
        "negative_prompt": negative,
        "num_inference_steps": settings.steps,
        "guidance_scale": settings.guidance_scale,
        "height": settings.height,
        "width": settings.width,
        "eta": settings.eta,
        "generator": generators,
        "output_type": "np",
    }
    with torch.inference_mode():
        # the base's pipeline takes what it has (FLUX: no eta)
        out = pipe(**pipeline_call_kwargs(pipe, kwargs))
    # NaN / inf in the latents (a broken base or adapter) would be saved as black images.
    if not np.isfinite(out.images).all():
        raise T2IBenchError(
            f"generation: the images of {jobs[0].leaf!r} ({jobs[0].prompt_type}) came out NaN/inf "
            "(non-finite latents); the base model or the adapter holds broken weights"
        )
    return list(pipe.image_processor.numpy_to_pil(out.images))


def prepare_folder(
    jobs: Sequence[Job], out_dir: Path, *, checkpoint: str, settings: GenerationSettings
) -> tuple[Path, list[Job], list[ManifestRecord]]:
    """Make ``out_dir`` ready to resume, under its writer lock (held by the caller): stale temps
    removed, a truncated last manifest line cut, lines of missing or changed files dropped.
    Returns (manifest path, jobs still to generate, finished records)."""
    manifest = out_dir / MANIFEST_NAME
    remove_stale_temps(out_dir)
    if manifest.is_file():
        repair_tail(manifest)
    todo, done = pending_jobs(jobs, out_dir, checkpoint=checkpoint, settings=settings)
    if manifest.is_file() and _line_count(manifest) != len(done):
        # Drop lines of missing or changed files (and repeated lines) so regenerated images
        # never duplicate a line.
        write_manifest(manifest, done)
    if not manifest.exists():
        manifest.touch()
    return manifest, todo, done


def make_folder(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise T2IBenchError(f"{out_dir}: cannot create the images folder: {exc}") from exc
    return out_dir


def write_batch(
    pipe: Any,
    batch: Sequence[Job],
    wanted: Sequence[int],
    out_dir: Path,
    *,
    checkpoint: str,
    settings: GenerationSettings,
) -> list[ManifestRecord]:
    """Generate one aligned ``batch`` whole and write the images at positions ``wanted`` (each
    atomically); returns their manifest records, for the caller to append. The scheduler must be
    set already. Used by the local loop and by every shard worker alike."""
    images = generate_batch(pipe, batch, settings)
    image_settings = settings.image_settings()
    records = []
    for position in sorted(wanted):
        job = batch[position]
        rel = job_file(job)
        sha = _write_png(images[position], out_dir / rel)
        records.append(
            ManifestRecord(
                checkpoint=checkpoint,
                leaf=job.leaf,
                prompt_type=job.prompt_type,
                prompt=job.prompt,
                seed=int(job.seed),
                file=rel,
                index=int(job.index),
                sha256=sha,
                variant=str(getattr(job, "variant", "") or ""),
                settings=image_settings,
            )
        )
    return records


def generate_images(
    pipe: Any,
    jobs: Sequence[Job],
    out_dir: Path,
    *,
    checkpoint: str,
    settings: GenerationSettings | None = None,
    progress: bool = True,
    wanted: Sequence[Job] | None = None,
) -> Path:
    """Generate every job not yet finished in ``out_dir`` and return the manifest path.
    ``wanted``: only these of ``jobs`` (an adaptive run's admitted images), batches still cut from
    ``jobs`` at fixed positions, so each image is the one an uninterrupted full run makes.

    Layout: ``out_dir/<leaf>/<prompt_type>/<index:04d>-s<seed>.png`` and ``out_dir/manifest.jsonl``
    (one line per image: checkpoint, leaf, prompt_type, prompt, seed, index, variant, file, sha256,
    settings). A full disk raises one :class:`T2IBenchError` naming the folder; finished images
    and their manifest lines stay.
    """
    from tqdm.auto import tqdm

    settings = settings or GenerationSettings()
    out_dir = make_folder(out_dir)
    with _folder_lock(out_dir):
        manifest, todo, done = prepare_folder(
            jobs, out_dir, checkpoint=checkpoint, settings=settings
        )
        if wanted is not None:
            admitted = {job_file(job) for job in wanted}
            todo = [job for job in todo if job_file(job) in admitted]
        if not todo:
            return manifest
        previous = _set_scheduler(pipe, settings.scheduler)
        bar = tqdm(
            total=len(todo),
            unit="img",
            desc=f"generate {checkpoint}",
            disable=not progress,
            dynamic_ncols=True,
        )
        start, written = time.perf_counter(), 0
        try:
            with sampling_options(pipe, settings):
                for batch, wanted in aligned_batches(jobs, todo, settings.batch_size):
                    positions = [i for i, job in enumerate(batch) if id(job) in wanted]
                    try:
                        records = write_batch(
                            pipe,
                            batch,
                            positions,
                            out_dir,
                            checkpoint=checkpoint,
                            settings=settings,
                        )
                        append_records(manifest, records)
                    except OSError as exc:
                        if _disk_full(exc):
                            raise T2IBenchError(
                                f"{out_dir}: disk full while writing images; "
                                f"{len(done) + written} finished images are kept — free space "
                                "and rerun to resume"
                            ) from exc
                        raise
                    written += len(wanted)
                    bar.update(len(wanted))
        finally:
            bar.close()
            pipe.scheduler = previous
        elapsed = time.perf_counter() - start
        log.info(
            "%s: %d images in %.1f s (%.2f img/s) into %s",
            checkpoint,
            written,
            elapsed,
            written / elapsed if elapsed else 0.0,
            out_dir,
        )
    return manifest


# --- several checkpoints on one base ------------------------------------------------------------

BASE = "base"


def checkpoint_name(checkpoint: str | Path) -> str:
    """Folder name for a checkpoint: ``"base"`` or the file / folder stem."""
    if str(checkpoint) == BASE:
        return BASE
    path = Path(checkpoint)
    name = path.name if path.is_dir() else path.stem
    if not _SAFE_PART.match(name):
        raise ConfigError(f"checkpoint {checkpoint}: {name!r} is not a safe folder name")
    return name


@contextlib.contextmanager
def checkpoint_on_base(
    pipe: Any,
    checkpoint: str | Path,
    *,
    multiplier: float = 1.0,
    fuse: bool = False,
    **load_kwargs: Any,
) -> Iterator[Any]:
    """The pipeline to generate ``checkpoint`` with: the base itself for ``"base"``, a diffusers
    folder (a native full checkpoint) loaded on its own, or an adapter (a file, or a PEFT /
    diffusers LoRA folder) put on ``pipe`` with ``t2ibench.adapters.apply_adapter`` (``fuse``:
    merged into the weights with ``fuse_adapter``, so the forward runs no adapter modules) and
    taken off again on exit (fused: the saved weights put back bit for bit)."""
    if str(checkpoint) == BASE:
        yield pipe
        return
    path = Path(checkpoint)
    if not path.exists():
        raise ConfigError(f"checkpoint {checkpoint}: no such file or folder")
    from t2ibench.adapters.foreign import is_adapter_folder

    if path.is_dir() and not is_adapter_folder(path):
        from t2ibench.models import load_base

        yield load_base(path, **load_kwargs)
        return
    from t2ibench.adapters import apply_adapter, fuse_adapter

    handle = (fuse_adapter if fuse else apply_adapter)(pipe, path, multiplier=multiplier)
    try:
        yield pipe
    finally:
        handle.remove()


def checkpoint_names(checkpoints: Sequence[str | Path]) -> list[str]:
    """Each checkpoint's folder name, after checking that every one exists and no two share a
    name (before the slow base load, not after)."""
    for checkpoint in checkpoints:
        if str(checkpoint) != BASE and not Path(checkpoint).exists():
            raise ConfigError(f"checkpoint {checkpoint}: no such file or folder")
    names = [checkpoint_name(c) for c in checkpoints]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"checkpoints: several share the name {', '.join(dupes)}; rename them")
    return names


def generate_checkpoints(
    base: str | Path,
    checkpoints: Sequence[str | Path],
    jobs: Sequence[Job],
    out_dir: Path,
    *,
    settings: GenerationSettings | None = None,
    multiplier: float = 1.0,
    progress: bool = True,
    **load_kwargs: Any,
) -> dict[str, Path]:
    """Images for each checkpoint (and ``"base"``) into ``out_dir/<name>/``; the base is loaded
    once. Returns name → manifest path. Finished images are never redone."""
    from t2ibench.models import load_base

    names = checkpoint_names(checkpoints)
    settings = settings or GenerationSettings()
    load_kwargs = {**settings.load_kwargs(), **load_kwargs}
    pipe = load_base(base, **load_kwargs)
    manifests = {}
    for name, checkpoint in zip(names, checkpoints, strict=True):
        tuned = checkpoint_on_base(
            pipe, checkpoint, multiplier=multiplier, fuse=settings.fuse_adapter, **load_kwargs
        )
        with tuned as p:
            manifests[name] = generate_images(
                p,
                jobs,
                Path(out_dir) / name,
                checkpoint=name,
                settings=settings.of_checkpoint(checkpoint),
                progress=progress,
            )
    return manifests


def shared_base_images(r: Any, jobs: Sequence[Job]) -> Path:
    """The base model's images depend only on the base, the generation settings and the jobs, so
    every run under the same ``--out`` (a sweep's runs included) shares one folder of them
    (``r``: a ResolvedRun)."""
    key = {
        "base": r.base_fingerprint,
        "generation": r.generation.of_checkpoint(BASE).key(),
        "jobs": [asdict(j) for j in jobs],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(r.options.out) / ".base-images" / digest
