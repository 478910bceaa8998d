"""Gram matrices of feature maps: the features of ``gram`` encoders and the input of the style loss.

A light module of its own (torch only), so encoders compute Gram features without importing the
metrics package and the metrics use the same definition.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def gram_matrices(feature_maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, G = F Fᵀ / (C·H·W) for a batch of maps (n, C, H, W) → (n, C, C)."""
    grams = []
    for i, fmap in enumerate(feature_maps):
        if fmap.ndim != 4:
            raise ValueError(f"feature_maps[{i}]: expected (n, C, H, W), got {tuple(fmap.shape)}")
        n, c, h, w = fmap.shape
        f = fmap.reshape(n, c, h * w)
        grams.append(torch.bmm(f, f.transpose(1, 2)) / (c * h * w))
    return grams
