"""Issue 13 item 7: the one image decoder (EXIF orientation, 16-bit, transparency on white)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from t2ibench.encoders import create_encoder, encode_images_cached
from t2ibench.errors import DatasetError


def _sideways_jpeg(path: Path) -> np.ndarray:
    """A 40×20 (w×h) picture stored as 20×40 with EXIF orientation 6 (rotate 90° CW to view)."""
    upright = np.zeros((20, 40, 3), dtype=np.uint8)
    upright[:, :20] = (255, 0, 0)  # left half red, right half blue
    upright[:, 20:] = (0, 0, 255)
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # 20 wide, 40 high
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, exif=exif, quality=95)
    return upright


def test_item07_exif_orientation_applied(tmp_path):
    from t2ibench.images import open_image

    upright = _sideways_jpeg(tmp_path / "phone.jpg")
    im = open_image(tmp_path / "phone.jpg")
    assert im.size == (40, 20)
    a = np.asarray(im).astype(int)
    assert a[10, 5, 0] > 200 and a[10, 5, 2] < 60  # red on the left, as viewers show it
    assert a[10, 35, 2] > 200 and a[10, 35, 0] < 60
    assert np.abs(a - upright).mean() < 8


def test_item07_sixteen_bit_png_scaled_not_clipped(tmp_path):
    from t2ibench.images import open_image

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")  # a real 16-bit greyscale PNG
    with Image.open(tmp_path / "deep.png") as raw:
        assert raw.mode.startswith("I")
    a = np.asarray(open_image(tmp_path / "deep.png"))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert np.array_equal(a[..., 0], expected)
    assert (a == 255).mean() < 0.01  # Pillow's convert("RGB") puts ~99.6 % at 255


def test_item07_rgba_composited_on_white(tmp_path):
    from t2ibench.images import open_image, to_rgb

    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # fully transparent black…
    rgba[:4, :, :] = (0, 128, 0, 255)  # …except an opaque green top half
    rgba[4:6, :, :] = (0, 0, 0, 128)  # and half-transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    a = np.asarray(open_image(tmp_path / "t.png")).astype(int)
    assert (a[0, 0] == (0, 128, 0)).all()
    assert (a[7, 7] == (255, 255, 255)).all()
    assert np.abs(a[5, 0] - 127).max() <= 1
    la = Image.fromarray(rgba[..., [1, 3]], "LA")
    assert np.asarray(to_rgb(la))[7, 7].tolist() == [255, 255, 255]


def test_item07_every_reader_uses_the_shared_decoder(tmp_path):
    """The feature cache, the encoders' preprocessing and training all see the upright picture
    and white where the PNG is transparent."""
    upright = _sideways_jpeg(tmp_path / "phone.jpg")
    Image.fromarray(np.zeros((8, 8, 4), dtype=np.uint8), "RGBA").save(tmp_path / "t.png")
    enc = create_encoder("dinov2-l", tiny=True, cache_dir=tmp_path / "tiny")
    from_files = encode_images_cached(enc, [tmp_path / "phone.jpg", tmp_path / "t.png"], None)
    with Image.open(tmp_path / "phone.jpg") as stored:
        decoded = np.asarray(stored.transpose(Image.Transpose.ROTATE_270).convert("RGB"))
    assert np.abs(decoded.astype(int) - upright).mean() < 8  # the pixels the decoder must give
    expected = enc.encode_images([Image.fromarray(decoded), Image.new("RGB", (8, 8), "white")])
    torch.testing.assert_close(from_files, expected, rtol=0, atol=1e-6)
    # in-memory RGBA passed straight to an encoder is composited the same way
    rgba = Image.open(tmp_path / "t.png")
    torch.testing.assert_close(enc.encode_images([rgba])[0], expected[1], rtol=0, atol=1e-6)
    from t2ibench.adapters.training import load_image

    x = load_image(tmp_path / "phone.jpg", (40, 20))  # training sees the upright image
    assert tuple(x.shape) == (3, 20, 40) and float(x[0, 10, 5]) > 0.6


def test_item07_unreadable_bytes_name_the_file():
    from t2ibench.images import decode_image

    with pytest.raises(DatasetError, match="broken.png: not a readable image"):
        decode_image(b"\x89PNG not really", "broken.png")
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, "PNG")
    assert decode_image(buf.getvalue()).size == (4, 4)
