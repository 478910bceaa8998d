"""Kernel Inception Distance (KID, Bińkowski et al. 2018) between two feature sets, any encoder.

KID = unbiased MMD² with the polynomial kernel k(x, y) = (γ xᵀy + c)^d (d = 3, γ = 1/dim, c = 1),
averaged over random subsets: each subset draws ``subset_size`` rows of the reference set and of
the generated set without replacement; the value is the mean over ``subsets`` subsets and the
spread their population std — exactly as torchmetrics' ``KernelInceptionDistance`` reports it
(``kid_mean``, ``kid_std``), including the order of the draws (reference, then generated, per
subset). The draws come from a ``torch.Generator`` seeded with ``seed``, so the same features and
seed always give the same value. Unlike Fréchet distance it is unbiased in the sample size and can
be slightly negative. A ``subset_size`` larger than either set is reduced to the smaller set's size
(torchmetrics raises instead); each subset needs at least 2 rows.

The streaming class keeps every feature row (MMD has no fixed-size sufficient statistic).
"""

from __future__ import annotations

import torch

from t2ibench.metrics._common import StreamingMetric, UndefinedValue, as_matrix

DEFAULT_SUBSETS = 100
DEFAULT_SUBSET_SIZE = 1000


def polynomial_kernel(
    x: torch.Tensor, y: torch.Tensor, degree: int = 3, gamma: float | None = None, coef: float = 1.0
) -> torch.Tensor:
    """(γ x yᵀ + c)^d; γ = 1/dim when None."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef) ** degree


def polynomial_mmd(
    ref: torch.Tensor,
    gen: torch.Tensor,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
) -> torch.Tensor:
    """Unbiased MMD² of two equal-sized samples (diagonals of the within-set kernels dropped)."""
    m = ref.shape[0]
    k_rr = polynomial_kernel(ref, ref, degree, gamma, coef)
    k_gg = polynomial_kernel(gen, gen, degree, gamma, coef)
    k_rg = polynomial_kernel(ref, gen, degree, gamma, coef)
    within = (k_rr.sum() - k_rr.diagonal().sum()) + (k_gg.sum() - k_gg.diagonal().sum())
    return within / (m * (m - 1)) - 2 * k_rg.sum() / m**2


def kid_subset_values(
    gen: torch.Tensor,
    ref: torch.Tensor,
    *,
    subsets: int = DEFAULT_SUBSETS,
    subset_size: int = DEFAULT_SUBSET_SIZE,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
) -> torch.Tensor:
    """The MMD² of every subset (float64, shape ``(subsets,)``)."""
    g, r = as_matrix(gen, "gen"), as_matrix(ref, "ref")
    if g.shape[1] != r.shape[1]:
        raise ValueError(f"kid: gen has {g.shape[1]} feature dims, ref {r.shape[1]}")
    if subsets < 1 or subset_size < 2 or degree < 1 or coef <= 0:
        raise ValueError(
            f"kid: needs subsets ≥ 1, subset_size ≥ 2, degree ≥ 1, coef > 0 (got {subsets}, "
            f"{subset_size}, {degree}, {coef})"
        )
    size = min(subset_size, g.shape[0], r.shape[0])
    if size < 2:
        raise UndefinedValue(
            f"kid: needs at least 2 samples per side, got {g.shape[0]} gen and {r.shape[0]} ref"
        )
    rng = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        r_idx = torch.randperm(r.shape[0], generator=rng)[:size]
        g_idx = torch.randperm(g.shape[0], generator=rng)[:size]
        values.append(polynomial_mmd(r[r_idx], g[g_idx], degree, gamma, coef))
    return torch.stack(values)


def kernel_inception_distance_with_std(gen, ref, **options) -> tuple[float, float]:
    """(mean, population std) over the subsets, as torchmetrics' ``(kid_mean, kid_std)``."""
    v = kid_subset_values(gen, ref, **options)
    return float(v.mean()), float(v.std(unbiased=False))


def kernel_inception_distance(gen: torch.Tensor, ref: torch.Tensor, **options) -> float:
    """KID between ``gen`` and ``ref`` (raw features): the mean over subsets. Options: ``subsets``,
    ``subset_size``, ``degree``, ``gamma``, ``coef``, ``seed`` (see :func:`kid_subset_values`)."""
    return kernel_inception_distance_with_std(gen, ref, **options)[0]


class KernelInceptionDistance(StreamingMetric):
    """Streaming :func:`kernel_inception_distance`: keeps the rows; ``merge`` concatenates them."""

    _state = ("gen_rows", "ref_rows")
    _options = ("options",)  # subsets, subset size, kernel and seed change the value

    def __init__(self, **options) -> None:
        self.options = options
        self.gen_rows: list[torch.Tensor] = []
        self.ref_rows: list[torch.Tensor] = []

    def merge(self, other: StreamingMetric) -> StreamingMetric:
        self.check_mergeable(other)
        mine, theirs = self.feature_width(), other.feature_width()
        if mine is not None and theirs is not None and mine != theirs:
            raise ValueError(
                f"cannot merge KernelInceptionDistance shards: feature size {theirs} differs "
                f"from {mine}"
            )
        self.gen_rows = [*self.gen_rows, *other.gen_rows]
        self.ref_rows = [*self.ref_rows, *other.ref_rows]
        return self

    def feature_width(self) -> int | None:
        rows = self.gen_rows or self.ref_rows
        return int(rows[0].shape[1]) if rows else None

    def update(self, gen: torch.Tensor | None = None, ref: torch.Tensor | None = None) -> None:
        # Every row, generated or reference, must have the width of the first one seen: refused
        # here, in one line, rather than as a matmul error at compute().
        for name, x, rows in (("gen", gen, self.gen_rows), ("ref", ref, self.ref_rows)):
            if x is not None:
                rows.append(as_matrix(x, name, cols=self.feature_width()))

    def compute_with_std(self) -> tuple[float, float]:
        if not self.gen_rows or not self.ref_rows:
            raise ValueError("KernelInceptionDistance: needs generated and reference features")
        return kernel_inception_distance_with_std(
            torch.cat(self.gen_rows), torch.cat(self.ref_rows), **self.options
        )

    def compute(self) -> float:
        return self.compute_with_std()[0]


# --- registration ---------------------------------------------------------------------------------
from t2ibench.metrics.registry import INF, MetricSpec, register_metric  # noqa: E402

register_metric(
    MetricSpec(
        name="kid",
        criterion="fidelity",
        encoder="dinov2-l",
        references=("dataset_images",),
        higher_is_better=False,
        range=(-INF, INF),  # unbiased: can dip below 0 when the sets match
        function=kernel_inception_distance,
        stream=KernelInceptionDistance,
        inputs=("gen", "ref"),
        description="Kernel Inception Distance (polynomial-kernel MMD², subset mean) to dataset",
        per_image=False,
    )
)
