"""In-process scoring: ``t2ibench.evaluate(images, references=..., prompts=..., metric_profile=...)``.

For notebooks and other papers' code: give images (paths or PIL images), get a tidy DataFrame — one
row per measure of the metric profile (see :mod:`t2ibench.metric_profiles`). No run folder, no
manifest, no CLI, and no diffusers (nothing is generated here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from PIL import Image

from t2ibench.errors import ConfigError, T2IBenchError
from t2ibench.metric_profiles import (
    DEFAULT_METRIC_PROFILE,
    Measure,
    MetricProfile,
    get_metric_profile,
)

ImageLike = str | Path | Image.Image
# Metrics a measure can pair freely: value per pair = sign·cos + offset.
_COSINE_METRICS = {
    "image_similarity": (1.0, 0.0),
    "text_alignment": (1.0, 0.0),
    "drift": (-1.0, 1.0),
}
# The default profile's encoders (the paper's feature encoders; IQA and Gram ones need the CLI).
_DEFAULT_ENCODERS = ("dinov2-l", "clip-l14", "convnextv2-l")


def _open(images: Sequence[ImageLike] | None, what: str) -> list[Image.Image]:
    out = []
    for im in images or ():
        if isinstance(im, Image.Image):
            out.append(im)
            continue
        path = Path(im)
        try:
            with Image.open(path) as f:
                out.append(f.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise T2IBenchError(f"{what}: cannot read image {path} ({exc})") from None
    return out


def remove_identifier(prompt: str, identifier: str | Sequence[str] | None) -> str:
    """``prompt`` without the identifier token(s) (whole words), spaces tidied:
    "a sks dog in the snow" → "a dog in the snow"."""
    tokens = [identifier] if isinstance(identifier, str) else list(identifier or ())
    for tok in tokens:
        prompt = re.sub(rf"(?<!\w){re.escape(tok)}(?!\w)", " ", prompt)
    return " ".join(prompt.split())


def pair_values(measure: Measure, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pair values (float64) of a cosine measure: all pairs of rows, or row i with row i."""
    a = torch.nn.functional.normalize(a.double(), dim=1)
    b = torch.nn.functional.normalize(b.double(), dim=1)
    if measure.pairing == "all-pairs":
        cos = (a @ b.T).flatten()
    else:
        if a.shape != b.shape:
            raise T2IBenchError(
                f"measure {measure.label}: pairing {measure.pairing!r} needs one "
                f"{'prompt' if measure.pairing == 'prompt' else 'reference'} per image, got "
                f"{b.shape[0]} for {a.shape[0]} images"
            )
        cos = (a * b).sum(dim=1)
    sign, offset = _COSINE_METRICS[measure.metric]
    return sign * cos + offset


def reduce_pairs(measure: Measure, values: torch.Tensor) -> float:
    """Clamp (per pair or of the mean), average, scale."""
    if measure.clamp == "pair":
        values = values.clamp_min(0)
    mean = values.mean()
    if measure.clamp == "mean":
        mean = mean.clamp_min(0)
    return float(mean) * measure.scale


class _Encoders:
    """Each (encoder, weights, resize, size) loaded once per call."""

    def __init__(self, tiny, weights, device, batch_size):
        self.tiny, self.weights, self.device, self.batch_size = tiny, weights, device, batch_size
        self.loaded: dict[tuple, Any] = {}

    def get(self, m: Measure):
        from t2ibench.encoders import create_encoder
        from t2ibench.metric_profiles.preprocess import set_resize_size

        key = (m.encoder, m.weights, m.resize, m.size, m.resize_size)
        if key not in self.loaded:
            w = self.weights.get(m.encoder, m.weights)
            enc = create_encoder(
                m.encoder,
                weights=None if self.tiny else w,
                tiny=self.tiny,
                resize=m.resize,
                size=m.size,
                device=self.device,
                batch_size=self.batch_size,
            )
            self.loaded[key] = set_resize_size(enc, m.resize_size)
        return self.loaded[key]


def evaluate(
    images: Sequence[ImageLike],
    references: Sequence[ImageLike] | None = None,
    prompts: Sequence[str] | None = None,
    *,
    metric_profile: str | MetricProfile = DEFAULT_METRIC_PROFILE,
    base_images: Sequence[ImageLike] | None = None,
    identifier: str | Sequence[str] | None = None,
    weights: Mapping[str, str] | None = None,
    tiny: bool = False,
    device: str = "cpu",
    batch_size: int = 32,
) -> pd.DataFrame:
    """Score ``images`` as ``metric_profile`` defines its numbers; one row per measure.

    ``references``: real images (all-pairs measures use them as a set; paired measures need one per
    image, in order). ``prompts``: one per image (text measures). ``base_images``: the base model's
    image for the same prompt and seed, one per image (drift). ``identifier``: the rare token(s)
    that ``remove-identifier`` text cleaning drops. ``weights``: encoder name → weights (hub id or
    local path) instead of the profile's; ``tiny``: random-weight tiny encoders (tests, demos).
    Columns: metric_profile, measure, metric, encoder, encoder_weights, resize, size, resize_size, pairing,
    scale, clamp, value, n_images, n_pairs.
    """
    profile = get_metric_profile(metric_profile)
    gen = _open(images, "images")
    if not gen:
        raise T2IBenchError("images: nothing to score")
    refs = _open(references, "references")
    bases = _open(base_images, "base_images")
    prompts = list(prompts) if prompts is not None else None
    if prompts is not None and len(prompts) != len(gen):
        raise T2IBenchError(f"prompts: {len(prompts)} prompts for {len(gen)} images")
    encoders = _Encoders(tiny, dict(weights or {}), device, batch_size)
    measures = profile.measures or _default_measures(refs, prompts, bases)
    rows = []
    for m in measures:
        enc = encoders.get(m)
        feats = enc.encode_images(gen)
        if m.pairing == "prompt":
            if prompts is None:
                raise T2IBenchError(f"measure {m.label}: needs prompts=...")
            texts = [remove_identifier(p, identifier) if m.text == "remove-identifier" else p
                     for p in prompts]  # fmt: skip
            other = enc.encode_texts(texts)
        elif m.pairing == "base-paired":
            if not bases:
                raise T2IBenchError(f"measure {m.label}: needs base_images=... (one per image)")
            other = enc.encode_images(bases)
        else:
            if not refs:
                raise T2IBenchError(f"measure {m.label}: needs references=...")
            other = enc.encode_images(refs)
        if m.metric in _COSINE_METRICS:
            pairs = pair_values(m, feats, other)
            value, n_pairs = reduce_pairs(m, pairs), pairs.numel()
        else:
            value, n_pairs = _registered_value(m, feats, other), feats.shape[0] * other.shape[0]
        rows.append(
            {
                "metric_profile": profile.name,
                "measure": m.label,
                "metric": m.metric,
                "encoder": m.encoder,
                "encoder_weights": enc.weights_id,
                "resize": enc.preprocess.resize,
                "size": enc.preprocess.size,
                "resize_size": m.resize_size or enc.preprocess.size,
                "pairing": m.pairing,
                "scale": m.scale,
                "clamp": m.clamp,
                "value": value,
                "n_images": len(gen),
                "n_pairs": n_pairs,
            }
        )
    return pd.DataFrame(rows)


def _registered_value(m: Measure, feats: torch.Tensor, other: torch.Tensor) -> float:
    """A non-cosine metric (Fréchet distance, KID, centroid distance...) on (gen, ref)."""
    from t2ibench.metrics import get_metric

    spec = get_metric(m.metric)
    if m.pairing != "all-pairs" or set(spec.inputs) != {"gen", "ref"}:
        raise ConfigError(
            f"measure {m.label}: metric {m.metric} takes {spec.inputs}; only cosine metrics "
            f"({', '.join(_COSINE_METRICS)}) can be paired {m.pairing!r}"
        )
    return float(spec.function(gen=feats, ref=other, **spec.options)) * m.scale


def _default_measures(refs, prompts, bases) -> list[Measure]:
    """lycoris2024: the registered (gen, ref) metrics and text alignment on the default encoders,
    letterbox (the encoders' defaults), unscaled — what the CLI computes without a profile."""
    from t2ibench.encoders import get_encoder_spec
    from t2ibench.metrics import get_metric, list_metrics

    out = []
    for enc in _DEFAULT_ENCODERS:
        kind = get_encoder_spec(enc).kind
        for name in list_metrics():
            spec = get_metric(name)
            if set(spec.inputs) == {"gen", "ref"} and refs:
                pairing = "all-pairs"
            elif name == "text_alignment" and kind == "image-text" and prompts is not None:
                pairing = "prompt"
            elif name == "drift" and bases:
                pairing = "base-paired"
            else:
                continue
            out.append(Measure(label=name, metric=name, encoder=enc, pairing=pairing,
                               text="remove-identifier"))  # fmt: skip
    if not out:
        raise T2IBenchError(
            "nothing to compute: give references=..., prompts=... or base_images=..."
        )
    return out
