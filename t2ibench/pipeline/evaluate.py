"""The evaluate stage: a folder of generated images (+ manifest) → results rows, through the
evaluation engine (:mod:`t2ibench.evaluation`).

This module only reads the folder: the manifest (or a peer layout's records), the check that every
image is the one generated, and the base model's images paired by seed. What is computed, from
which inputs and how (all pairs, per prompt, against the base image), is the engine's
(:func:`t2ibench.evaluation.evaluate_records`): each metric on every encoder that can feed it,
inputs from the input-provider table, a metric's error an error naming it.

With ``evaluate.workers`` > 1 the encoding is shared by Ray workers (:mod:`t2ibench.pipeline.shard`):
:func:`recording` lists the encoder batches this evaluation would run, the workers store those
rows in the cache, and the evaluation then reads them — the same values as encoding here.

It also evaluates images made by any other tool: give it a folder laid out as the generate stage
writes it (``<leaf>/<prompt_type>/<file>.png`` + ``manifest.jsonl``, README "Images folder layout").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from t2ibench.data import Dataset
from t2ibench.encoders import Encoder, FeatureCache
from t2ibench.errors import T2IBenchError
from t2ibench.evaluation import MetricPlan, evaluate_records, plan_metrics
from t2ibench.evaluation.recording import EncodeBatch, EncodingRecorder, encode_batch, recording
from t2ibench.metrics import MetricSpec
from t2ibench.metrics.inputs import paired_key
from t2ibench.pipeline.manifest import MANIFEST_NAME, ManifestRecord, changed_files, read_manifest


def _check_files(folder: Path, records: Sequence[ManifestRecord]) -> None:
    """A missing image, or one replaced after generation, is never scored silently."""
    bad = changed_files(folder, records)
    if bad:
        file, why = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise T2IBenchError(
            f"{folder / file}: {why}{more}; rerun `t2ibench run` to make it again, or remove its "
            f"line from {folder / MANIFEST_NAME}"
        )


def check_metrics(metrics: Sequence[str] | None = None) -> list[MetricSpec]:
    """The specs of ``metrics`` (None = every registered metric), after checking that each is
    registered, that a provider supplies each of its inputs and that the prompt types it names
    are registered: call it before any work (``t2ibench run`` can, before training)."""
    return [plan.spec for plan in plan_metrics(metrics)]


def evaluate_images(
    images_dir: str | Path,
    dataset: Dataset,
    encoders: Sequence[Encoder],
    *,
    metrics: Sequence[str] | None = None,
    base_images_dir: str | Path | None = None,
    cache: FeatureCache | None = None,
    checkpoint_info: Mapping[str, Mapping[str, Any]] | None = None,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    records: Sequence[ManifestRecord] | None = None,
    plans: Sequence[MetricPlan] | None = None,
) -> pd.DataFrame:
    """Results rows (the schema of :mod:`t2ibench.results`) for the images in ``images_dir``.

    ``checkpoint_info`` maps a checkpoint name to its columns (``config``, ``seed``, ``epoch`` and
    hyperparameters); checkpoints without an entry get ``config`` = their name. ``metric_options``
    maps a metric name to keyword options that override its spec's ``options`` (e.g.
    ``{"text_alignment": {"convention": "clipscore-hessel"}}``). ``records``: the images (files
    relative to ``images_dir``) when they come from a peer layout (:mod:`t2ibench.layouts`)
    instead of ``images_dir/manifest.jsonl``. ``plans``: what to compute (a metric profile's,
    :func:`t2ibench.metric_profiles.compile.profile_plans`) instead of ``metrics`` with
    ``metric_options``.
    """
    images_dir = Path(images_dir)
    if records is None:
        records = read_manifest(images_dir / MANIFEST_NAME)
    records = list(records)
    if not records:
        raise T2IBenchError(f"{images_dir / MANIFEST_NAME}: no images to evaluate")
    _check_files(images_dir, records)
    if plans is None:
        plans = plan_metrics(metrics, metric_options)
    base_records: dict[tuple, Path] = {}
    if base_images_dir is not None:
        base_dir = Path(base_images_dir)
        base_manifest = read_manifest(base_dir / MANIFEST_NAME)
        _check_files(base_dir, base_manifest)
        for r in base_manifest:
            base_records[paired_key(r)] = r.path(base_dir)
    for r in records:
        if r.leaf not in dataset.leaves:
            raise T2IBenchError(
                f"{images_dir / MANIFEST_NAME}: leaf {r.leaf!r} (file {r.file}) is not in the "
                f"dataset {dataset.root}"
            )
    return evaluate_records(
        images_dir,
        records,
        dataset,
        encoders,
        plans,
        base_images=base_records,
        cache=cache,
        checkpoint_info=checkpoint_info,
        progress=progress,
    )


__all__ = [
    "EncodeBatch",
    "EncodingRecorder",
    "check_metrics",
    "encode_batch",
    "evaluate_images",
    "recording",
]
