"""Drift from the base model: mean over images of 1 − cos(fine-tuned image, base image), each image
paired with the base model's image of the same prompt and seed (the ``peft-drift`` metric profile).

0 = the fine-tuned model draws what the base model drew; it grows as the adapter changes the
output for the same noise. Streaming keeps the sum of 1 − cos and the count.

For unit vectors 1 − cos(g, b) = ½‖g − b‖², computed that way: identical images give exactly 0
(``1 − g·b`` left rounding noise of ~1e-16, negative as often as not, for the base model against
itself) and small drifts keep their relative precision.
"""

from __future__ import annotations

import torch

from t2ibench.metrics._common import StreamingMetric, as_matrix, l2_normalize


def _pair_drift(gen: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    g, b = l2_normalize(as_matrix(gen, "gen")), l2_normalize(as_matrix(base, "base"))
    if g.shape != b.shape:
        raise ValueError(
            f"drift: gen {tuple(g.shape)} and base {tuple(b.shape)} must be paired row by row"
        )
    return 0.5 * ((g - b) ** 2).sum(dim=1)


def drift(gen: torch.Tensor, base: torch.Tensor) -> float:
    """Mean over rows of 1 − cos(gen_i, base_i)."""
    return float(_pair_drift(gen, base).mean())


class Drift(StreamingMetric):
    """Streaming :func:`drift`."""

    _state = ("total", "n")

    def __init__(self) -> None:
        self.total = 0.0
        self.n = 0

    def update(self, gen: torch.Tensor, base: torch.Tensor) -> None:
        d = _pair_drift(gen, base)
        self.total += float(d.sum())
        self.n += d.numel()

    def compute(self) -> float:
        if not self.n:
            raise ValueError("Drift: no pairs")
        return self.total / self.n


# --- registration ---------------------------------------------------------------------------------
from t2ibench.metrics.registry import MetricSpec, register_metric  # noqa: E402

register_metric(
    MetricSpec(
        name="drift",
        criterion="drift",
        encoder="dinov2-b",
        references=("base_images",),
        higher_is_better=False,
        range=(0.0, 2.0),
        function=drift,
        stream=Drift,
        inputs=("gen", "base"),
        description="1 − cosine to the base model's image of the same prompt and seed",
    )
)
