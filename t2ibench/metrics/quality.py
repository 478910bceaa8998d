"""Per-image quality scores (IQA probes such as LIQE and MANIQA): the metric is their mean."""

from __future__ import annotations

import torch

from t2ibench.metrics._common import StreamingMetric, as_matrix


def _scores(scores: torch.Tensor) -> torch.Tensor:
    """Per-image scores as (n, 1): (n,) and (n, 1) are accepted, anything else is refused."""
    s = torch.as_tensor(scores)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2 or s.shape[1] != 1:
        raise ValueError(f"scores: expected (n,) or (n, 1) per-image scores, got {tuple(s.shape)}")
    return as_matrix(s, "scores")


def mean_score(scores: torch.Tensor) -> float:
    """Mean of per-image scores given as (n,) or (n, 1)."""
    return float(_scores(scores).mean())


class MeanScore(StreamingMetric):
    """Streaming :func:`mean_score`."""

    _state = ("total", "n")

    def __init__(self) -> None:
        self.total = 0.0
        self.n = 0

    def update(self, scores: torch.Tensor) -> None:
        s = _scores(scores)
        self.total += float(s.sum())
        self.n += s.shape[0]

    def compute(self) -> float:
        if not self.n:
            raise ValueError("MeanScore: no scores")
        return self.total / self.n


# --- registration ---------------------------------------------------------------------------------
from t2ibench.metrics.registry import MetricSpec, register_metric  # noqa: E402

# The IQA probes' scores are their own features (encoder kind "score"): the metric is the mean.
register_metric(
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
    )
)
register_metric(
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
    )
)
