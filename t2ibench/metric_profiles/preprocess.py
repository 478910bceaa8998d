"""The preprocessing a metric profile needs beyond the encoders' four resize modes: a centre crop
with its own resize target and its own rule for where the centre is.

- ``resize_size``: the short side becomes ``resize_size`` (torchvision's ``Resize(n)`` size rule,
  long side truncated), then the central ``size``×``size`` is kept — DINO's evaluation transform,
  ``Resize(256)`` + ``CenterCrop(224)`` (facebookresearch/dino, eval_knn.py,
  ``extract_feature_pipeline``), which CustomConcept101's, DreamBench++'s and DreamBooth's DINO
  scores use.
- ``crop_offset``: where the crop starts when the margin ``d = side − size`` is odd.
  ``"round"`` = torchvision's ``CenterCrop``: ``int(round(d / 2))`` (Python rounds halves to
  even, so d = 3 gives 2, d = 5 gives 2); ``"floor"`` = Hugging Face transformers' image
  processors: ``d // 2`` (transformers 4.35.2, ``image_transforms.center_crop``, lines 462 and 465:
  ``top = (orig_height - crop_height) // 2``, ``left = (orig_width - crop_width) // 2``; the
  torchvision backend of transformers 5 takes ``int(d / 2.0)``, the same for d ≥ 0). The two
  differ by one pixel exactly when d ≡ 3 (mod 4): about a quarter of non-square images.

Resizing is the encoders' own (``torchvision`` v2 on uint8 tensors, antialiased); only the crop
placement changes. Imports torch; :mod:`t2ibench.metric_profiles` itself stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from t2ibench.encoders.base import Encoder, Preprocess, resized_size

CROP_OFFSETS = ("round", "floor")


def crop_start(side: int, crop: int, rule: str) -> int:
    """First kept row/column of a centred ``crop`` out of ``side`` pixels under ``rule``."""
    margin = side - crop
    if margin < 0:
        raise ValueError(f"crop {crop} larger than the image side {side}")
    if rule == "round":
        return int(round(margin / 2.0))  # torchvision.transforms.functional.center_crop
    if rule == "floor":
        return margin // 2  # transformers.image_transforms.center_crop
    raise ValueError(f"crop_offset {rule!r} is not one of {', '.join(CROP_OFFSETS)}")


@dataclass(frozen=True)
class ResizeThenCrop(Preprocess):
    """``center-crop`` whose resize target (``resize_size``, default ``size``) may be larger than
    its crop (``size``) and whose crop is placed by ``crop_offset``."""

    resize_size: int | None = None
    crop_offset: str = "round"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.crop_offset not in CROP_OFFSETS:
            raise ValueError(f"crop_offset {self.crop_offset!r} not in {CROP_OFFSETS}")

    @property
    def short_side(self) -> int:
        return self.resize_size or self.size

    @property
    def id(self) -> str:
        # A different geometry, so a different feature-cache key (the "round" 256 → 224 crop keeps
        # the key it always had).
        base = super().id
        if self.short_side != self.size:
            base = base.replace("center-crop-", f"center-crop-from{self.short_side}-", 1)
        if self.crop_offset != "round":
            base = base.replace("center-crop-", f"center-crop-{self.crop_offset}-", 1)
        return base

    def __call__(self, image: Image.Image) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        from t2ibench.images import to_rgb

        x = F.pil_to_tensor(to_rgb(image))
        height, width = x.shape[-2:]
        new_w, new_h = resized_size(width, height, "center-crop", self.short_side)
        interp = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR}
        if (new_w, new_h) != (width, height):
            x = F.resize(
                x, [new_h, new_w], interpolation=interp[self.interpolation], antialias=True
            )
        top = crop_start(new_h, self.size, self.crop_offset)
        left = crop_start(new_w, self.size, self.crop_offset)
        x = x[:, top : top + self.size, left : left + self.size].float().div_(255.0)
        if self.normalize:
            x = (x - torch.tensor(self.mean).view(3, 1, 1)) / torch.tensor(self.std).view(3, 1, 1)
        return x


def set_resize_size(
    encoder: Encoder, resize_size: int | None, crop_offset: str = "round"
) -> Encoder:
    """Give ``encoder`` the profile's centre crop: resize the short side to ``resize_size``
    (``None``: the crop size) and place the crop by ``crop_offset``. The encoder's plain
    ``center-crop`` already is (crop size, ``"round"``), so that leaves it unchanged."""
    p = encoder.preprocess
    if (resize_size is None or resize_size == p.size) and crop_offset == "round":
        if isinstance(p, ResizeThenCrop):  # back to the plain centre crop
            encoder.preprocess = Preprocess(
                resize=p.resize, size=p.size, mean=p.mean, std=p.std,
                interpolation=p.interpolation, normalize=p.normalize,
            )  # fmt: skip
        return encoder
    encoder.preprocess = ResizeThenCrop(
        resize=p.resize, size=p.size, mean=p.mean, std=p.std, interpolation=p.interpolation,
        normalize=p.normalize, resize_size=resize_size, crop_offset=crop_offset,
    )  # fmt: skip
    return encoder


def set_measure_preprocess(encoder: Encoder, measure: Any) -> Encoder:
    """``encoder`` with the preprocessing a profile :class:`~t2ibench.metric_profiles.Measure`
    asks for (``resize_size`` and ``crop_offset``): the one call every evaluation path makes."""
    return set_resize_size(encoder, measure.resize_size, measure.crop_offset)
