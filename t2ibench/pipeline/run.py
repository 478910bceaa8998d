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
    adaptive.json       --budget adaptive: the rounds' decisions (results/budget.csv: images used
                        and the rule that stopped each checkpoint × prompt type)
    report/             the analysis report (report.html, summary.md, scores.csv, ...)

The run name is ``<trainer>-<hash>`` where the hash covers everything that changes results (the
resolved trainer config, dataset hash, base model, generation settings, encoders, prompt types,
images per leaf, metrics): changing any of it starts a new run instead of mixing results.

:func:`resolve` checks every input before any work; :func:`execute` runs the stages
(:mod:`t2ibench.pipeline.stage`), each skipped when done: the checkpoint source
(:mod:`~t2ibench.pipeline.train_stage`, or the given files of ``evaluate-checkpoints``),
:mod:`~t2ibench.pipeline.generate_stage`, :mod:`~t2ibench.pipeline.evaluate_stage` (with
``--budget adaptive`` both in rounds: :mod:`~t2ibench.pipeline.adaptive`) and
:mod:`t2ibench.analysis.stage`. The record (``run.json``, ``state.json``, ``run.log``) is
:mod:`t2ibench.pipeline.record`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2ibench.errors import ConfigError
from t2ibench.pipeline.devices import check_device
from t2ibench.pipeline.generate import shared_base_images
from t2ibench.pipeline.load_encoders import check_encoders, create_encoders, parse_encoder
from t2ibench.pipeline.record import (
    RunRecord,
    RunState,
    git_commit,
    kept,
    package_versions,
    quiet_libraries,
    setup_log,
)
from t2ibench.pipeline.train_stage import TrainStage

log = logging.getLogger("t2ibench.run")


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
    #: ``--budget adaptive``: stop after this many rounds (a sweep's racing decides in between)
    round_limit: int | None = None


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
    #: the metric definitions' name (results column ``metric_profile``) and the loaded
    #: definitions themselves (a profile given as a TOML file is not looked up again by name)
    metric_profile: str = "lycoris2024"
    loaded_metric_profile: Any = None
    #: the first stage, where the checkpoints come from: training, or for
    #: ``t2ibench evaluate-checkpoints`` the given files (pipeline/checkpoints.py)
    source: Any = field(default_factory=TrainStage)

    def identity(self) -> dict[str, Any]:
        return _identity(self)

    @property
    def stages(self) -> list[Any]:
        """The stages in order: the checkpoint source, generate, evaluate, then analyse."""
        from t2ibench.analysis.stage import AnalyseStage
        from t2ibench.pipeline.evaluate_stage import EvaluateStage
        from t2ibench.pipeline.generate_stage import GenerateStage

        analyse = [AnalyseStage()] if self.options.analyze else []
        if self.config.budget.mode == "adaptive":
            from t2ibench.pipeline.adaptive import AdaptiveStage

            return [self.source, AdaptiveStage(), *analyse]
        return [self.source, GenerateStage(), EvaluateStage(), *analyse]


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
    from t2ibench.data import load_dataset
    from t2ibench.models import base_fingerprint
    from t2ibench.profiles import resolve_named

    check_device(options.device)
    _check_out(Path(options.out))
    profile, layers, file_trainer = _layers(options)
    cfg = layers.run_config()
    spec, trainer_cfg = _trainer(options, layers, cfg.trainer_name, file_trainer)
    if cfg.dataset is None:
        raise ConfigError(f"--dataset: required (profile {profile.name} names none)")
    dataset = load_dataset(resolve_named("dataset", cfg.dataset))
    base = base_spec(cfg)
    fingerprint = base_fingerprint(base)  # a missing base model fails here, before training
    metric_profile = _metric_profile(options, dataset)
    metrics = _metrics(cfg, metric_profile)
    generation, prompt_types = _generation(cfg, trainer_cfg, dataset, base)
    check_encoders(cfg.evaluate.encoders)
    resolved_cfg = cfg.model_copy(
        update={
            "trainer": trainer_cfg.to_dict(),
            "generate": cfg.generate.model_copy(
                update={"resolution": generation.height, "prompt_types": prompt_types}
            ),
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
        encoders=list(cfg.evaluate.encoders),
        resize=list(cfg.evaluate.resize) if cfg.evaluate.resize else None,
        metrics=metrics,
        prompt_types=prompt_types,
        images_per_leaf=cfg.generate.images_per_leaf,
        generation=generation,
        run_hash="",
        run_dir=Path(),
        metric_profile=metric_profile.name,
        loaded_metric_profile=metric_profile,
    )
    from t2ibench.pipeline.adaptive import check_budget

    check_budget(resolved)
    identity = json.dumps(_identity(resolved), sort_keys=True)
    resolved.run_hash = hashlib.sha256(identity.encode()).hexdigest()
    # --name is a leaf under --out, never a path (``../x`` or ``/abs`` become a slug plus a hash)
    from t2ibench.pipeline.generate import folder_name

    name = folder_name(options.name) if options.name else f"{spec.name}-{resolved.run_hash[:10]}"
    resolved.run_dir = Path(options.out) / name
    return resolved


def base_spec(cfg: Any) -> str:
    """The base model's path (or hub id, ``tiny``, a named base's folder). ``--base ARCH
    --base-path P``: P, checked now to be that architecture (one line naming both otherwise);
    ``--base-path P`` alone: P, whatever base the profile names."""
    from t2ibench.architectures import is_architecture
    from t2ibench.models.loading import base_architecture, resolve_spec
    from t2ibench.profiles import resolve_named

    if is_architecture(cfg.base):
        if not cfg.base_path:
            raise ConfigError(
                f"--base {cfg.base}: names a base architecture; pass its files with --base-path "
                "(a local diffusers folder or a single-file checkpoint)"
            )
        base_architecture(*resolve_spec(cfg.base_path), expected=cfg.base)
        return str(cfg.base_path)
    if cfg.base_path:
        return str(cfg.base_path)
    return str(resolve_named("base", cfg.base))


def _base_defaults(base: Any) -> dict[str, Any] | None:
    """The generation defaults of a base architecture named by ``--base`` (None otherwise)."""
    from t2ibench.architectures import get_architecture, is_architecture

    if not is_architecture(base):
        return None
    g = get_architecture(base).generation
    return {
        "generate": {
            "steps": g.steps,
            "guidance_scale": g.guidance_scale,
            "resolution": g.resolution,
            "scheduler": g.scheduler,
        }
    }


def _layers(options: RunOptions) -> tuple[Any, Any, Any]:
    """(profile, the config layers in order: profile, trainer file, overrides; the trainer name
    the trainer file gives)."""
    from t2ibench.adapters.config import read_trainer_toml
    from t2ibench.runconfig import Layers

    user = Layers()
    for where, table in options.layers:
        user.add_table(where, table)
    profile = choose_profile(options, user.values.get("base"), user.values.get("dataset"))
    layers = Layers().add_table(f"profile {profile.name}", profile.values)
    defaults = _base_defaults(user.values.get("base"))
    if defaults is not None:  # the architecture's sampling, under the user's own settings
        layers.add_table(f"base {user.values['base']}", defaults)
    file_trainer = None
    if options.trainer_file:
        data = read_trainer_toml(Path(options.trainer_file))
        file_trainer = data.get("trainer")
        layers.add_table(options.trainer_file, {"trainer": data})
    for where, table in options.layers:
        layers.add_table(where, table)
    return profile, layers, file_trainer


def _trainer(options: RunOptions, layers: Any, name: str, file_trainer: Any) -> tuple[Any, Any]:
    """The trainer spec and its config, checked by the trainer against its own keys."""
    from t2ibench.adapters import get_trainer

    spec = get_trainer(name)  # unknown trainer → one line with the known names
    if file_trainer not in (None, spec.name):
        raise ConfigError(
            f"{options.trainer_file}: field 'trainer' is {file_trainer!r} but the trainer asked "
            f"for is {spec.name!r}"
        )
    return spec, spec.config(layers.trainer_sources(), prefix="trainer.")


def _metrics(cfg: Any, metric_profile: Any) -> list[str]:
    """The metrics computed: the profile's measures', else the config's (default: all)."""
    from t2ibench.metrics import get_metric, list_metrics

    if metric_profile.defaults:
        metrics = list(cfg.evaluate.metrics or list_metrics())
    else:  # the profile's measures say what is computed
        metrics = metric_profile.metrics()
    for m in metrics:
        get_metric(m)
    return metrics


def _flow_scheduler(base: str) -> str | None:
    """The sampler of a flow-matching base folder (a named base like ``toy-flux``, which brings
    no architecture defaults): the protocol's default DDIM cannot sample a rectified flow."""
    from t2ibench.models.loading import base_architecture, resolve_spec

    kind, where = resolve_spec(base)
    if kind not in ("tiny", "folder"):
        return None
    arch = base_architecture(kind, where)
    return arch.generation.scheduler if arch.objective.kind == "flow_matching" else None


def _generation(cfg: Any, trainer_cfg: Any, dataset: Any, base: str) -> tuple[Any, list[str]]:
    """The sampling settings and prompt types; every generation job and its file name is built
    now, so what generation would refuse fails here, before training, not after it."""
    from t2ibench.pipeline.generate import SPEED_DEFAULTS, GenerationSettings, job_file
    from t2ibench.prompts import get_prompt_type, jobs_for, list_prompt_types

    gen = cfg.generate
    prompt_types = list(gen.prompt_types or list_prompt_types())
    for p in prompt_types:
        get_prompt_type(p)
    for job in jobs_for(dataset, prompt_types, gen.images_per_leaf):
        job_file(job)
    side = gen.resolution or trainer_cfg.resolution
    scheduler = gen.scheduler or _flow_scheduler(base)
    generation = GenerationSettings(
        steps=gen.steps,
        guidance_scale=gen.guidance_scale,
        height=side,
        width=side,
        negative_prompt=gen.negative_prompt,
        batch_size=gen.batch_size,
        **{name: getattr(gen, name) for name in SPEED_DEFAULTS},  # dtype, compile, ...
        **({"scheduler": scheduler} if scheduler else {}),
    )
    return generation, prompt_types


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
    if r.config.budget.mode != "full":  # full runs keep the names they had before budgets
        extra["budget"] = r.config.budget.model_dump(mode="json")
    return {
        **extra,
        "trainer_config": r.source.identity(r),
        "dataset_sha256": r.dataset.sha256,
        "base": r.base_fingerprint,
        "generation": r.generation.key(),
        "encoders": r.encoders,
        "resize": r.resize,
        "metrics": r.metrics,
        "prompt_types": r.prompt_types,
        "images_per_leaf": r.images_per_leaf,
    }


def _check_out(out: Path) -> None:
    """``--out`` must be a folder we can write to (checked without creating anything)."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {existing} is not writable")


# --------------------------------------------------------------------------------------------------
# Execution: the stages in order, each skipped when done
# --------------------------------------------------------------------------------------------------


def execute(r: ResolvedRun) -> Path:
    """Run (or resume) every stage; returns the run folder."""
    quiet_libraries()
    handler = setup_log(r.run_dir)
    try:
        return _execute(r)
    except KeyboardInterrupt:
        log.warning("interrupted: %s", kept(r.run_dir))
        raise
    finally:
        logging.getLogger("t2ibench").removeHandler(handler)
        handler.close()


def _execute(r: ResolvedRun) -> Path:
    from t2ibench.pipeline.shard import worker_pool
    from t2ibench.pipeline.stage import Run, run_stages

    record = RunRecord(r.run_dir / "run.json", r.run_hash)
    record.update(_record_fields(r))
    log.info("run %s (profile %s) in %s", r.run_dir.name, r.profile, r.run_dir)
    run = Run(r, RunState(r.run_dir / "state.json"), record)
    record.update({"base_images": str(run.base_images)})
    with worker_pool():  # sharded stages share their Ray workers (generation, then encoding)
        run_stages(run, r.stages)
    log.info("done: %s", r.run_dir)
    return r.run_dir


def _record_fields(r: ResolvedRun) -> dict[str, Any]:
    """What ``run.json`` says about the run (timings and cost are added as the stages run)."""
    return {
        "name": r.run_dir.name,
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
        "git_commit": git_commit(),
        "device": r.options.device,
        # how the images were sampled (dtype, channels-last, compile, fused adapter, attention)
        "generation_options": r.generation.speed_options(),
        "metric_profile": r.metric_profile,
        **r.source.record(),
    }


def run(options: RunOptions) -> Path:
    """Resolve and execute; returns the run folder."""
    return execute(resolve(options))


# Older import paths of what now lives beside its stage (plan.py, the CLI, benchmarks, tests).
__all__ = [
    "ResolvedRun",
    "RunOptions",
    "RunState",
    "check_device",
    "choose_profile",
    "create_encoders",
    "execute",
    "parse_encoder",
    "resolve",
    "run",
    "set_layers",
    "shared_base_images",
]
