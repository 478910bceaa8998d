"""The evaluate stage: generated images (+ manifest) → metric values → results rows.

For every (checkpoint, leaf, prompt type) group of a manifest and every registered metric that
applies, each metric is computed on every selected encoder that can feed it:

- ``gen``/``ref`` and ``feats`` metrics (image similarity, centroid distance, Fréchet, Vendi): every
  encoder of kind ``image`` or ``image-text``; references are the leaf's dataset images;
- ``image_feats``/``text_feats`` (text alignment): encoders of kind ``image-text``; the text is the
  job's prompt after :func:`t2ibench.prompts.clean_prompt`;
- ``grams_a``/``grams_b`` (style loss): encoders of kind ``gram``; pairs are the base model's image
  and the checkpoint's image of the same leaf, prompt type, index and seed;
- ``scores`` (IQA): the encoder the metric names, when selected.

Every feature goes through the content-addressed cache, so the dataset's reference images and the
base model's images are encoded once per encoder for the whole run — except VGG-19 Gram matrices
(2.4 MB per image), which are recomputed rather than stored.

It also evaluates images made by any other tool: give it a folder laid out as the generate stage
writes it (``<leaf>/<prompt_type>/<file>.png`` + ``manifest.jsonl``, README "Images folder layout").
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from t2ibench.data import Dataset
from t2ibench.encoders import Encoder, FeatureCache, encode_images_cached, encode_texts_cached
from t2ibench.errors import T2IBenchError
from t2ibench.metrics import MetricSpec, get_metric, list_metrics
from t2ibench.pipeline.manifest import MANIFEST_NAME, ManifestRecord, read_manifest
from t2ibench.prompts import clean_prompt

log = logging.getLogger(__name__)

_IMAGE_KINDS = ("image", "image-text")


def encoder_feeds(spec: MetricSpec, encoder: Encoder) -> bool:
    """Whether ``encoder``'s features are the input ``spec`` needs."""
    inputs = set(spec.inputs)
    if inputs <= {"gen", "ref", "feats"}:
        return encoder.kind in _IMAGE_KINDS
    if inputs == {"image_feats", "text_feats"}:
        return encoder.kind == "image-text"
    if inputs == {"grams_a", "grams_b"}:
        return encoder.kind == "gram"
    if inputs == {"scores"}:
        return encoder.kind == "score" and encoder.name == spec.encoder
    return False


def _paired_key(r: ManifestRecord) -> tuple:
    return (r.leaf, r.prompt_type, r.index, r.seed)


def _value(spec: MetricSpec, compute: Callable[[], float]) -> float:
    try:
        value = float(compute())
    except ValueError as exc:  # e.g. Fréchet distance of a single image
        log.warning("metric %s: %s; recorded as missing", spec.name, exc)
        return math.nan
    return value


def evaluate_images(
    images_dir: str | Path,
    dataset: Dataset,
    encoders: Sequence[Encoder],
    *,
    metrics: Sequence[str] | None = None,
    base_images_dir: str | Path | None = None,
    cache: FeatureCache | None = None,
    checkpoint_info: Mapping[str, Mapping[str, Any]] | None = None,
    text_convention: str = "cosine",
    progress: bool = True,
) -> pd.DataFrame:
    """Results rows (the schema of :mod:`t2ibench.results`) for the images in ``images_dir``.

    ``checkpoint_info`` maps a checkpoint name to its columns (``config``, ``seed``, ``epoch`` and
    hyperparameters); checkpoints without an entry get ``config`` = their name.
    """
    images_dir = Path(images_dir)
    records = read_manifest(images_dir / MANIFEST_NAME)
    if not records:
        raise T2IBenchError(f"{images_dir / MANIFEST_NAME}: no images to evaluate")
    specs = [get_metric(m) for m in (metrics or list_metrics())]
    base_records: dict[tuple, Path] = {}
    if base_images_dir is not None:
        base_dir = Path(base_images_dir)
        for r in read_manifest(base_dir / MANIFEST_NAME):
            base_records[_paired_key(r)] = r.path(base_dir)

    groups: dict[tuple[str, str, str], list[ManifestRecord]] = defaultdict(list)
    for r in records:
        if r.leaf not in dataset.leaves:
            raise T2IBenchError(
                f"{images_dir / MANIFEST_NAME}: leaf {r.leaf!r} (file {r.file}) is not in the "
                f"dataset {dataset.root}"
            )
        groups[(r.checkpoint, r.leaf, r.prompt_type)].append(r)

    ref_cache: dict[tuple[str, str], Any] = {}

    def reference(encoder: Encoder, leaf: str):
        key = (encoder.name + encoder.preprocess_id, leaf)
        if key not in ref_cache:
            paths = [im.path for im in dataset.leaves[leaf].images]
            ref_cache[key] = encode_images_cached(encoder, paths, cache)
        return ref_cache[key]

    rows: list[dict[str, Any]] = []
    info = checkpoint_info or {}
    from tqdm.auto import tqdm

    bar = tqdm(sorted(groups.items()), desc="evaluate", unit="group", disable=not progress)
    for (checkpoint, leaf_key, prompt_type), group in bar:
        group.sort(key=lambda r: (r.index if r.index is not None else -1, r.seed, r.file))
        leaf = dataset.leaves[leaf_key]
        paths = [r.path(images_dir) for r in group]
        applicable = [s for s in specs if s.applies_to(prompt_type)]
        for encoder in encoders:
            wanted = [s for s in applicable if encoder_feeds(s, encoder)]
            if not wanted:
                continue
            # VGG-19 Gram matrices are 2.4 MB per image (9 GB per checkpoint at the paper's
            # scale): recomputing them is cheaper than keeping them on disk.
            enc_cache = None if encoder.kind == "gram" else cache
            gen = encode_images_cached(encoder, paths, enc_cache)
            for spec in wanted:
                value = _compute(
                    spec,
                    encoder,
                    gen,
                    group,
                    leaf,
                    prompt_type,
                    reference,
                    base_records,
                    enc_cache,
                    text_convention,
                )
                if value is None:
                    continue
                rows.append(
                    _row(checkpoint, leaf, prompt_type, spec.name, encoder, value, len(group), info)
                )
    return pd.DataFrame(rows)


def _compute(
    spec, encoder, gen, group, leaf, prompt_type, reference, base_records, cache, convention
) -> float | None:
    inputs = set(spec.inputs)
    if inputs == {"gen", "ref"}:
        ref = reference(encoder, leaf.key)
        return _value(spec, lambda: spec.function(gen=gen, ref=ref))
    if inputs == {"feats"}:
        if spec.group_by.get(prompt_type) == "prompt":
            by_prompt: dict[str, list[int]] = defaultdict(list)
            for i, r in enumerate(group):
                by_prompt[r.prompt].append(i)
            values = [spec.function(feats=gen[idx]) for idx in by_prompt.values()]
            return float(sum(values) / len(values))
        return _value(spec, lambda: spec.function(feats=gen))
    if inputs == {"image_feats", "text_feats"}:
        texts = [clean_prompt(r.prompt, leaf) for r in group]
        text = encode_texts_cached(encoder, texts, cache)
        if spec.name == "text_alignment":
            return _value(spec, lambda: spec.function(gen, text, convention=convention))
        return _value(spec, lambda: spec.function(image_feats=gen, text_feats=text))
    if inputs == {"grams_a", "grams_b"}:
        missing = [r.file for r in group if _paired_key(r) not in base_records]
        if missing:
            if base_records:
                raise T2IBenchError(
                    f"style loss: no base-model image paired by seed with {missing[0]} "
                    f"(and {len(missing) - 1} more); generate the base images for the same jobs"
                )
            log.warning("no base-model images: %s skipped for %s", spec.name, leaf.key)
            return None
        base = encode_images_cached(encoder, [base_records[_paired_key(r)] for r in group], cache)
        return _value(spec, lambda: spec.function(grams_a=base, grams_b=gen))
    if inputs == {"scores"}:
        return _value(spec, lambda: spec.function(scores=gen))
    raise T2IBenchError(f"metric {spec.name}: unsupported inputs {spec.inputs}")


def _row(checkpoint, leaf, prompt_type, metric, encoder, value, n, info) -> dict[str, Any]:
    extra = dict(info.get(checkpoint, {}))
    row = {
        "checkpoint": checkpoint,
        "config": extra.pop("config", checkpoint),
        "seed": extra.pop("seed", ""),
        "epoch": extra.pop("epoch", None),
        "category": leaf.category,
        "class": leaf.concept.name,
        "leaf": leaf.key,
        "prompt_type": prompt_type,
        "metric": metric,
        "encoder": encoder.name,
        "resize": encoder.preprocess.resize if encoder.kind != "score" else "",
        "value": value,
        "n_images": n,
        "encoder_weights": encoder.weights_id,
    }
    row.update(extra)
    return row
