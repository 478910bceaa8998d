"""Gram matrices of feature maps: the features of ``gram`` encoders and the input of the style loss.

A light module of its own (torch only), so encoders compute Gram features without importing the
metrics package and the metrics use the same definition.

Grams are computed in float32 (or float64 if asked) with autocast disabled, whatever dtype the
feature maps come in: a Gram sums H·W products, which in bf16 loses the small differences the style
loss measures and in fp16 overflows to inf. NaN or infinite maps are refused, naming the layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

GRAM_DTYPES = (torch.float32, torch.float64)


def gram_matrices(
    feature_maps: Sequence[torch.Tensor], dtype: torch.dtype = torch.float32
) -> list[torch.Tensor]:
    """Per layer, G = F Fᵀ / (C·H·W) for a batch of maps (n, C, H, W) → (n, C, C), in ``dtype``
    (float32 or float64) with autocast disabled."""
    if dtype not in GRAM_DTYPES:
        raise ValueError(f"gram_matrices: dtype must be float32 or float64, got {dtype}")
    grams = []
    for i, fmap in enumerate(feature_maps):
        if fmap.ndim != 4:
            raise ValueError(f"feature_maps[{i}]: expected (n, C, H, W), got {tuple(fmap.shape)}")
        if not bool(torch.isfinite(fmap).all()):
            raise ValueError(f"feature_maps[{i}]: contains NaN or infinite values")
        n, c, h, w = fmap.shape
        with torch.autocast(fmap.device.type, enabled=False):
            f = fmap.to(dtype).reshape(n, c, h * w)
            gram = torch.bmm(f, f.transpose(1, 2)) / (c * h * w)
        if not bool(torch.isfinite(gram).all()):
            raise ValueError(f"feature_maps[{i}]: Gram matrix overflows {dtype}")
        grams.append(gram)
    return grams
