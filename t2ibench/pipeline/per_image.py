"""Per-image metric values: one row per (image, metric, encoder), for agreement with human ratings.

The results table holds one value per (checkpoint, leaf, prompt type, metric, encoder) group. Human
ratings are per image, so :func:`per_image_scores` evaluates each image as a group of its own: it
runs the evaluate stage unchanged on the same records, each tagged with a checkpoint name unique to
the image, and maps the rows back. The metrics, encoders, preprocessing and feature cache are the
evaluate stage's own (dataset and base features are encoded once, as in a normal evaluation), so a
per-image value is exactly what the stage computes for a one-image group: a similarity is the
image's mean over the references, a judge's score the image's score. Set-level metrics (Vendi,
FID, KID) have no per-image value: their rows are dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from t2ibench.errors import T2IBenchError
from t2ibench.pipeline.manifest import MANIFEST_NAME, ManifestRecord, read_manifest

_TAG = "#image-"


class _Quiet(logging.Filter):
    """One-image groups make set metrics warn once per image: keep the log readable."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "recorded as missing" not in record.getMessage()


def per_image_scores(
    images_dir: str | Path,
    dataset: Any,
    encoders: Sequence[Any],
    *,
    metrics: Sequence[str] | None = None,
    records: Sequence[ManifestRecord] | None = None,
    cache: Any | None = None,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    plans: Sequence[Any] | None = None,
    base_images_dir: str | Path | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Rows ``image, system, leaf, prompt_type, prompt, seed, index, metric, encoder, value``
    (+ the stage's other columns) for every image of ``images_dir`` (see the module doc).
    ``system`` is the image's checkpoint; ``image`` its file relative to ``images_dir``."""
    from t2ibench.pipeline.evaluate import evaluate_images

    images_dir = Path(images_dir)
    if records is None:
        records = read_manifest(images_dir / MANIFEST_NAME)
    records = list(records)
    if not records:
        raise T2IBenchError(f"{images_dir}: no images to score")
    tagged = [replace(r, checkpoint=f"{r.checkpoint}{_TAG}{i}") for i, r in enumerate(records)]
    quiet = _Quiet()
    log = logging.getLogger("t2ibench.pipeline.evaluate")
    log.addFilter(quiet)
    try:
        df = evaluate_images(
            images_dir,
            dataset,
            encoders,
            metrics=metrics,
            base_images_dir=base_images_dir,
            cache=cache,
            metric_options=metric_options,
            plans=plans,
            progress=progress,
            records=tagged,
        )
    finally:
        log.removeFilter(quiet)
    if df.empty:
        return df
    from t2ibench.metrics import get_metric

    per_image = {m: get_metric(m).per_image for m in df["metric"].unique()}
    df = df[df["metric"].map(per_image)].dropna(subset=["value"]).copy()
    number = df["checkpoint"].str.rsplit(_TAG, n=1).str[1].astype(int)
    source = [records[i] for i in number]
    df["checkpoint"] = [r.checkpoint for r in source]
    df["config"] = [c.split(_TAG)[0] for c in df["config"]]
    df.insert(0, "image", [r.file for r in source])
    df.insert(1, "system", [r.checkpoint for r in source])
    df["prompt"] = [r.prompt for r in source]
    df["seed"] = [r.seed for r in source]
    df["index"] = [r.index for r in source]
    return df.drop(columns=["n_images"], errors="ignore").reset_index(drop=True)
