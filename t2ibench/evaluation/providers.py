"""The built-in input providers: where the engine gets each metric input (see
:mod:`t2ibench.metrics.inputs`). Registered on import; the engine imports this module.

- ``gen``, ``feats``, ``ref``: features of the generated images / of the leaf's dataset images, from
  every encoder of kind ``image`` or ``image-text``;
- ``paired_ref``: the reference of each generated image (its own, or the leaf's only one), one row
  per image — the ``paired`` pairing of a metric profile;
- ``image_feats``, ``text_feats``: generated image features and the features of each job's prompt
  after :func:`t2ibench.prompts.clean_prompt`, from encoders of kind ``image-text``;
  ``text_feats_as_written``: the prompts as written (a profile's ``text = "keep"``);
- ``base``: features of the base model's image paired as ``grams_a`` is (the ``drift`` metric, and
  the ``base-paired`` pairing);
- ``grams_a``, ``grams_b``: Gram matrices of the base model's image paired by leaf, prompt type,
  index and seed, and of the checkpoint's image, from encoders of kind ``gram``;
- ``scores``: per-image scores from the (``score``-kind) encoder the metric names.

Every feature goes through the content-addressed cache, so the dataset's reference images and the
base model's images are encoded once per encoder for the whole run (a sweep's runs share one cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t2ibench.encoders import encode_images_cached, encode_texts_cached
from t2ibench.errors import T2IBenchError
from t2ibench.evaluation.recording import current_recorder
from t2ibench.metrics.inputs import (
    EvalContext,
    InputProvider,
    MissingInput,
    paired_key,
    register_input_provider,
)
from t2ibench.prompts import clean_prompt


def encode_images(encoder: Any, paths: Sequence[Path], cache: Any | None) -> Any:
    """Features of the image files ``paths`` (rows in order) through the feature cache — the one
    way the engine, and the report's anchors, turn images into features (recorded instead while
    :func:`t2ibench.evaluation.recording.recording` is active)."""
    recorder = current_recorder()
    if recorder is not None:
        return recorder.record(encoder, paths, cache)
    return encode_images_cached(encoder, paths, cache)


_IMAGE_KINDS = ("image", "image-text")


def _generated(ctx: EvalContext) -> Any:
    """Features of the group's generated images from ``ctx.encoder`` (encoded once per group)."""
    return ctx.once("generated", lambda: encode_images(ctx.encoder, ctx.image_paths, ctx.cache))


def _reference(ctx: EvalContext) -> Any:
    """Features of the leaf's dataset images (encoded once per encoder for the whole evaluation)."""
    enc = ctx.encoder
    paths = [im.path for im in ctx.leaf.images]
    if not paths:
        raise MissingInput(f"leaf {ctx.leaf.key} has no reference images")
    key = ("reference", enc.name + enc.preprocess_id, ctx.leaf.key)
    return ctx.once(key, lambda: encode_images(enc, paths, ctx.cache), shared=True)


def _paired_reference(ctx: EvalContext) -> Any:
    """Each generated image's own reference: ``record.reference`` (an index into the leaf's
    images) where the records say, else the leaf's only reference."""
    refs = ctx.leaf.images
    if not refs:
        raise MissingInput(f"leaf {ctx.leaf.key} has no reference images")
    own = [getattr(r, "reference", None) for r in ctx.records]
    if any(i is None for i in own):
        if len(refs) != 1:
            raise T2IBenchError(
                f"{ctx.metric.name}: pairing each image with its own reference needs one "
                f"reference per image, but leaf {ctx.leaf.key} has {len(refs)} and its images "
                "name none"
            )
        own = [0] * len(ctx.records)
    paths = [refs[i].path for i in own]
    return ctx.once("paired_reference", lambda: encode_images(ctx.encoder, paths, ctx.cache))


def _texts(ctx: EvalContext, texts: list[str], key: str) -> Any:
    if current_recorder() is not None:
        return None  # text features are cheap: the evaluation itself encodes them
    if any(getattr(r, "prompt", None) is None for r in ctx.records):
        raise MissingInput("no prompts were given")
    return ctx.once(key, lambda: encode_texts_cached(ctx.encoder, texts, ctx.cache))


def _prompt_texts(ctx: EvalContext) -> Any:
    """Features of each job's prompt, cleaned of trigger words (PROTOCOL "Metrics")."""
    texts = [clean_prompt(r.prompt or "", ctx.leaf) for r in ctx.records]
    return _texts(ctx, texts, "texts")


def _prompt_texts_as_written(ctx: EvalContext) -> Any:
    """Features of each job's prompt as written (prompts that carry no identifier)."""
    return _texts(ctx, [r.prompt or "" for r in ctx.records], "texts-as-written")


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
    return ctx.once("base", lambda: encode_images(ctx.encoder, paths, ctx.base_cache))


def _base_images_of_group(ctx: EvalContext) -> Any:
    """:func:`_base_images` for a metric of every prompt type (drift): a group with no base image
    at all (base images made for the style prompts only) skips it instead of stopping."""
    if not any(paired_key(r) in ctx.base_images for r in ctx.records):
        raise MissingInput("no base-model images for this group")
    return _base_images(ctx)


_REFS, _PROMPTS, _BASES = "references", "prompts", "base images"
for _provider in (
    InputProvider("gen", _generated, _IMAGE_KINDS, description="generated image features"),
    InputProvider("feats", _generated, _IMAGE_KINDS, description="generated image features"),
    InputProvider("ref", _reference, _IMAGE_KINDS, per_image=False,
                  description="dataset image features", needs=_REFS),
    InputProvider("paired_ref", _paired_reference, _IMAGE_KINDS,
                  description="each image's own reference", needs=_REFS),
    InputProvider("image_feats", _generated, ("image-text",), description="generated images"),
    InputProvider("text_feats", _prompt_texts, ("image-text",), description="cleaned prompts",
                  needs=_PROMPTS),
    InputProvider("text_feats_as_written", _prompt_texts_as_written, ("image-text",),
                  description="prompts as written", needs=_PROMPTS),
    InputProvider("grams_a", _base_images, ("gram",), description="base-model images by seed",
                  needs=_BASES),
    InputProvider("grams_b", _generated, ("gram",), description="generated images"),
    InputProvider("base", _base_images_of_group, _IMAGE_KINDS,
                  description="base-model images by seed", needs=_BASES),
    InputProvider("scores", _generated, ("score",), own_encoder_only=True,
                  description="per-image scores"),
):  # fmt: skip
    register_input_provider(_provider)
