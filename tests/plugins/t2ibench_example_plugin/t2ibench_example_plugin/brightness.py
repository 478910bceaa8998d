"""Brightness: the mean luminance of the generated images, from their pixels (no encoder)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from t2ibench.metrics import (
    EvalContext,
    InputProvider,
    MetricSpec,
    ReportUse,
    register_input_provider,
    register_metric,
)

LUMA = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)  # ITU-R BT.601
SIDE = 32  # luminance is a mean: a small copy of each image gives the same value


def brightness(pixels: torch.Tensor) -> float:
    """Mean luma in [0, 1] of images given as (n, 3, H, W) values in [0, 1]."""
    if pixels.ndim != 4 or pixels.shape[1] != 3 or pixels.shape[0] == 0:
        raise ValueError(f"pixels: expected (n, 3, H, W), got {tuple(pixels.shape)}")
    return float(torch.einsum("nchw,c->nhw", pixels.double(), LUMA).mean())


class Brightness:
    """Streaming :func:`brightness` (update / compute / merge)."""

    def __init__(self) -> None:
        self.total, self.n = 0.0, 0

    def update(self, pixels: torch.Tensor) -> None:
        self.total += brightness(pixels) * pixels.shape[0]
        self.n += pixels.shape[0]

    def compute(self) -> float:
        if not self.n:
            raise ValueError("Brightness: no images")
        return self.total / self.n

    def merge(self, other: Brightness) -> Brightness:
        self.total, self.n = self.total + other.total, self.n + other.n
        return self


def load_pixels(ctx: EvalContext) -> torch.Tensor:
    """The new input kind: the group's generated images as (n, 3, SIDE, SIDE) floats in [0, 1]."""

    def load() -> torch.Tensor:
        arrays = []
        for path in ctx.image_paths:
            with Image.open(path) as im:
                small = im.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BOX)
            arrays.append(np.asarray(small, dtype=np.float32) / 255.0)
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)

    return ctx.once("pixels", load)


register_input_provider(
    InputProvider("pixels", load_pixels, description="generated images, 32×32 RGB in [0, 1]")
)
register_metric(
    MetricSpec(
        name="brightness",
        criterion="exposure",
        encoder=None,
        references=(),
        higher_is_better=True,
        range=(0.0, 1.0),
        function=brightness,
        stream=Brightness,
        inputs=("pixels",),
        description="mean BT.601 luma of the generated images",
        report=ReportUse(criterion=("closeup",), shap=("closeup",), epochs=("closeup",)),
    )
)
