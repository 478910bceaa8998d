"""Fréchet distance between Gaussian fits of two feature sets (FID's formula, any encoder).

d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½). The trace of (Σ₁Σ₂)^½ equals Σ √λ of the symmetric PSD
matrix Σ₁^½ Σ₂ Σ₁^½, which avoids scipy's non-symmetric ``sqrtm`` and its complex round-off.
Sufficient statistics: Σx, Σxxᵀ and n per side, in float64.

With n ≤ d samples on a side (100 images per leaf against 1024-d DINOv2 features) the covariance is
singular and the plug-in estimate biased; round-off can then make d² slightly negative. The value is
clamped at 0 and a :class:`SingularCovarianceWarning` says so. Features are raw (not normalised):
any magnitude whose squares stay finite in float64 works (the statistics are rescaled before the
matrix square root); beyond that the function says the statistics overflow.
"""

from __future__ import annotations

import warnings

import torch

from t2ibench.metrics._common import StreamingMetric, UndefinedValue, add, as_matrix, width


class SingularCovarianceWarning(UserWarning):
    """A Fréchet distance from n ≤ d samples: singular covariance, biased estimate."""


def _sym_sqrt(m: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(m)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def _frechet_from_stats(mu1, cov1, mu2, cov2) -> float:
    stats = (mu1, cov1, mu2, cov2)
    if not all(bool(torch.isfinite(t).all()) for t in stats):
        raise ValueError(
            "frechet_distance: the feature statistics overflow float64 (|x|² beyond 1e308); "
            "rescale the features"
        )
    # d² is homogeneous of degree 2: work at unit scale so Σ₁^½ Σ₂ Σ₁^½ cannot overflow.
    scale = max(float(mu1.abs().max()), float(mu2.abs().max()),
                float(cov1.diagonal().abs().max()) ** 0.5, float(cov2.diagonal().abs().max()) ** 0.5)  # fmt: skip
    if scale > 0:
        mu1, mu2, cov1, cov2 = mu1 / scale, mu2 / scale, cov1 / scale**2, cov2 / scale**2
    return _frechet_unit(mu1, cov1, mu2, cov2) * scale**2 if scale > 0 else 0.0


def _frechet_unit(mu1, cov1, mu2, cov2) -> float:
    s1 = _sym_sqrt(cov1)
    cross = torch.linalg.eigvalsh(s1 @ cov2 @ s1).clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    d2 = float(diff @ diff + torch.trace(cov1) + torch.trace(cov2) - 2 * cross)
    return max(d2, 0.0)  # ≥ 0 in exact arithmetic; round-off goes below when Σ is singular


def _warn_if_singular(n_gen: int, n_ref: int, d: int) -> None:
    small = [f"{side} has n={n} ≤ d={d}" for side, n in (("gen", n_gen), ("ref", n_ref)) if n <= d]
    if small:
        warnings.warn(
            f"frechet_distance: {', '.join(small)}: the covariance is singular and the estimate "
            "biased (clamped at 0); compare values only at equal n and d",
            SingularCovarianceWarning,
            stacklevel=3,
        )


def _stats(
    s: torch.Tensor, ss: torch.Tensor, n: int, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if n < 2:
        raise UndefinedValue(f"frechet_distance: {name} needs at least 2 samples, got {n}")
    mu = s / n
    cov = (ss - n * torch.outer(mu, mu)) / (n - 1)  # unbiased, as numpy.cov and FID code
    return mu, cov


def frechet_distance(gen: torch.Tensor, ref: torch.Tensor) -> float:
    """Fréchet distance between the feature sets ``gen`` and ``ref`` (raw features, not normalised)."""
    g = as_matrix(gen, "gen")
    r = as_matrix(ref, "ref", cols=g.shape[1], cols_from="gen")
    mu1, c1 = _stats(g.sum(0), g.T @ g, g.shape[0], "gen")
    mu2, c2 = _stats(r.sum(0), r.T @ r, r.shape[0], "ref")
    _warn_if_singular(g.shape[0], r.shape[0], g.shape[1])
    return _frechet_from_stats(mu1, c1, mu2, c2)


class FrechetDistance(StreamingMetric):
    """Streaming :func:`frechet_distance`."""

    _state = ("gen_s", "gen_ss", "gen_n", "ref_s", "ref_ss", "ref_n")

    def __init__(self) -> None:
        self.gen_s = self.gen_ss = self.ref_s = self.ref_ss = None
        self.gen_n = self.ref_n = 0

    def update(self, gen: torch.Tensor | None = None, ref: torch.Tensor | None = None) -> None:
        if gen is not None:
            g = as_matrix(gen, "gen", cols=width(self.gen_s, self.ref_s))
            self.gen_s, self.gen_ss = add(self.gen_s, g.sum(0)), add(self.gen_ss, g.T @ g)
            self.gen_n += g.shape[0]
        if ref is not None:
            r = as_matrix(ref, "ref", cols=width(self.gen_s, self.ref_s))
            self.ref_s, self.ref_ss = add(self.ref_s, r.sum(0)), add(self.ref_ss, r.T @ r)
            self.ref_n += r.shape[0]

    def feature_width(self) -> int | None:
        return width(self.gen_s, self.ref_s)

    def compute(self) -> float:
        if self.gen_s is None or self.ref_s is None:
            raise ValueError("FrechetDistance: needs generated and reference features")
        mu1, c1 = _stats(self.gen_s, self.gen_ss, self.gen_n, "gen")
        mu2, c2 = _stats(self.ref_s, self.ref_ss, self.ref_n, "ref")
        _warn_if_singular(self.gen_n, self.ref_n, int(self.gen_s.shape[0]))
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
        per_image=False,
    )
)
