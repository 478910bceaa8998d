"""Helpers shared by the encoder tests (a uniquely named module: ``conftest`` is ambiguous)."""

from __future__ import annotations

import numpy as np
from PIL import Image

IMAGE_ENCODERS = ("dinov2-l", "clip-l14", "convnextv2-l", "vgg19")
# Feature shape of each tiny variant: (d,) or the Gram sizes C of the five VGG layers.
TINY_DIMS = {"dinov2-l": 32, "clip-l14": 16, "convnextv2-l": 64, "vgg19": (4, 8, 8, 16, 16)}


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
