"""Fréchet distance between Gaussian fits of two feature sets (FID's formula, any encoder).

d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½). The trace of (Σ₁Σ₂)^½ equals Σ √λ of the symmetric PSD
matrix Σ₁^½ Σ₂ Σ₁^½, which avoids scipy's non-symmetric ``sqrtm`` and its complex round-off.
Sufficient statistics: Σx, Σxxᵀ and n per side, in float64.
"""

from __future__ import annotations

import torch

from t2ibench.metrics._common import StreamingMetric, add, as_matrix


def _sym_sqrt(m: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def _frechet_from_stats(mu1, cov1, mu2, cov2) -> float:
    s1 = _sym_sqrt(cov1)
    cross = torch.linalg.eigvalsh(s1 @ cov2 @ s1).clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff @ diff + torch.trace(cov1) + torch.trace(cov2) - 2 * cross)


def _stats(
    s: torch.Tensor, ss: torch.Tensor, n: int, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if n < 2:
        raise ValueError(f"frechet_distance: {name} needs at least 2 samples, got {n}")
    mu = s / n
    cov = (ss - n * torch.outer(mu, mu)) / (n - 1)  # unbiased, as numpy.cov and FID code
    return mu, cov


def frechet_distance(gen: torch.Tensor, ref: torch.Tensor) -> float:
    """Fréchet distance between the feature sets ``gen`` and ``ref`` (raw features, not normalised)."""
    g, r = as_matrix(gen, "gen"), as_matrix(ref, "ref")
    mu1, c1 = _stats(g.sum(0), g.T @ g, g.shape[0], "gen")
    mu2, c2 = _stats(r.sum(0), r.T @ r, r.shape[0], "ref")
    return _frechet_from_stats(mu1, c1, mu2, c2)


class FrechetDistance(StreamingMetric):
    """Streaming :func:`frechet_distance`."""

    _state = ("gen_s", "gen_ss", "gen_n", "ref_s", "ref_ss", "ref_n")

    def __init__(self) -> None:
        self.gen_s = self.gen_ss = self.ref_s = self.ref_ss = None
        self.gen_n = self.ref_n = 0

    def update(self, gen: torch.Tensor | None = None, ref: torch.Tensor | None = None) -> None:
        if gen is not None:
            g = as_matrix(gen, "gen")
            self.gen_s, self.gen_ss = add(self.gen_s, g.sum(0)), add(self.gen_ss, g.T @ g)
            self.gen_n += g.shape[0]
        if ref is not None:
            r = as_matrix(ref, "ref")
            self.ref_s, self.ref_ss = add(self.ref_s, r.sum(0)), add(self.ref_ss, r.T @ r)
            self.ref_n += r.shape[0]

    def compute(self) -> float:
        if self.gen_s is None or self.ref_s is None:
            raise ValueError("FrechetDistance: needs generated and reference features")
        mu1, c1 = _stats(self.gen_s, self.gen_ss, self.gen_n, "gen")
        mu2, c2 = _stats(self.ref_s, self.ref_ss, self.ref_n, "ref")
        return _frechet_from_stats(mu1, c1, mu2, c2)


# --- registration ---------------------------------------------------------------------------------
from t2ibench.metrics.registry import INF, MetricSpec, register_metric  # noqa: E402

register_metric(
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
    )
)
