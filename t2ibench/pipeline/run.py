"""``t2ibench run``: train → generate → evaluate → analyse, resumable and idempotent.

A run folder ``<out>/<run-name>/`` holds::

    run.json            resolved config, versions, git commit, seeds, dataset hash, stage timings
    run.log             the log of every invocation
    state.json          what is done (stages, checkpoints generated and evaluated)
    checkpoints/        the trainer's checkpoints (the trainer resumes from its last one)
    ../.base-images/<hash>/  the base model's images, generated once and shared by every run
                        under the same ``--out`` with the same base, settings and jobs
    images/<ckpt>/      each checkpoint's images + manifest.jsonl (resumable per image)
    results/parts/<ckpt>/  one results table per evaluated checkpoint (written atomically)
    results/            the merged results table (results.parquet + results.csv)
    report/             the analysis report (report.html, summary.md, scores.csv, ...)

The run name is ``<trainer>-<hash>`` where the hash covers everything that changes results (the
resolved trainer config, dataset hash, base model, generation settings, encoders, prompt types,
images per leaf, metrics): changing any of it starts a new run instead of mixing results.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import platform
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.fsutil import atomic_write

log = logging.getLogger("t2ibench.run")

STAGES = ("train", "generate", "evaluate", "analyze")
#: Next to each results part: digests of the images it scored (its manifest and the base's).
PART_INPUTS = "inputs.json"


@dataclass
class RunOptions:
    """One ``t2ibench run``: the config layers (see :mod:`t2ibench.runconfig`) and how to
    execute them. ``layers`` are ``(source, table of overrides)`` pairs, later ones winning, over
    the profile's values (``profile=None``: the offline default unless a real base or dataset is
    named, else ``paper``) and the trainer TOML file ``trainer_file``."""

    layers: Sequence[tuple[str, Mapping[str, Any]]] = ()
    profile: str | None = None
    trainer_file: str | None = None
    device: str = "cpu"
    out: str = "results"
    name: str | None = None
    allow_pickle: bool = False
    analyze: bool = True
    progress: bool = True
    #: result columns every row gets (a sweep's config name and seed label)
    labels: dict[str, Any] = field(default_factory=dict)
    #: the metric definitions (:mod:`t2ibench.metric_profiles`); None = the default, lycoris2024
    metric_profile: str | None = None


def set_layers(items: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
    """``--set key=value`` items as override layers (values read as TOML)."""
    from t2ibench.runconfig import parse_set

    return [(f"--set {item}", dict([parse_set(item)])) for item in items]


@dataclass
class ResolvedRun:
    options: RunOptions
    profile: str
    config: Any  # the resolved RunConfig (trainer keys complete)
    trainer: Any  # the TrainerSpec
    dataset: Any
    base: str
    base_fingerprint: dict[str, str]
    trainer_config: Any
    encoders: list[str]
    resize: list[str] | None
    metrics: list[str]
    prompt_types: list[str]
    images_per_leaf: int
    generation: Any
    run_hash: str
    run_dir: Path
    metric_profile: str = "lycoris2024"
    #: ``t2ibench evaluate-checkpoints``: the checkpoints to score instead of training, in order,
    #: each with its result columns (epoch, step, algorithm, ...); see pipeline/checkpoints.py
    given_checkpoints: dict[Path, dict[str, Any]] | None = None
    #: extra fields for ``run.json`` (where given checkpoints came from)
    record_extra: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        return _identity(self)


# --------------------------------------------------------------------------------------------------
# Resolution: profile, config layers, validation, the run hash
# --------------------------------------------------------------------------------------------------


def choose_profile(options: RunOptions, base: str | None, dataset: str | None) -> Any:
    """``--profile`` if given; else the offline default when neither a real base nor a real
    dataset is named (named ones, e.g. ``--dataset demo``, are offline), else ``paper``."""
    from t2ibench.profiles import get_profile, is_named, offline_profile

    if options.profile is not None:
        return get_profile(options.profile)
    real_base = base is not None and not is_named("base", base)
    real_dataset = dataset is not None and not is_named("dataset", dataset)
    if not real_base and not real_dataset:
        return offline_profile()
    if dataset is None:
        raise ConfigError("--dataset: required with --base (only the offline default ships data)")
    return get_profile("paper")


def resolve(options: RunOptions) -> ResolvedRun:
    """Layer the profile, trainer file and overrides, and validate every input before any work."""
    from t2ibench.adapters import get_trainer
    from t2ibench.adapters.config import read_trainer_toml
    from t2ibench.data import load_dataset
    from t2ibench.metrics import get_metric, list_metrics
    from t2ibench.models import base_fingerprint
    from t2ibench.pipeline.generate import GenerationSettings
    from t2ibench.profiles import resolve_named
    from t2ibench.prompts import get_prompt_type, list_prompt_types
    from t2ibench.runconfig import Layers

    check_device(options.device)
    _check_out(Path(options.out))
    user = Layers()
    for where, table in options.layers:
        user.add_table(where, table)
    profile = choose_profile(options, user.values.get("base"), user.values.get("dataset"))
    layers = Layers().add_table(f"profile {profile.name}", profile.values)
    file_trainer = None
    if options.trainer_file:
        data = read_trainer_toml(Path(options.trainer_file))
        file_trainer = data.get("trainer")
        layers.add_table(options.trainer_file, {"trainer": data})
    for where, table in options.layers:
        layers.add_table(where, table)
    cfg = layers.run_config()
    spec = get_trainer(cfg.trainer_name)  # unknown trainer → one line with the known names
    if file_trainer not in (None, spec.name):
        raise ConfigError(
            f"{options.trainer_file}: field 'trainer' is {file_trainer!r} but the trainer asked "
            f"for is {spec.name!r}"
        )
    trainer_cfg = spec.config(layers.trainer_sources(), prefix="trainer.")

    if cfg.dataset is None:
        raise ConfigError(f"--dataset: required (profile {profile.name} names none)")
    dataset = load_dataset(resolve_named("dataset", cfg.dataset))
    base = str(resolve_named("base", cfg.base))
    fingerprint = base_fingerprint(base)  # a missing base model fails here, before training

    metric_profile = _metric_profile(options, dataset)
    if metric_profile.defaults:
        metrics = list(cfg.evaluate.metrics or list_metrics())
    else:  # the profile's measures say what is computed
        metrics = metric_profile.metrics()
    for m in metrics:
        get_metric(m)
    prompt_types = list(cfg.generate.prompt_types or list_prompt_types())
    for p in prompt_types:
        get_prompt_type(p)
    encoders = list(cfg.evaluate.encoders)
    _check_encoders(encoders)
    gen = cfg.generate
    side = gen.resolution or trainer_cfg.resolution
    # Every generation job and its file name, built now: what generation would refuse fails here,
    # before training, not after it.
    from t2ibench.pipeline.generate import job_file
    from t2ibench.prompts import jobs_for

    for job in jobs_for(dataset, prompt_types, gen.images_per_leaf):
        job_file(job)
    generation = GenerationSettings(
        steps=gen.steps,
        guidance_scale=gen.guidance_scale,
        height=side,
        width=side,
        negative_prompt=gen.negative_prompt,
        batch_size=gen.batch_size,
    )
    resolved_cfg = cfg.model_copy(
        update={
            "trainer": trainer_cfg.to_dict(),
            "generate": gen.model_copy(update={"resolution": side, "prompt_types": prompt_types}),
            "evaluate": cfg.evaluate.model_copy(update={"metrics": metrics}),
        }
    )
    resolved = ResolvedRun(
        options=options,
        profile=profile.name,
        config=resolved_cfg,
        trainer=spec,
        dataset=dataset,
        base=base,
        base_fingerprint=fingerprint,
        trainer_config=trainer_cfg,
        encoders=encoders,
        resize=list(cfg.evaluate.resize) if cfg.evaluate.resize else None,
        metrics=metrics,
        prompt_types=prompt_types,
        images_per_leaf=gen.images_per_leaf,
        generation=generation,
        run_hash="",
        run_dir=Path(),
        metric_profile=metric_profile.name,
    )
    ident = _identity(resolved)
    resolved.run_hash = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    name = options.name or f"{spec.name}-{resolved.run_hash[:10]}"
    resolved.run_dir = Path(options.out) / name
    return resolved


def _metric_profile(options: RunOptions, dataset: Any) -> Any:
    """The metric profile asked for, checked against what the evaluate stage can compute."""
    from t2ibench.metric_profiles import DEFAULT_METRIC_PROFILE, get_metric_profile
    from t2ibench.metric_profiles.compile import check_profile

    profile = get_metric_profile(options.metric_profile or DEFAULT_METRIC_PROFILE)
    single = all(len(leaf.images) == 1 for leaf in dataset.leaves.values())
    check_profile(profile, single_reference=single)
    return profile


def _identity(r: ResolvedRun) -> dict[str, Any]:
    """Everything that changes results; its hash names the run (the default metric profile is
    left out, so runs made before profiles existed keep their names)."""
    extra = {} if r.metric_profile == "lycoris2024" else {"metric_profile": r.metric_profile}
    return {
        **extra,
        # given checkpoints: each is checked by its own digest (pipeline/checkpoints.py)
        "trainer_config": (
            r.trainer_config.to_dict()
            if r.given_checkpoints is None
            else {"given": "evaluate-checkpoints"}
        ),
        "dataset_sha256": r.dataset.sha256,
        "base": r.base_fingerprint,
        "generation": asdict(r.generation),
        "encoders": r.encoders,
        "resize": r.resize,
        "metrics": r.metrics,
        "prompt_types": r.prompt_types,
        "images_per_leaf": r.images_per_leaf,
    }


def check_device(device: str) -> None:
    """A bogus device, or CUDA without a GPU, is one clear line before any work starts."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(
            f"--device {device!r}: not a device ({exc}); use cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"--device {device}: MPS is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise ConfigError(f"--device {device!r}: unsupported; use cpu, cuda or cuda:N")


def _check_out(out: Path) -> None:
    """``--out`` must be a folder we can write to (checked without creating anything)."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {existing} is not writable")


def parse_encoder(item: str) -> tuple[str, str | None, bool]:
    """``name`` (real default weights), ``name@tiny`` (tiny random variant), ``name@WEIGHTS``."""
    name, _, weights = item.partition("@")
    if weights == "tiny":
        return name, None, True
    return name, weights or None, False


def _check_encoders(items: Sequence[str]) -> None:
    from t2ibench.encoders import get_encoder_spec

    for item in items:
        get_encoder_spec(parse_encoder(item)[0])


def create_encoders(items: Sequence[str], resize: Sequence[str] | None, device: str) -> list:
    """Load the selected encoders; ``resize`` modes multiply image encoders (not gram / score)."""
    from t2ibench.encoders import create_encoder, get_encoder_spec

    check_device(device)
    out = []
    for item in items:
        name, weights, tiny = parse_encoder(item)
        kind = get_encoder_spec(name).kind
        modes = resize if (resize and kind in ("image", "image-text")) else [None]
        for mode in modes:
            try:
                enc = create_encoder(name, weights=weights, tiny=tiny, device=device, resize=mode)
            except pickle.UnpicklingError:
                # torch.load(weights_only=True) refused objects other than tensors: say which file.
                raise ConfigError(
                    f"encoder {item}: {weights}: refused: the file holds pickled objects other "
                    "than tensors (torch.load weights_only=True blocked them); use a .safetensors file"
                ) from None
            out.append(enc)
    return out


# --------------------------------------------------------------------------------------------------
# State and records
# --------------------------------------------------------------------------------------------------


class RunState:
    """``state.json``: which stages and checkpoints are done. Written atomically after each unit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"done": {}, "generated": [], "evaluated": []}
        if path.is_file():
            try:
                self.data.update(json.loads(path.read_text(encoding="utf-8")))
            except json.JSONDecodeError as exc:
                raise T2IBenchError(
                    f"{path}: corrupt run state ({exc.msg}); delete it to redo checks"
                ) from None

    def done(self, key: str) -> bool:
        return key in self.data["done"]

    def mark(self, key: str, **info: Any) -> None:
        self.data["done"][key] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        self.save()

    def add(self, listname: str, item: str) -> None:
        if item not in self.data[listname]:
            self.data[listname].append(item)
        self.save()

    def has(self, listname: str, item: str) -> bool:
        return item in self.data[listname]

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=2, sort_keys=True))


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in (
        "t2ibench",
        "torch",
        "diffusers",
        "transformers",
        "open-clip-torch",
        "timm",
        "lycoris-lora",
        "safetensors",
        "pandas",
        "catboost",
        "shap",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = ""
    return out


def _setup_log(run_dir: Path) -> logging.Handler:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    except OSError as exc:
        raise T2IBenchError(
            f"{run_dir}: cannot create the run folder ({exc.strerror or exc}); check --out"
        ) from None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("t2ibench")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


# --------------------------------------------------------------------------------------------------
# The stages
# --------------------------------------------------------------------------------------------------


def shared_base_images(r: ResolvedRun, jobs: Sequence[Any]) -> Path:
    """The base model's images depend only on the base, the generation settings and the jobs, so
    every run under the same ``--out`` (a sweep's runs included) shares one folder of them."""
    key = {
        "base": r.base_fingerprint,
        "generation": asdict(r.generation),
        "jobs": [asdict(j) for j in jobs],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(r.options.out) / ".base-images" / digest


def checkpoint_info(r: ResolvedRun, checkpoints: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """Result columns per checkpoint: config, seed, epoch, then what the trainer contributes
    (``TrainerSpec.columns``: algorithm, preset, lr and its own keys), then the run's labels."""
    import re

    from t2ibench.adapters.sizes import checkpoint_columns
    from t2ibench.pipeline.generate import checkpoint_name

    cfg = r.trainer_config
    labels = r.options.labels
    info = {}
    for ck in checkpoints:
        name = checkpoint_name(ck)
        m = re.search(r"-e(\d+)$", name)
        info[name] = {
            "config": labels.get("config", r.run_dir.name),
            "seed": str(labels.get("seed", cfg.seed)),
            "epoch": int(m.group(1)) if m else None,
            **r.trainer.columns(cfg),
            **checkpoint_columns(ck),  # trainable-parameter count and file size
            **{k: v for k, v in labels.items() if k not in ("config", "seed")},
        }
    return info


def _quiet_libraries() -> None:
    """The libraries' own loading bars ("Loading pipeline components", "Loading weights") would
    bury the stage bars; their warnings still go to the log."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def execute(r: ResolvedRun) -> Path:
    """Run (or resume) every stage; returns the run folder."""
    _quiet_libraries()
    handler = _setup_log(r.run_dir)
    try:
        return _execute(r)
    except KeyboardInterrupt:
        log.warning("interrupted: %s", _kept(r))
        raise
    finally:
        logging.getLogger("t2ibench").removeHandler(handler)
        handler.close()


def _kept(r: ResolvedRun) -> str:
    """One line for Ctrl-C: what is on disk and how to go on."""
    run_dir = r.run_dir
    ckpts = [p for p in (run_dir / "checkpoints").glob("*-e*") if p.suffix in ("", ".safetensors")]
    manifests = list((run_dir / "images").glob("*/manifest.jsonl"))
    images = 0
    for m in manifests:
        with contextlib.suppress(OSError):
            images += sum(1 for line in m.read_text(encoding="utf-8").splitlines() if line.strip())
    parts = list((run_dir / "results" / "parts").glob("*/results.parquet"))
    return (
        f"kept {len(ckpts)} checkpoint(s), {images} image(s) of {len(manifests)} checkpoint(s) "
        f"and {len(parts)} evaluated checkpoint(s) in {run_dir} (only work in flight is lost); "
        "rerun the same command to resume"
    )


def _images_done(r: ResolvedRun, jobs: Sequence[Any], folder: Path, checkpoint: str) -> bool:
    """Whether ``folder`` holds every job's image, each hashing to its manifest's sha256."""
    from t2ibench.pipeline.generate import pending_jobs
    from t2ibench.pipeline.manifest import MANIFEST_NAME

    if not (folder / MANIFEST_NAME).is_file():
        return False
    from t2ibench.pipeline.generate import job_file
    from t2ibench.pipeline.manifest import read_manifest

    todo, _ = pending_jobs(jobs, folder, checkpoint=checkpoint, settings=r.generation)
    made = {rec.file for rec in read_manifest(folder / MANIFEST_NAME)}
    lost = [j for j in todo if job_file(j) in made]  # recorded once: its file went or changed
    if lost:
        log.warning(
            "%s: %d image(s) missing or changed since generation (first: %s); making them again",
            folder,
            len(lost),
            f"{lost[0].leaf}/{lost[0].prompt_type} #{lost[0].index}",
        )
    if len(todo) > len(lost):
        log.info("%s: %d image(s) not made yet; making them", folder, len(todo) - len(lost))
    return not todo


def _analysis_inputs(results_dir: Path) -> str:
    """Digest of what the report depends on: the results rows and the analysis code's version."""
    import pandas as pd

    import t2ibench
    from t2ibench.results import read_results

    df = read_results(results_dir)
    h = hashlib.sha256(f"{t2ibench.__version__}|{list(df.columns)}".encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _training_dtype(r: ResolvedRun) -> Any:
    """The base dtype the trainer would load with (its mixed precision on CUDA, else float32)."""
    import torch

    if str(r.options.device).startswith("cuda"):
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}
        return amp.get(r.trainer_config.mixed_precision, torch.float32)
    return torch.float32


def _execute(r: ResolvedRun) -> Path:
    from t2ibench.adapters import train_run
    from t2ibench.encoders import FeatureCache
    from t2ibench.models import load_base
    from t2ibench.pipeline.evaluate import evaluate_images
    from t2ibench.pipeline.generate import checkpoint_name, checkpoint_on_base, generate_images
    from t2ibench.pipeline.manifest import MANIFEST_NAME, manifest_digest, read_manifest
    from t2ibench.pipeline.peak_memory import PeakMemory
    from t2ibench.prompts import jobs_for
    from t2ibench.results import append_results, read_results, write_results

    run_dir = r.run_dir
    state = RunState(run_dir / "state.json")
    record_path = run_dir / "run.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if record.get("run_hash") not in (None, r.run_hash):
        # A fixed --name (or a sweep's config name) reused with a changed config: never mix.
        raise T2IBenchError(
            f"{record_path}: this run folder holds a run with a different config "
            f"(hash {record['run_hash'][:10]} ≠ {r.run_hash[:10]}); use another --name/--out"
        )
    timings: dict[str, float] = record.get("timings", {})
    record.update(
        {
            "name": run_dir.name,
            "run_hash": r.run_hash,
            "profile": r.profile,
            "trainer": r.trainer.name,
            "config": r.config.model_dump(mode="json"),
            "resolved": r.identity(),
            "dataset": {"root": str(r.dataset.root), "sha256": r.dataset.sha256},
            "base": {"spec": r.base, **r.base_fingerprint},
            "seeds": {
                "training": r.trainer_config.seed,
                "generation": "1000 + k per (leaf, prompt type)",
            },
            "versions": package_versions(),
            "git_commit": _git_commit(),
            "device": r.options.device,
            "metric_profile": r.metric_profile,
            **r.record_extra,
        }
    )
    atomic_write(record_path, json.dumps(record, indent=2, default=str))
    log.info("run %s (profile %s) in %s", run_dir.name, r.profile, run_dir)

    def timed(stage: str, fn):
        t0 = time.perf_counter()
        out = fn()
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - t0, 3)
        record["timings"] = timings
        atomic_write(record_path, json.dumps(record, indent=2, default=str))
        return out

    # -- train ---------------------------------------------------------------------------------
    ckpt_dir = run_dir / "checkpoints"

    def do_train():
        pipe = None
        if r.options.allow_pickle:
            # The trainer loads the base without the flag: a pickle .ckpt must be loaded here.
            pipe = load_base(
                r.base, device=r.options.device, dtype=_training_dtype(r), allow_pickle=True
            )
        # Cost: each invocation that trains is one segment (time, peak memory); a resumed run
        # adds a segment, an interrupted one is recorded with what it measured.
        result = None
        peak = PeakMemory(r.options.device).start()
        try:
            result = train_run(
                r.trainer.name,
                r.dataset,
                r.base,
                ckpt_dir,
                r.trainer_config,
                device=r.options.device,
                progress=r.options.progress,
                pipe=pipe,
            )
        finally:
            peak.stop()
            if result is None or result.epochs_trained:
                segment = {**peak.record(), "finished": result is not None}
                if result is not None:
                    segment.update(epochs_trained=result.epochs_trained, steps=result.steps)
                record.setdefault("cost", {}).setdefault("train_segments", []).append(segment)
                atomic_write(record_path, json.dumps(record, indent=2, default=str))
        return result.checkpoints

    if r.given_checkpoints is not None:  # evaluate-checkpoints: nothing to train
        checkpoints = list(r.given_checkpoints)
    else:
        checkpoints = [Path(p) for p in timed("train", do_train)]
        state.mark("train", checkpoints=[p.name for p in checkpoints])
    log.info("checkpoints: %s", ", ".join(p.name for p in checkpoints))

    # -- generate --------------------------------------------------------------------------------
    jobs = jobs_for(r.dataset, r.prompt_types, r.images_per_leaf)
    images = run_dir / "images"
    base_images = shared_base_images(r, jobs)
    record["base_images"] = str(base_images)

    names = {ck: checkpoint_name(ck) for ck in checkpoints}
    load_kwargs = {"device": r.options.device, "allow_pickle": r.options.allow_pickle}

    def do_generate():
        # Finished folders are checked again (every image present, every hash as recorded): a
        # deleted or replaced image is made again instead of failing or being scored.
        base_todo = not _images_done(r, jobs, base_images, "base")
        todo = [c for c in checkpoints if not _images_done(r, jobs, images / names[c], names[c])]
        if not base_todo and not todo:
            return
        if r.config.generate.workers > 1:  # the same images and manifests, made by Ray workers
            from t2ibench.pipeline.shard import Target, generate_sharded

            targets = [Target("base", "base", base_images)] if base_todo else []
            targets += [Target(ck, names[ck], images / names[ck]) for ck in todo]
            workers = r.config.generate.workers
            generate_sharded(
                r.base,
                targets,
                jobs,
                r.generation,
                workers=workers,
                load_kwargs=load_kwargs,
                progress=r.options.progress,
            )
            for t in targets:
                state.add("generated", t.name)
            return
        pipe = load_base(r.base, **load_kwargs)
        if pipe.unet.training:
            pipe.unet.eval()
        if base_todo:
            generate_images(
                pipe,
                jobs,
                base_images,
                checkpoint="base",
                settings=r.generation,
                progress=r.options.progress,
            )
            state.add("generated", "base")
        for ck in todo:
            # an adapter file goes on the base; a full checkpoint (a diffusers folder) is loaded
            with checkpoint_on_base(pipe, ck, **load_kwargs) as tuned:
                generate_images(
                    tuned,
                    jobs,
                    images / names[ck],
                    checkpoint=names[ck],
                    settings=r.generation,
                    progress=r.options.progress,
                )
            state.add("generated", names[ck])

    timed("generate", do_generate)

    # -- evaluate --------------------------------------------------------------------------------
    results_dir = run_dir / "results"
    parts = results_dir / "parts"
    info = (
        {names[ck]: cols for ck, cols in r.given_checkpoints.items()}
        if r.given_checkpoints is not None
        else checkpoint_info(r, checkpoints)
    )

    def inputs_of(ck: Path) -> dict[str, str]:
        return {
            "images": manifest_digest(read_manifest(images / names[ck] / MANIFEST_NAME)),
            "base_images": manifest_digest(read_manifest(base_images / MANIFEST_NAME)),
        }

    def evaluated(ck: Path) -> bool:
        # A part counts only for the images it scored: regenerated images that differ (another
        # device, a replaced file) are scored again.
        sidecar = parts / names[ck] / PART_INPUTS
        if not (parts / names[ck] / "results.parquet").is_file() or not sidecar.is_file():
            return False
        try:
            return json.loads(sidecar.read_text(encoding="utf-8")) == inputs_of(ck)
        except json.JSONDecodeError:
            return False

    from t2ibench.metric_profiles import get_metric_profile
    from t2ibench.metric_profiles.compile import profile_plans

    metric_profile = get_metric_profile(r.metric_profile)

    def make_encoders():
        if metric_profile.defaults:
            return create_encoders(r.encoders, r.resize, r.options.device)
        from t2ibench.metric_profiles.compile import run_encoders

        return run_encoders(metric_profile, r.encoders, r.options.device)

    def plans_for(encoders):  # the profile's measures, bound to these encoders
        return profile_plans(
            metric_profile, None if metric_profile.defaults else encoders, r.metrics
        )

    def do_evaluate():
        todo = [c for c in checkpoints if not evaluated(c)]
        if todo:
            encoders = make_encoders()
            cache = FeatureCache(Path(r.options.out) / ".feature-cache")

            if r.config.evaluate.workers > 1:  # the same feature rows, encoded by Ray workers
                from functools import partial

                from t2ibench.pipeline.shard import encode_sharded

                def record():  # the evaluations below, then the base model's (the anchors')
                    folders = [images / names[ck] for ck in todo]
                    if not (parts / "base" / "results.parquet").is_file():
                        folders.append(base_images)
                    for folder in folders:
                        evaluate_images(
                            folder,
                            r.dataset,
                            encoders,
                            metrics=r.metrics,
                            base_images_dir=base_images,
                            cache=cache,
                            progress=False,
                        )

                encode_sharded(
                    record,
                    encoders,
                    make_encoders=partial(create_encoders, r.encoders, r.resize),
                    device=r.options.device,
                    workers=r.config.evaluate.workers,
                    progress=r.options.progress,
                )
            for ck in todo:
                df = evaluate_images(
                    images / names[ck],
                    r.dataset,
                    encoders,
                    metrics=r.metrics,
                    base_images_dir=base_images,
                    cache=cache,
                    checkpoint_info=info,
                    plans=plans_for(encoders),
                    progress=r.options.progress,
                )
                write_results(df, parts / names[ck], formats=("parquet",))
                atomic_write(parts / names[ck] / PART_INPUTS, json.dumps(inputs_of(ck)))
                state.add("evaluated", names[ck])
        for ck in checkpoints:
            append_results(read_results(parts / names[ck]), results_dir)
        from t2ibench.pipeline.anchors import evaluate_anchors

        # The report's anchors: the base model scored as checkpoint "base", the real-image
        # ceiling and copy detection (each skipped when already written).
        evaluate_anchors(
            results_dir,
            r.dataset,
            make_encoders,
            r.metrics,
            base_images,
            {names[ck]: images / names[ck] for ck in checkpoints},
            FeatureCache(Path(r.options.out) / ".feature-cache"),
            progress=r.options.progress,
            plans=plans_for,
        )

    timed("evaluate", do_evaluate)

    # -- analyze ---------------------------------------------------------------------------------
    if r.options.analyze:
        from t2ibench.analysis import analyze

        inputs = _analysis_inputs(results_dir)
        done = state.data["done"].get("analyze", {})
        if done.get("inputs") == inputs and (run_dir / "report" / "report.html").is_file():
            log.info("analysis: same results and settings as before, report kept")
        else:
            timed("analyze", lambda: analyze(results_dir, run_dir / "report"))
            state.mark("analyze", inputs=inputs)
    log.info("done: %s", run_dir)
    return run_dir


def run(options: RunOptions) -> Path:
    """Resolve and execute; returns the run folder."""
    return execute(resolve(options))
