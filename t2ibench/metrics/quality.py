"""Per-image quality scores (IQA probes such as LIQE and MANIQA): the metric is their mean."""

from __future__ import annotations

import torch

from t2ibench.metrics._common import StreamingMetric, as_matrix


def mean_score(scores: torch.Tensor) -> float:
    """Mean of per-image scores given as (n,) or (n, 1)."""
    s = as_matrix(torch.as_tensor(scores).reshape(-1, 1), "scores")
    return float(s.mean())


class MeanScore(StreamingMetric):
    """Streaming :func:`mean_score`."""

    _state = ("total", "n")

    def __init__(self) -> None:
        self.total = 0.0
        self.n = 0

    def update(self, scores: torch.Tensor) -> None:
        s = as_matrix(torch.as_tensor(scores).reshape(-1, 1), "scores")
        self.total += float(s.sum())
        self.n += s.shape[0]

    def compute(self) -> float:
        if not self.n:
            raise ValueError("MeanScore: no scores")
        return self.total / self.n
