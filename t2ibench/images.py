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
naming the file (never Pillow's ``<_io.BytesIO object at 0x…>``). :func:`check_image` is the cheap
form of the same test that folder scans run before any encoder loads.
"""

from __future__ import annotations

import re
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from t2ibench.errors import DatasetError

BACKGROUND = (255, 255, 255)  # transparent pixels are composited on white
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB version of ``image`` (16-bit scaled, transparency on white); see the module."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in _SIXTEEN_BIT:
        raw = np.asarray(image).astype(np.float64)
        a = np.clip(np.rint(raw / 257.0), 0, 255).astype(np.uint8)
        key = image.info.get("transparency")  # a PNG tRNS grey value: that value is transparent
        if isinstance(key, int):
            a[raw == key] = BACKGROUND[0]
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


_STREAM = re.compile(r"\s*<_io\.\w+ object at 0x[0-9a-fA-F]+>")


def _reason(exc: Exception) -> str:
    """Why Pillow refused a file, in words that name no Python object (the file is named apart)."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image format Pillow reads"
    if isinstance(exc, Image.DecompressionBombError):
        return f"too large to decode safely ({exc})"
    text = _STREAM.sub("", str(exc)).strip() or type(exc).__name__
    return text


def _unreadable(name: str | Path, exc: Exception) -> DatasetError:
    return DatasetError(f"{name}: not a readable image ({_reason(exc)})")


def decode_image(data: bytes, name: str | Path = "<bytes>") -> Image.Image:
    """Decode image file bytes to upright 8-bit RGB, or raise :class:`DatasetError` naming ``name``."""
    try:
        with Image.open(BytesIO(data)) as image:
            image.load()
            upright = ImageOps.exif_transpose(image)
            return to_rgb(upright if upright is not None else image)
    except Exception as exc:  # PIL raises many types for bad files; all mean "not an image"
        raise _unreadable(name, exc) from exc


def _jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG's stream reaches its end-of-image marker: the segments before the first
    start-of-scan are walked by their lengths (an EXIF thumbnail's own end marker sits inside one),
    then an ``FF D9`` must follow — inside entropy-coded data ``FF`` is always followed by ``00`` or
    a restart marker, so that pair is the end. Bytes after it (a phone's motion-photo video, an MPO
    second frame) do not matter. ``False`` also where the walk does not understand the file."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 1 if marker == 0xFF else 2  # fill byte, TEM, RSTn, SOI: no length
            continue
        if marker == 0xD9:
            return False  # an end before any scan: let the decoder judge
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:
            return data.find(b"\xff\xd9", i + 2 + length) != -1
        i += 2 + length
    return False


def _webp_complete(data: bytes) -> bool:
    """Whether a WebP file holds every byte its RIFF header declares."""
    return data[:4] == b"RIFF" and len(data) >= int.from_bytes(data[4:8], "little") + 8


def check_image(path: str | Path) -> None:
    """Raise :class:`DatasetError` naming ``path`` unless it looks decodable — cheaply, since folder
    scans run it on every file before any encoder loads: the header must parse; a PNG's chunks are
    CRC-checked without inflating them (``verify``, catches truncation and flipped bytes); a JPEG
    must reach its end-of-image marker, a WebP hold the bytes its header declares (truncation);
    anything else, or a JPEG / WebP that fails that test, is decoded (at 1/8 scale for JPEG). What
    passes can still fail in :func:`decode_image` only for damage inside compressed data that no
    header or checksum covers; that error names the file too."""
    path = Path(path)
    try:
        data = path.read_bytes()
        with Image.open(BytesIO(data)) as image:
            if image.format == "PNG":
                image.verify()
            elif image.format == "JPEG" and _jpeg_complete(data):
                pass
            elif image.format == "WEBP" and _webp_complete(data):
                pass
            else:
                if image.format == "JPEG":
                    image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
                image.load()
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise DatasetError(f"{path}: cannot read image file ({exc.strerror or exc})") from exc
        raise _unreadable(path, exc) from exc
    except Exception as exc:  # PIL raises many types for bad files; all mean "not an image"
        raise _unreadable(path, exc) from exc


def open_image(path: str | Path) -> Image.Image:
    """Read and decode the image file ``path`` (see :func:`decode_image`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read image file ({exc.strerror or exc})") from exc
    return decode_image(data, path)
