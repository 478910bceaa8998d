"""The evaluate stage: generated images (+ manifest) → metric values → results rows.

For every (checkpoint, leaf, prompt type) group of a manifest and every registered metric that
applies, each metric is computed on every selected encoder that can feed it. What feeds a metric is
decided by its declared inputs, through the input-provider table (:mod:`t2ibench.metrics.inputs`);
the built-in providers, registered at the bottom of this file, are:

- ``gen``, ``feats``, ``ref``: features of the generated images / of the leaf's dataset images, from
  every encoder of kind ``image`` or ``image-text``;
- ``image_feats``, ``text_feats``: generated image features and the features of each job's prompt
  after :func:`t2ibench.prompts.clean_prompt`, from encoders of kind ``image-text``;
- ``base``: features of the base model's image paired as ``grams_a`` is (the ``drift`` metric);
- ``grams_a``, ``grams_b``: Gram matrices of the base model's image paired by leaf, prompt type,
  index and seed, and of the checkpoint's image, from encoders of kind ``gram``;
- ``scores``: per-image scores from the (``score``-kind) encoder the metric names.

A metric whose inputs no provider supplies stops the evaluation with an error naming the metric.
Every feature goes through the content-addressed cache, so the dataset's reference images and the
base model's images are encoded once per encoder for the whole run (a sweep's runs share one cache).
VGG-19 Gram matrices (2.4 MB per image) are cached for the base model's images only — shared by
every checkpoint of every run, 3,200 images (7.7 GB) for the paper's sweep — and recomputed for a
checkpoint's own images, which only that checkpoint uses.

With ``evaluate.workers`` > 1 the encoding is shared by Ray workers (:mod:`t2ibench.pipeline.shard`):
:func:`recording` lists the encoder batches this evaluation would run, the workers store those
rows in the cache, and the evaluation then reads them — the same values as encoding here.

It also evaluates images made by any other tool: give it a folder laid out as the generate stage
writes it (``<leaf>/<prompt_type>/<file>.png`` + ``manifest.jsonl``, README "Images folder layout").
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from t2ibench.data import Dataset
from t2ibench.encoders import Encoder, FeatureCache, encode_images_cached, encode_texts_cached
from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.metrics import MetricSpec, get_metric, list_metrics
from t2ibench.metrics.inputs import (
    EvalContext,
    InputProvider,
    MissingInput,
    fed_by,
    paired_key,
    providers_for,
    register_input_provider,
)
from t2ibench.pipeline.manifest import MANIFEST_NAME, ManifestRecord, changed_files, read_manifest
from t2ibench.prompts import clean_prompt

log = logging.getLogger(__name__)


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


def _value(spec: MetricSpec, compute: Callable[[], float]) -> float:
    try:
        value = float(compute())
    except ValueError as exc:  # e.g. Fréchet distance of a single image
        log.warning("metric %s: %s; recorded as missing", spec.name, exc)
        return math.nan
    return value


def check_metrics(metrics: Sequence[str] | None = None) -> list[MetricSpec]:
    """The specs of ``metrics`` (None = every registered metric), after checking that each is
    registered, that a provider supplies each of its inputs and that the prompt types it names
    are registered: call it before any work (``t2ibench run`` can, before training)."""
    specs = [get_metric(m) for m in (metrics or list_metrics())]
    for spec in specs:
        providers_for(spec)
        spec.check_prompt_types()
    return specs


def _metric_options(
    specs: Sequence[MetricSpec], overrides: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, dict[str, Any]]:
    overrides = dict(overrides or {})
    selected = {s.name for s in specs}
    unknown = sorted(set(overrides) - selected)
    if unknown:
        raise ConfigError(f"metric options given for metric(s) {unknown} that are not evaluated")
    return {s.name: {**s.options, **overrides.get(s.name, {})} for s in specs}


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
) -> pd.DataFrame:
    """Results rows (the schema of :mod:`t2ibench.results`) for the images in ``images_dir``.

    ``checkpoint_info`` maps a checkpoint name to its columns (``config``, ``seed``, ``epoch`` and
    hyperparameters); checkpoints without an entry get ``config`` = their name. ``metric_options``
    maps a metric name to keyword options that override its spec's ``options`` (e.g.
    ``{"text_alignment": {"convention": "clipscore-hessel"}}``). ``records``: the images (files
    relative to ``images_dir``) when they come from a peer layout (:mod:`t2ibench.layouts`)
    instead of ``images_dir/manifest.jsonl``.
    """
    images_dir = Path(images_dir)
    if records is None:
        records = read_manifest(images_dir / MANIFEST_NAME)
    records = list(records)
    if not records:
        raise T2IBenchError(f"{images_dir / MANIFEST_NAME}: no images to evaluate")
    _check_files(images_dir, records)
    specs = check_metrics(metrics)
    providers = {s.name: providers_for(s) for s in specs}
    options = _metric_options(specs, metric_options)
    base_records: dict[tuple, Path] = {}
    if base_images_dir is not None:
        base_dir = Path(base_images_dir)
        base_manifest = read_manifest(base_dir / MANIFEST_NAME)
        _check_files(base_dir, base_manifest)
        for r in base_manifest:
            base_records[paired_key(r)] = r.path(base_dir)

    groups: dict[tuple[str, str, str], list[ManifestRecord]] = defaultdict(list)
    for r in records:
        if r.leaf not in dataset.leaves:
            raise T2IBenchError(
                f"{images_dir / MANIFEST_NAME}: leaf {r.leaf!r} (file {r.file}) is not in the "
                f"dataset {dataset.root}"
            )
        groups[(r.checkpoint, r.leaf, r.prompt_type)].append(r)

    rows: list[dict[str, Any]] = []
    info = checkpoint_info or {}
    shared: dict[Any, Any] = {}
    from tqdm.auto import tqdm

    bar = tqdm(sorted(groups.items()), desc="evaluate", unit="group", disable=not progress)
    for (checkpoint, leaf_key, prompt_type), group in bar:
        group.sort(key=lambda r: (r.index if r.index is not None else -1, r.seed, r.file))
        leaf = dataset.leaves[leaf_key]
        applicable = [s for s in specs if s.applies_to(prompt_type)]
        for encoder in (None, *encoders):
            wanted = [s for s in applicable if fed_by(s, providers[s.name], encoder)]
            if not wanted:
                continue
            ctx = EvalContext(
                checkpoint=checkpoint,
                leaf=leaf,
                prompt_type=prompt_type,
                records=group,
                image_paths=[r.path(images_dir) for r in group],
                dataset=dataset,
                encoder=encoder,
                # VGG-19 Gram matrices are 2.4 MB per image (9 GB per checkpoint at the paper's
                # scale): a checkpoint's own are recomputed rather than stored; the base model's,
                # which every checkpoint pairs with, are cached (base_cache).
                cache=None if encoder is not None and encoder.kind == "gram" else cache,
                base_cache=cache,
                base_images=base_records,
                shared=shared,
            )
            for spec in wanted:
                ctx.metric = spec
                value = _compute(spec, providers[spec.name], ctx, options[spec.name])
                if value is not None:
                    row = _row(
                        checkpoint, leaf, prompt_type, spec.name, encoder, value, len(group), info
                    )
                    # the convention a value is in (text_alignment: cosine, clipscore-hessel, …)
                    row["convention"] = str(options[spec.name].get("convention", ""))
                    rows.append(row)
    return pd.DataFrame(rows)


def _take(x: Any, idx: list[int]) -> Any:
    """Rows ``idx`` of a per-image input (a tensor, or one tensor per layer)."""
    if isinstance(x, (list, tuple)):
        return [t[idx] for t in x]
    return x[idx]


def _compute(
    spec: MetricSpec, providers: Mapping[str, InputProvider], ctx: EvalContext, options: dict
) -> float | None:
    try:
        inputs = {name: p.provide(ctx) for name, p in providers.items()}
    except MissingInput as exc:
        if _RECORDER.get() is None:
            log.warning("%s skipped for %s <%s>: %s", spec.name, ctx.leaf.key, ctx.prompt_type, exc)
        return None
    if _RECORDER.get() is not None:
        return None  # recording: the inputs asked for are all that is wanted
    if spec.group_by.get(ctx.prompt_type) == "prompt":
        by_prompt: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(ctx.records):
            by_prompt[r.prompt].append(i)

        def per_prompt_mean() -> float:
            values = [
                spec.function(
                    **{
                        n: _take(v, idx) if providers[n].per_image else v for n, v in inputs.items()
                    },
                    **options,
                )
                for idx in by_prompt.values()
            ]
            return float(sum(values) / len(values))

        return _value(spec, per_prompt_mean)
    return _value(spec, lambda: spec.function(**inputs, **options))


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
        "encoder": encoder.name if encoder is not None else "",
        "resize": encoder.preprocess.resize
        if encoder is not None and encoder.kind != "score"
        else "",
        "value": value,
        "n_images": n,
        "encoder_weights": encoder.weights_id if encoder is not None else "",
    }
    row.update(extra)
    return row


# --- recording the encoder batches, for sharded encoding (t2ibench.pipeline.shard) ----------------


@dataclass(frozen=True)
class EncodeBatch:
    """One encoder batch exactly as the local evaluation would run it: encoder number (in the
    encoder list), the images' (content sha256, path) in batch order, the feature cache's folder."""

    encoder: int
    items: tuple[tuple[str, str], ...]
    cache_root: str


@dataclass
class EncodingRecorder:
    """The encoder batches an evaluation would run, in order. ``encode_images_cached`` encodes the
    images of a call that the cache does not hold, ``encoder.batch_size`` at a time in order of
    first appearance; this repeats that on the content hashes, with the rows of earlier batches
    counting as cached, so each recorded batch is one the local run would encode."""

    encoders: Sequence[Encoder]
    batches: list[EncodeBatch] = field(default_factory=list)
    stored: set[tuple[str, str]] = field(default_factory=set)

    def record(self, encoder: Encoder, paths: Sequence[Path], cache: FeatureCache | None) -> None:
        from t2ibench.fsutil import file_sha256

        if cache is None:
            return  # never cached (a checkpoint's own Gram matrices): the evaluation encodes them
        number = next(i for i, e in enumerate(self.encoders) if e is encoder)
        todo: dict[str, str] = {}
        for path in paths:
            h = file_sha256(path)
            key = (str(cache.root), cache.key(encoder, h))
            if h in todo or key in self.stored:
                continue
            if cache.get(encoder, h) is None:
                todo[h] = str(path)
            self.stored.add(key)
        items = list(todo.items())
        for first in range(0, len(items), encoder.batch_size):
            chunk = tuple(items[first : first + encoder.batch_size])
            self.batches.append(EncodeBatch(number, chunk, str(cache.root)))


_RECORDER: contextvars.ContextVar[EncodingRecorder | None] = contextvars.ContextVar(
    "t2ibench_encoding_recorder", default=None
)


@contextlib.contextmanager
def recording(encoders: Sequence[Encoder]) -> Iterator[EncodingRecorder]:
    """Within it, :func:`evaluate_images` computes no metric and encodes nothing through the
    built-in providers: it lists the encoder batches it would run (``recorder.batches``)."""
    recorder = EncodingRecorder(list(encoders))
    token = _RECORDER.set(recorder)
    try:
        yield recorder
    finally:
        _RECORDER.reset(token)


def encode_batch(encoder: Encoder, batch: EncodeBatch, cache: FeatureCache) -> None:
    """Encode one recorded batch and store each row, as ``encode_images_cached`` does."""
    import torch

    from t2ibench.encoders.cache import _decode, _read_bytes

    images = [_decode(Path(p), _read_bytes(Path(p))) for _, p in batch.items]
    out = encoder.encode_images(images)
    for j, (h, _) in enumerate(batch.items):
        row = out[j] if isinstance(out, torch.Tensor) else [t[j] for t in out]
        cache.put(encoder, h, row)


def _encode(encoder: Encoder, paths: Sequence[Path], cache: FeatureCache | None) -> Any:
    recorder = _RECORDER.get()
    if recorder is not None:
        return recorder.record(encoder, paths, cache)
    return encode_images_cached(encoder, paths, cache)


# --- the built-in input providers -----------------------------------------------------------------
_IMAGE_KINDS = ("image", "image-text")


def _generated(ctx: EvalContext) -> Any:
    """Features of the group's generated images from ``ctx.encoder`` (encoded once per group)."""
    return ctx.once("generated", lambda: _encode(ctx.encoder, ctx.image_paths, ctx.cache))


def _reference(ctx: EvalContext) -> Any:
    """Features of the leaf's dataset images (encoded once per encoder for the whole evaluation)."""
    enc = ctx.encoder
    paths = [im.path for im in ctx.leaf.images]
    key = ("reference", enc.name + enc.preprocess_id, ctx.leaf.key)
    return ctx.once(key, lambda: _encode(enc, paths, ctx.cache), shared=True)


def _prompt_texts(ctx: EvalContext) -> Any:
    """Features of each job's prompt, cleaned of trigger words (PROTOCOL "Metrics")."""
    texts = [clean_prompt(r.prompt, ctx.leaf) for r in ctx.records]
    if _RECORDER.get() is not None:
        return None  # text features are cheap: the evaluation itself encodes them
    return ctx.once("texts", lambda: encode_texts_cached(ctx.encoder, texts, ctx.cache))


def _base_images(ctx: EvalContext) -> Any:
    """Features of the base model's images paired by seed with the group's images."""
    missing = [r.file for r in ctx.records if paired_key(r) not in ctx.base_images]
    if missing:
        if not ctx.base_images:
            raise MissingInput("no base-model images were given")
        raise T2IBenchError(
            f"{ctx.metric.name}: no base-model image paired by seed with {missing[0]} "
            f"(and {len(missing) - 1} more); generate the base images for the same jobs"
        )
    paths = [ctx.base_images[paired_key(r)] for r in ctx.records]
    return ctx.once("base", lambda: _encode(ctx.encoder, paths, ctx.base_cache))


def _base_images_of_group(ctx: EvalContext) -> Any:
    """:func:`_base_images` for a metric of every prompt type (drift): a group with no base image
    at all (base images made for the style prompts only) skips it instead of stopping."""
    if not any(paired_key(r) in ctx.base_images for r in ctx.records):
        raise MissingInput("no base-model images for this group")
    return _base_images(ctx)


for _provider in (
    InputProvider("gen", _generated, _IMAGE_KINDS, description="generated image features"),
    InputProvider("feats", _generated, _IMAGE_KINDS, description="generated image features"),
    InputProvider(
        "ref", _reference, _IMAGE_KINDS, per_image=False, description="dataset image features"
    ),
    InputProvider("image_feats", _generated, ("image-text",), description="generated images"),
    InputProvider("text_feats", _prompt_texts, ("image-text",), description="cleaned prompts"),
    InputProvider("grams_a", _base_images, ("gram",), description="base-model images by seed"),
    InputProvider("grams_b", _generated, ("gram",), description="generated images"),
    InputProvider(
        "base", _base_images_of_group, _IMAGE_KINDS, description="base-model images by seed"
    ),
    InputProvider(
        "scores", _generated, ("score",), own_encoder_only=True, description="per-image scores"
    ),
):
    register_input_provider(_provider)
