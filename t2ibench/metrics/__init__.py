"""Metrics: pure functions on feature tensors, streaming classes, and the metric registry.

Importing this module is light: it needs torch only (no diffusers, transformers, open_clip, timm).
Every metric is a pure function (``image_similarity(gen, ref)``) and a streaming class with
``update(...)``, ``compute()`` and ``merge(other)`` that keeps float64 sufficient statistics.

Each built-in metric registers itself at the bottom of its own file (``register_metric``); this
package imports every module in it, so a new built-in is one new file. Third parties use the
entry-point group ``t2ibench.metrics``.
"""

from __future__ import annotations

import importlib
import pkgutil

from t2ibench.metrics.alignment import TextAlignment, text_alignment
from t2ibench.metrics.drift import Drift, drift
from t2ibench.metrics.frechet import FrechetDistance, frechet_distance
from t2ibench.metrics.inputs import (
    INPUT_PROVIDERS,
    EvalContext,
    InputProvider,
    MetricInputError,
    MissingInput,
    register_input_provider,
)
from t2ibench.metrics.kid import KernelInceptionDistance, kernel_inception_distance
from t2ibench.metrics.quality import MeanScore, mean_score
from t2ibench.metrics.registry import (
    INF,
    METRICS,
    MetricSpec,
    ReportUse,
    get_metric,
    list_criteria,
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

# The metric files register on import: import them all (a new file needs no edit here).
for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_") and _mod.name not in ("registry", "inputs"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "INF",
    "INPUT_PROVIDERS",
    "METRICS",
    "CentroidDistance",
    "Drift",
    "EvalContext",
    "FrechetDistance",
    "ImageSimilarity",
    "InputProvider",
    "KernelInceptionDistance",
    "MeanScore",
    "MetricInputError",
    "MetricSpec",
    "MissingInput",
    "ReportUse",
    "StyleLoss",
    "TextAlignment",
    "VendiScore",
    "centroid_distance",
    "drift",
    "frechet_distance",
    "get_metric",
    "gram_matrices",
    "image_similarity",
    "kernel_inception_distance",
    "list_criteria",
    "list_metrics",
    "mean_score",
    "register_input_provider",
    "register_metric",
    "style_loss",
    "text_alignment",
    "vendi_score",
]
