"""Fidelity in feature space: image similarity and squared centroid distance (paper §4, eq. 23).

Both depend on the data only through the means of the L2-normalised features, so streaming keeps
two float64 sums and two counts: 15,000 images never sit in memory at once.
"""

from __future__ import annotations

import torch

from t2ibench.metrics._common import StreamingMetric, add, as_matrix, l2_normalize, width


def _centroids(gen: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    g = as_matrix(gen, "gen")
    r = as_matrix(ref, "ref", cols=g.shape[1], cols_from="gen")
    return l2_normalize(g, "gen").mean(dim=0), l2_normalize(r, "ref").mean(dim=0)


def image_similarity(gen: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean cosine similarity over all (generated, reference) pairs = ⟨mean x̂, mean ŷ⟩.

    ``gen`` (n, d) and ``ref`` (m, d); input rules (shapes, zero rows, NaN) in
    :mod:`t2ibench.metrics._common`.
    """
    mg, mr = _centroids(gen, ref)
    return float(mg @ mr)


def centroid_distance(gen: torch.Tensor, ref: torch.Tensor) -> float:
    """Squared distance between the means of the L2-normalised features, ‖mean x̂ − mean ŷ‖²."""
    mg, mr = _centroids(gen, ref)
    diff = mg - mr
    return float(diff @ diff)


class _CentroidPair(StreamingMetric):
    _state = ("gen_sum", "gen_n", "ref_sum", "ref_n")

    def __init__(self) -> None:
        self.gen_sum: torch.Tensor | None = None
        self.ref_sum: torch.Tensor | None = None
        self.gen_n = 0
        self.ref_n = 0

    def update(self, gen: torch.Tensor | None = None, ref: torch.Tensor | None = None) -> None:
        """Add generated and/or reference features (either may come in its own calls)."""
        if gen is not None:
            d = width(self.gen_sum, self.ref_sum)
            g = l2_normalize(as_matrix(gen, "gen", cols=d), "gen")
            self.gen_sum, self.gen_n = add(self.gen_sum, g.sum(0)), self.gen_n + g.shape[0]
        if ref is not None:
            d = width(self.gen_sum, self.ref_sum)
            r = l2_normalize(as_matrix(ref, "ref", cols=d), "ref")
            self.ref_sum, self.ref_n = add(self.ref_sum, r.sum(0)), self.ref_n + r.shape[0]

    def feature_width(self) -> int | None:
        return width(self.gen_sum, self.ref_sum)

    def _means(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.gen_n or not self.ref_n:
            raise ValueError(f"{type(self).__name__}: needs generated and reference features")
        return self.gen_sum / self.gen_n, self.ref_sum / self.ref_n


class ImageSimilarity(_CentroidPair):
    """Streaming :func:`image_similarity`."""

    def compute(self) -> float:
        mg, mr = self._means()
        return float(mg @ mr)


class CentroidDistance(_CentroidPair):
    """Streaming :func:`centroid_distance`."""

    def compute(self) -> float:
        mg, mr = self._means()
        return float((mg - mr) @ (mg - mr))


# --- registration ---------------------------------------------------------------------------------
from t2ibench.metrics.registry import MetricSpec, ReportUse, register_metric  # noqa: E402

register_metric(
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
        report=ReportUse(
            criterion=("train", "alter"), shap=("train", "alter"), epochs=("train", "alter")
        ),
    )
)
register_metric(
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
    )
)
