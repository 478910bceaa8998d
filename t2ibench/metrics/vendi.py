"""Vendi score (Friedman & Dieng 2023) with a linear kernel on L2-normalised features.

VS_q = exp(H_q(λ)), λ the eigenvalues of K/n with K = X̂X̂ᵀ. K/n (n×n) and X̂ᵀX̂/n (d×d) share their
non-zero eigenvalues, so we solve whichever is smaller, in float64. The streaming class keeps the rows
while n ≤ d and switches to the d×d second moment once n exceeds d: both exact. Input rules (2-D
only, all-zero rows refused, any finite magnitude) are in :mod:`t2ibench.metrics._common`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from t2ibench.metrics._common import StreamingMetric, as_matrix, l2_normalize

ORDERS = (0.0, 0.5, 1.0, 2.0, math.inf)


def _entropy_exp(lam: torch.Tensor, q: float) -> float:
    lam = lam.clamp_min(0)
    lam = lam / lam.sum()  # guards round-off; λ of K/n sums to 1 for unit rows
    # Eigenvalues below round-off are zeros (numpy.linalg.matrix_rank's tolerance): for q < 1 a
    # 1e-17 noise eigenvalue would otherwise add 1e-8 to the score of n identical vectors.
    tol = lam.max() * lam.numel() * torch.finfo(torch.float64).eps
    lam = torch.where(lam > tol, lam, torch.zeros_like(lam))
    if q == 0:
        return float((lam > 0).sum())
    if math.isinf(q):
        return float(1.0 / lam.max())
    nz = lam[lam > 0]
    if q == 1:
        return float(torch.exp(-(nz * nz.log()).sum()))
    return float((nz**q).sum() ** (1.0 / (1.0 - q)))


def _check_q(q: float) -> float:
    q = float(q)
    if q < 0:
        raise ValueError(f"vendi_score: order q must be ≥ 0, got {q}")
    return q


def _gram(x: torch.Tensor, small_side: str) -> torch.Tensor:
    """X̂X̂ᵀ (``"n"``) or X̂ᵀX̂ (``"d"``) in float64. NumPy recognises ``a @ a.T`` and calls BLAS
    syrk, which computes one triangle: half the flops of torch's general matmul."""
    a = x.numpy()
    return torch.from_numpy(a @ a.T if small_side == "n" else a.T @ a)


def _eigenvalues(k: torch.Tensor, n: int) -> torch.Tensor:
    m = k.numpy()
    m /= n
    return torch.from_numpy(np.linalg.eigvalsh(m))


def vendi_score(feats: torch.Tensor, q: float = 1.0) -> float:
    """Vendi score of order ``q`` (0, 0.5, 1, 2, inf, or any q ≥ 0) of a (n, d) feature matrix."""
    q = _check_q(q)
    x = l2_normalize(as_matrix(feats, "feats"), "feats")
    n, d = x.shape
    return _entropy_exp(_eigenvalues(_gram(x, "n" if n <= d else "d"), n), q)


class VendiScore(StreamingMetric):
    """Streaming :func:`vendi_score`. ``merge`` combines shards of the same q exactly."""

    _state = ()
    _options = ("q",)

    def __init__(self, q: float = 1.0) -> None:
        self.q = _check_q(q)
        self.rows: list[torch.Tensor] = []  # kept while n ≤ d
        self.second_moment: torch.Tensor | None = None  # Σ x̂ x̂ᵀ (d×d) once n > d
        self.n = 0
        self.d: int | None = None

    def update(self, feats: torch.Tensor) -> None:
        x = l2_normalize(as_matrix(feats, "feats", cols=self.d), "feats")
        if self.d is None:
            self.d = x.shape[1]
        self.n += x.shape[0]
        if self.second_moment is not None:
            self.second_moment += _gram(x, "d")
            return
        self.rows.append(x)
        if self.n > self.d:
            self.second_moment, self.rows = _gram(torch.cat(self.rows), "d"), []

    def feature_width(self) -> int | None:
        return self.d

    def merge(self, other: StreamingMetric) -> VendiScore:
        self.check_mergeable(other)
        assert isinstance(other, VendiScore)
        if self.d is not None and other.d is not None and other.d != self.d:
            raise ValueError(
                f"cannot merge VendiScore shards: feature size {other.d} differs from {self.d}"
            )
        if other.n == 0:
            return self
        if other.second_moment is not None:
            self.update_second_moment(other.second_moment, other.n, other.d)
        else:
            for rows in other.rows:
                self.update(rows)
        return self

    def update_second_moment(self, m: torch.Tensor, n: int, d: int | None) -> None:
        """Add the second moment ``m`` = Σ x̂ x̂ᵀ (d×d) of ``n`` normalised rows."""
        if self.d is not None and d != self.d:
            raise ValueError(f"second moment: feature size {d} differs from earlier {self.d}")
        if d is None or tuple(m.shape) != (d, d):
            raise ValueError(f"second moment: expected shape ({d}, {d}), got {tuple(m.shape)}")
        self.d = d
        if self.second_moment is None:
            stacked = torch.cat(self.rows) if self.rows else torch.zeros(0, d, dtype=torch.float64)
            self.second_moment, self.rows = _gram(stacked, "d"), []
        self.second_moment = self.second_moment + m
        self.n += n

    def compute(self) -> float:
        if self.n == 0:
            raise ValueError("VendiScore: no features")
        if self.second_moment is not None:
            return _entropy_exp(_eigenvalues(self.second_moment.clone(), self.n), self.q)
        return _entropy_exp(_eigenvalues(_gram(torch.cat(self.rows), "n"), self.n), self.q)


# --- registration ---------------------------------------------------------------------------------
from t2ibench.metrics.registry import INF, MetricSpec, ReportUse, register_metric  # noqa: E402

register_metric(
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
        options={"q": 1.0},
        per_image=False,
        report=ReportUse(
            criterion=("train", "alter"),
            shap=("train",),
            epochs=("train",),
            pairs=(("train", "centroid_distance:train"),),
        ),
    )
)
