"""Style loss (Johnson et al. 2016) between seed-paired images: base-model preservation.

Gram matrices (:mod:`t2ibench.gram`) are float32 with autocast off; NaN or infinite Gram matrices
are refused here too, naming the argument and layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from t2ibench.gram import gram_matrices  # noqa: F401  (part of the metrics API)
from t2ibench.metrics._common import StreamingMetric


def style_loss(grams_a: Sequence[torch.Tensor], grams_b: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per pair, Σ over layers of ‖G_a − G_b‖²_F; returns a float64 tensor of shape (n,)."""
    if len(grams_a) != len(grams_b) or not grams_a:
        raise ValueError(f"style_loss: {len(grams_a)} vs {len(grams_b)} layers")
    total = None
    for i, (ga, gb) in enumerate(zip(grams_a, grams_b, strict=True)):
        if ga.shape != gb.shape or ga.ndim != 3:
            raise ValueError(f"style_loss: layer {i} shapes {tuple(ga.shape)} vs {tuple(gb.shape)}")
        for name, g in (("grams_a", ga), ("grams_b", gb)):
            if not bool(torch.isfinite(g).all()):
                raise ValueError(f"{name}[{i}]: contains NaN or infinite values")
        diff = ga.to(torch.float64) - gb.to(torch.float64)
        layer = diff.pow(2).sum(dim=(1, 2))
        total = layer if total is None else total + layer
    return total


class StyleLoss(StreamingMetric):
    """Streaming mean of :func:`style_loss` over (base, tuned) pairs."""

    _state = ("total", "n")

    def __init__(self) -> None:
        self.total = 0.0
        self.n = 0

    def update(self, grams_a: Sequence[torch.Tensor], grams_b: Sequence[torch.Tensor]) -> None:
        losses = style_loss(grams_a, grams_b)
        self.total += float(losses.sum())
        self.n += losses.numel()

    def compute(self) -> float:
        if not self.n:
            raise ValueError("StyleLoss: no pairs")
        return self.total / self.n


# --- registration ---------------------------------------------------------------------------------
from t2ibench.metrics.registry import INF, MetricSpec, ReportUse, register_metric  # noqa: E402


def style_loss_mean(grams_a: Sequence[torch.Tensor], grams_b: Sequence[torch.Tensor]) -> float:
    """The metric's value: :func:`style_loss` averaged over the pairs."""
    return float(style_loss(grams_a, grams_b).mean())


register_metric(
    MetricSpec(
        name="style_loss",
        criterion="preservation",
        encoder="vgg19",
        references=("base_images",),
        higher_is_better=False,
        range=(0.0, INF),
        function=style_loss_mean,
        stream=StyleLoss,
        inputs=("grams_a", "grams_b"),
        description="VGG-19 Gram style loss to the base model's image with the same seed",
        prompt_types=("style",),
        report=ReportUse(
            criterion=("style",),
            shap=("style",),
            epochs=("style",),
            pairs=(("style", "image_similarity:train"),),
        ),
    )
)
