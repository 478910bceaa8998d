"""Metrics: pure functions on feature tensors, streaming classes, and the metric registry.

Importing this module is light: it needs torch only (no diffusers, transformers, open_clip, timm).
Every metric is a pure function (``image_similarity(gen, ref)``) and a streaming class with
``update(...)``, ``compute()`` and ``merge(other)`` that keeps float64 sufficient statistics.
"""

from __future__ import annotations

from t2ibench.metrics.alignment import TextAlignment, text_alignment
from t2ibench.metrics.frechet import FrechetDistance, frechet_distance
from t2ibench.metrics.quality import MeanScore, mean_score
from t2ibench.metrics.registry import (
    CRITERIA,
    INF,
    METRICS,
    REFERENCES,
    MetricSpec,
    get_metric,
    list_metrics,
    register_metric,
)
from t2ibench.metrics.similarity import (
    CentroidDistance,
    ImageSimilarity,
    centroid_distance,
    image_similarity,
)
from t2ibench.metrics.style import StyleLoss, gram_matrices, style_loss
from t2ibench.metrics.vendi import VendiScore, vendi_score


def _style_loss_mean(grams_a, grams_b) -> float:
    return float(style_loss(grams_a, grams_b).mean())


_BUILTINS = [
    MetricSpec(
        name="image_similarity",
        criterion="fidelity",
        encoder="dinov2-l",
        references=("dataset_images",),
        higher_is_better=True,
        range=(-1.0, 1.0),
        function=image_similarity,
        stream=ImageSimilarity,
        inputs=("gen", "ref"),
        description="mean cosine over (generated, dataset image) pairs",
    ),
    MetricSpec(
        name="centroid_distance",
        criterion="fidelity",
        encoder="dinov2-l",
        references=("dataset_images",),
        higher_is_better=False,
        range=(0.0, 4.0),
        function=centroid_distance,
        stream=CentroidDistance,
        inputs=("gen", "ref"),
        description="squared distance between centroids of normalised features",
    ),
    MetricSpec(
        name="text_alignment",
        criterion="controllability",
        encoder="clip-l14",
        references=("prompts",),
        higher_is_better=True,
        range=(-1.0, 1.0),
        function=text_alignment,
        stream=TextAlignment,
        inputs=("image_feats", "text_feats"),
        description="mean cosine between each image and its cleaned prompt",
    ),
    MetricSpec(
        name="vendi",
        criterion="diversity",
        encoder="dinov2-l",
        references=(),
        higher_is_better=True,
        range=(1.0, INF),
        function=vendi_score,
        stream=VendiScore,
        inputs=("feats",),
        description="Vendi score (q=1, linear kernel); per prompt then averaged for alter",
        group_by={"alter": "prompt"},
    ),
    MetricSpec(
        name="style_loss",
        criterion="preservation",
        encoder="vgg19",
        references=("base_images",),
        higher_is_better=False,
        range=(0.0, INF),
        function=_style_loss_mean,
        stream=StyleLoss,
        inputs=("grams_a", "grams_b"),
        description="VGG-19 Gram style loss to the base model's image with the same seed",
        prompt_types=("style",),
    ),
    MetricSpec(
        name="frechet_distance",
        criterion="fidelity",
        encoder="dinov2-l",
        references=("dataset_images",),
        higher_is_better=False,
        range=(0.0, INF),
        function=frechet_distance,
        stream=FrechetDistance,
        inputs=("gen", "ref"),
        description="Fréchet distance between generated and dataset features",
    ),
    MetricSpec(
        name="liqe",
        criterion="quality",
        encoder="liqe",
        references=(),
        higher_is_better=True,
        range=(1.0, 5.0),
        function=mean_score,
        stream=MeanScore,
        inputs=("scores",),
        description="LIQE no-reference quality (pyiqa, the iqa extra); found unreliable (App. H.2)",
    ),
    MetricSpec(
        name="maniqa",
        criterion="quality",
        encoder="maniqa",
        references=(),
        higher_is_better=True,
        range=(0.0, 1.0),
        function=mean_score,
        stream=MeanScore,
        inputs=("scores",),
        description="MANIQA (KonIQ) no-reference quality (pyiqa, the iqa extra)",
    ),
]
for _spec in _BUILTINS:
    register_metric(_spec)

__all__ = [
    "CRITERIA",
    "METRICS",
    "REFERENCES",
    "CentroidDistance",
    "FrechetDistance",
    "ImageSimilarity",
    "MeanScore",
    "MetricSpec",
    "StyleLoss",
    "TextAlignment",
    "VendiScore",
    "centroid_distance",
    "frechet_distance",
    "get_metric",
    "gram_matrices",
    "image_similarity",
    "list_metrics",
    "mean_score",
    "register_metric",
    "style_loss",
    "text_alignment",
    "vendi_score",
]
