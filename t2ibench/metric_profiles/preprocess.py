"""The one preprocessing a metric profile needs beyond the encoders' four resize modes: resize the
short side to ``resize_size``, then crop the central ``size``×``size`` (DINO's evaluation transform,
``Resize(256)`` + ``CenterCrop(224)``, which CustomConcept101's and DreamBench++'s DINO scores use).
Imports torch; :mod:`t2ibench.metric_profiles` itself stays light.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from t2ibench.encoders.base import Encoder, Preprocess, resized_size


@dataclass(frozen=True)
class ResizeThenCrop(Preprocess):
    """``center-crop`` whose resize target (``resize_size``) is larger than its crop (``size``)."""

    resize_size: int = 256

    @property
    def id(self) -> str:
        # A different geometry, so a different feature-cache key.
        return super().id.replace("center-crop-", f"center-crop-from{self.resize_size}-", 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        from t2ibench.images import to_rgb

        x = F.pil_to_tensor(to_rgb(image))
        height, width = x.shape[-2:]
        # torchvision's Resize(resize_size) rule (short side, long side truncated), as in
        # resize_image's center-crop, then the centre crop of ``size``.
        new_w, new_h = resized_size(width, height, "center-crop", self.resize_size)
        interp = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR}
        if (new_w, new_h) != (width, height):
            x = F.resize(
                x, [new_h, new_w], interpolation=interp[self.interpolation], antialias=True
            )
        x = F.center_crop(x, [self.size, self.size]).float().div_(255.0)
        if self.normalize:
            x = (x - torch.tensor(self.mean).view(3, 1, 1)) / torch.tensor(self.std).view(3, 1, 1)
        return x


def set_resize_size(encoder: Encoder, resize_size: int | None) -> Encoder:
    """Give ``encoder`` the resize-then-crop preprocessing (no-op for ``None``)."""
    if resize_size is None or resize_size == encoder.preprocess.size:
        return encoder
    p = encoder.preprocess
    encoder.preprocess = ResizeThenCrop(
        resize=p.resize, size=p.size, mean=p.mean, std=p.std, interpolation=p.interpolation,
        normalize=p.normalize, resize_size=resize_size,
    )  # fmt: skip
    return encoder
