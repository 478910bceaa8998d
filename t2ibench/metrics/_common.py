"""Shared tensor helpers for the metric functions (float64 everywhere: the sums must stay exact).

Input rules, the same for every metric:

- Features are a 2-D ``(n, d)`` matrix (rows = samples). A 1-D tensor is refused rather than read as
  one row (``vendi_score(torch.randn(6))`` would otherwise be 1.0); pass ``x[None]`` for one sample.
  Paired or streamed inputs must agree on ``d``: a ``(n, 1)`` batch never broadcasts.
- NaN or ±inf anywhere is refused, naming the argument and the first bad row. Finite values of any
  magnitude are accepted (1e308 included): norms are taken after scaling each row by its largest
  absolute value, so they neither overflow nor underflow.
- Normalisation is exact and scale-free per row: a row of norm 1e-13 has the same direction, hence
  the same cosines, as the same row at norm 1 (no absolute epsilon). An all-zero row has no direction,
  so the metrics that normalise refuse it (its cosine, and its self-similarity in Vendi, are
  undefined; the vendi-score package counts it as dissimilar to everything, which gives Vendi 1.31
  for [x, x, 0] and values below 1 for q < 1). Raw-feature metrics (Fréchet distance) accept it.
"""

from __future__ import annotations

import numpy as np
import torch


class UndefinedValue(ValueError):
    """The metric has no value for these inputs although they are valid (a covariance of one
    sample, a KID subset of one row): the evaluation records it as missing, with a warning.
    Any other error a metric raises is a defect of its inputs and stops the evaluation."""


def as_matrix(
    x: torch.Tensor, name: str, *, cols: int | None = None, cols_from: str = "earlier features"
) -> torch.Tensor:
    """Return ``x`` as a 2-D float64 CPU tensor (rows = samples), or raise naming the argument.

    ``cols``: the feature size the rows must have (that of ``cols_from``), so mismatched sizes are
    refused instead of broadcast.
    """
    x = torch.as_tensor(x)
    if x.ndim != 2:
        hint = " (for one sample pass x[None], for n scalars x[:, None])" if x.ndim == 1 else ""
        raise ValueError(
            f"{name}: expected a (n, d) feature matrix, got shape {tuple(x.shape)}{hint}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name}: no rows")
    if x.shape[1] == 0:
        raise ValueError(f"{name}: rows have no features (shape {tuple(x.shape)})")
    if cols is not None and x.shape[1] != cols:
        raise ValueError(
            f"{name}: feature size {x.shape[1]} differs from {cols_from} ({cols}); "
            "features must come from the same encoder"
        )
    x = x.detach().to(device="cpu", dtype=torch.float64)
    finite = torch.isfinite(x).all(dim=1)
    if not bool(finite.all()):
        row = int((~finite).nonzero()[0])
        raise ValueError(f"{name}: row {row} contains NaN or infinite values")
    return x


def l2_normalize(x: torch.Tensor, name: str = "features") -> torch.Tensor:
    """Rows of a CPU float64 matrix (as :func:`as_matrix` returns) scaled to unit L2 norm.

    Each row is first divided by its largest absolute value, so the norm cannot overflow (1e308) or
    underflow (1e-200); an all-zero row is refused (see the module docstring). NumPy's einsum row
    norms are ~3× faster than torch's on float64 CPU tensors.
    """
    a = x.numpy()
    peak = np.abs(a).max(axis=1)
    zero = peak == 0
    if zero.any():
        row = int(np.flatnonzero(zero)[0])
        raise ValueError(
            f"{name}: row {row} is all zeros; a feature vector with no direction has no cosine "
            "(an encoder failure, not an image)"
        )
    a = a / peak[:, None]
    norms = np.sqrt(np.einsum("ij,ij->i", a, a))
    return torch.from_numpy(a / norms[:, None])


class StreamingMetric:
    """torchmetrics-style streaming base: ``update`` adds samples, ``compute`` reads the value,
    ``merge`` adds another instance's sufficient statistics (for sharded evaluation).

    ``_options`` names the constructor options that change the value (a convention, an order q):
    shards that differ in one of them are refused, as are shards of different feature sizes and a
    merge of an instance into itself (which would count every sample twice).
    """

    _state: tuple[str, ...] = ()
    _options: tuple[str, ...] = ()

    def check_mergeable(self, other: StreamingMetric) -> None:
        """Raise unless ``other`` is a distinct shard of the same metric with the same options."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        if other is self:
            raise ValueError(
                f"cannot merge a {type(self).__name__} into itself (every sample would count twice)"
            )
        for opt in self._options:
            mine, theirs = getattr(self, opt), getattr(other, opt)
            if mine != theirs:
                raise ValueError(
                    f"cannot merge {type(self).__name__} shards with {opt}={mine!r} and "
                    f"{opt}={theirs!r}"
                )

    def feature_width(self) -> int | None:
        """The feature size of the samples seen so far (``None``: none yet, or not applicable)."""
        return None

    def merge(self, other: StreamingMetric) -> StreamingMetric:
        self.check_mergeable(other)
        mine, theirs = self.feature_width(), other.feature_width()
        if mine is not None and theirs is not None and mine != theirs:
            raise ValueError(
                f"cannot merge {type(self).__name__} shards: feature size {theirs} differs from "
                f"{mine}"
            )
        for key in self._state:
            mine, theirs = getattr(self, key), getattr(other, key)
            if (
                isinstance(mine, torch.Tensor)
                and isinstance(theirs, torch.Tensor)
                and mine.shape != theirs.shape
            ):
                raise ValueError(
                    f"cannot merge {type(self).__name__} shards: {key} has shape "
                    f"{tuple(mine.shape)} here and {tuple(theirs.shape)} in the other "
                    "(features of different sizes)"
                )
        for key in self._state:
            mine, theirs = getattr(self, key), getattr(other, key)
            if mine is None:
                setattr(self, key, theirs.clone() if isinstance(theirs, torch.Tensor) else theirs)
            elif theirs is not None:
                setattr(self, key, mine + theirs)
        return self

    def compute(self) -> float:  # pragma: no cover - every subclass defines it
        raise NotImplementedError


def add(acc: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    return x.clone() if acc is None else acc + x


def width(*sums: torch.Tensor | None) -> int | None:
    """The feature size already held by streaming sums (``None`` before the first update)."""
    for s in sums:
        if s is not None:
            return int(s.shape[-1])
    return None
