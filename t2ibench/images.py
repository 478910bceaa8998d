"""The one image decoder every reader uses (datasets, the feature cache, training).

``open_image(path)`` / ``decode_image(data, name)`` return an 8-bit RGB ``PIL.Image``:

- EXIF orientation is applied (``ImageOps.exif_transpose``): a phone photo stored sideways with an
  orientation tag is read upright, as every viewer shows it.
- 16-bit greyscale (PNG ``I;16``/``I;16B``, or ``I`` holding 16-bit values) is scaled to 8 bit by
  round(v / 257), so 65535 → 255 and mid-grey stays mid-grey; Pillow's ``convert("RGB")`` would clip
  it (99.6 % of a typical 16-bit photo's pixels at 255). 16-bit RGB PNGs are already reduced to 8 bit
  by Pillow.
- Transparency (RGBA, LA, palette images with a transparent colour) is composited on **white**, as
  a viewer or browser shows a transparent PNG on a page, rather than dropped (which shows whatever
  colour the transparent pixels hold, usually black).
- CMYK, YCbCr, 1-bit, L and P are converted with Pillow's ``convert("RGB")``.

Anything Pillow cannot read (a truncated file, a decompression bomb) raises :class:`DatasetError`
naming the file.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from t2ibench.errors import DatasetError

BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB version of ``image`` (16-bit scaled, transparency on white); see the module."""
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT:
        a = np.asarray(image).astype(np.float64)
        a = np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if image.mode == "F":  # float images: values taken to be in [0, 1]
        a = np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255.0), 0, 255)
        return Image.fromarray(a.astype(np.uint8), "L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(data: bytes, name: str | Path = "<bytes>") -> Image.Image:
    """Decode image file bytes to upright 8-bit RGB, or raise :class:`DatasetError` naming ``name``."""
    try:
        with Image.open(BytesIO(data)) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)
            return to_rgb(upright if upright is not None else image)
    except Exception as exc:  # PIL raises many types for bad files; all mean "not an image"
        raise DatasetError(f"{name}: not a readable image ({type(exc).__name__}: {exc})") from exc


def open_image(path: str | Path) -> Image.Image:
    """Read and decode the image file ``path`` (see :func:`decode_image`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read image file ({exc.strerror or exc})") from exc
    return decode_image(data, path)
