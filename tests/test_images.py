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


# --- issue 22: one decoder, every kind of file a user has ----------------------------------------


def _png16(path: Path, a: np.ndarray) -> Path:
    """A real 16-bit PNG (grey, grey+alpha, RGB or RGBA by the last axis), written chunk by chunk:
    Pillow cannot write 16-bit colour PNGs. ``trns``: a tRNS chunk for grey (one 16-bit value)."""
    import struct
    import zlib

    a = np.asarray(a)
    a = a[..., None] if a.ndim == 2 else a
    h, w, c = a.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )  # fmt: skip
    return path


@pytest.mark.parametrize("channels", [1, 2, 3, 4], ids=["grey", "grey+alpha", "rgb", "rgba"])
def test_issue22_sixteen_bit_png_equals_its_eight_bit_version(tmp_path, channels):
    """A 16-bit PNG decodes to the same 8-bit picture as its 8-bit version, within 1 level
    (opaque alpha), whatever its colour type (issue 22 item 32's root: one decoder)."""
    from t2ibench.images import open_image

    rng = np.random.default_rng(channels)
    colour = rng.integers(0, 256, (12, 10, min(channels, 3) if channels != 2 else 1))
    # the 16-bit samples of each 8-bit level v spread over the whole bin around 257·v
    deep = np.clip(colour * 257 + rng.integers(-128, 128, colour.shape), 0, 65535)
    if channels in (2, 4):
        colour = np.concatenate([colour, np.full((12, 10, 1), 255)], axis=-1)
        deep = np.concatenate([deep, np.full((12, 10, 1), 65535)], axis=-1)
    _png16(tmp_path / "deep.png", deep)
    eight = colour.astype(np.uint8)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
    Image.fromarray(eight if channels != 1 else eight[..., 0], mode).save(tmp_path / "flat.png")
    a = np.asarray(open_image(tmp_path / "deep.png")).astype(int)
    b = np.asarray(open_image(tmp_path / "flat.png")).astype(int)
    assert a.shape == b.shape == (12, 10, 3)
    assert np.abs(a - b).max() <= 1


def test_issue22_sixteen_bit_grey_transparent_key_is_white(tmp_path):
    """A 16-bit grey PNG whose tRNS chunk makes one value transparent: those pixels are white."""
    import struct
    import zlib

    from t2ibench.images import open_image

    a = np.full((4, 4), 0, dtype=np.uint16)
    a[0, 0] = 1000
    path = _png16(tmp_path / "key.png", a)
    data = path.read_bytes()
    trns = struct.pack(">H", 0)
    chunk = struct.pack(">I", 2) + b"tRNS" + trns + struct.pack(">I", zlib.crc32(b"tRNS" + trns))
    at = data.index(b"IDAT") - 4
    path.write_bytes(data[:at] + chunk + data[at:])
    out = np.asarray(open_image(path))
    assert (out[1:, 1:] == 255).all()  # the transparent value 0 → white, not black
    assert out[0, 0, 0] == round(1000 / 257)


def test_issue22_palette_grey_cmyk_and_one_bit_to_rgb(tmp_path):
    from t2ibench.images import open_image

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    # a palette PNG whose index 0 is transparent: white there, the palette colour elsewhere
    pal = Image.fromarray(rgb).quantize(8)
    pal.save(tmp_path / "p.png", transparency=0)
    got = np.asarray(open_image(tmp_path / "p.png"))
    idx = np.asarray(pal)
    colours = np.asarray(pal.getpalette()[:24]).reshape(8, 3)
    assert (got[idx == 0] == 255).all()
    assert (got[idx != 0] == colours[idx[idx != 0]]).all()
    # greyscale JPEG: the grey level in all three channels
    grey = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    got = np.asarray(open_image(tmp_path / "g.png"))
    assert (got == grey[..., None]).all()
    # CMYK JPEG (print workflows, Adobe's inverted storage): close to the RGB it was made from
    smooth = np.asarray(Image.fromarray(rgb).resize((64, 64), Image.Resampling.BILINEAR))
    Image.fromarray(smooth).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    got = np.asarray(open_image(tmp_path / "c.jpg")).astype(int)
    assert got.shape == (64, 64, 3) and np.abs(got - smooth).mean() < 6
    # 1-bit
    Image.fromarray(grey > 127).save(tmp_path / "b.png")
    got = np.asarray(open_image(tmp_path / "b.png"))
    assert set(np.unique(got)) <= {0, 255} and (got[..., 0] == np.where(grey > 127, 255, 0)).all()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_issue22_every_exif_orientation_is_read_upright(tmp_path, orientation):
    from t2ibench.images import open_image

    upright = np.zeros((20, 40, 3), dtype=np.uint8)
    upright[:10, :20] = (255, 0, 0)  # a red top-left quarter marks which way is up
    # what a camera stores for orientation tag k: the inverse of the transform that views it
    stored = {
        1: lambda im: im,
        2: lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        3: lambda im: im.transpose(Image.Transpose.ROTATE_180),
        4: lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
        5: lambda im: im.transpose(Image.Transpose.TRANSPOSE),
        6: lambda im: im.transpose(Image.Transpose.ROTATE_90),
        7: lambda im: im.transpose(Image.Transpose.TRANSVERSE),
        8: lambda im: im.transpose(Image.Transpose.ROTATE_270),
    }[orientation](Image.fromarray(upright))
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "o.png", exif=exif)
    got = np.asarray(open_image(tmp_path / "o.png"))
    assert np.array_equal(got, upright)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.write_bytes(b"not an image at all"),
        lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40),
        lambda p: p.write_bytes(_noise_bytes("PNG")[:300]),
        lambda p: p.write_bytes(_noise_bytes("JPEG")[:300]),
        lambda p: p.write_bytes(_noise_bytes("WEBP")[:300]),
    ],
    ids=["garbage", "png-header-only", "truncated-png", "truncated-jpeg", "truncated-webp"],
)
def test_issue22_item09_bad_files_are_named_without_python_objects(tmp_path, make):
    """Issue 22 item 9: the message names the file only — never ``<_io.BytesIO object at 0x…>`` —
    and the cheap scan-time check refuses what the decoder refuses."""
    from t2ibench.images import check_image, decode_image, open_image

    path = tmp_path / "bad.img"
    make(path)
    for read in (open_image, check_image, lambda p: decode_image(p.read_bytes(), p)):
        with pytest.raises(DatasetError) as exc:
            read(path)
        msg = str(exc.value)
        assert msg.startswith(f"{path}: not a readable image (") and "\n" not in msg
        assert "BytesIO" not in msg and " at 0x" not in msg


def _noise_bytes(fmt: str) -> bytes:
    buf = io.BytesIO()
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(buf, fmt)
    return buf.getvalue()


def test_issue22_check_image_accepts_what_decodes(tmp_path):
    from t2ibench.images import check_image

    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("TIFF", "tiff")):
        (tmp_path / f"ok.{ext}").write_bytes(_noise_bytes(fmt))
        check_image(tmp_path / f"ok.{ext}")
    with pytest.raises(DatasetError, match="cannot read image file"):
        check_image(tmp_path / "missing.png")


def test_issue22_report_thumbnails_use_the_shared_decoder(tmp_path):
    """The report's thumbnail of a phone photo is upright and a transparent PNG's is white."""
    import base64

    from t2ibench.analysis.images import thumbnail_uri

    _sideways_jpeg(tmp_path / "phone.jpg")
    uri = thumbnail_uri(tmp_path / "phone.jpg", px=40)
    thumb = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert thumb.size == (40, 20)
    Image.fromarray(np.zeros((8, 8, 4), dtype=np.uint8), "RGBA").save(tmp_path / "t.png")
    uri = thumbnail_uri(tmp_path / "t.png")
    thumb = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert np.asarray(thumb).min() > 245
    (tmp_path / "junk.png").write_bytes(b"junk")
    assert thumbnail_uri(tmp_path / "junk.png") is None


def test_issue22_item09_jpeg_check_is_structural_and_agrees_with_the_decoder(tmp_path):
    """The scan-time JPEG check reads markers, not pixels: every truncation is refused (as the
    decoder refuses it), while a progressive JPEG with an EXIF thumbnail (whose own end marker
    comes first) and bytes after its end (a motion photo's video) passes and decodes."""
    from t2ibench.images import check_image, open_image

    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:120, 0:160] / 160
    picture = np.clip(np.stack([x, y, x * y], -1) * 220 + rng.normal(0, 9, (120, 160, 3)), 0, 255)
    picture = Image.fromarray(picture.astype(np.uint8))
    thumb = io.BytesIO()
    picture.resize((40, 30)).save(thumb, "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 1
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=90, progressive=True, exif=exif)
    data = buf.getvalue()
    # put a complete JPEG (thumbnail, with its own FF D9) inside an APP segment before the scan
    app = b"\xff\xe2" + (len(thumb.getvalue()) + 2).to_bytes(2, "big") + thumb.getvalue()
    whole = data[:2] + app + data[2:] + b"ftypmp42 motion-photo video bytes"
    (tmp_path / "ok.jpg").write_bytes(whole)
    check_image(tmp_path / "ok.jpg")
    assert open_image(tmp_path / "ok.jpg").size == (160, 120)
    for cut in (0.05, 0.2, 0.5, 0.9, 0.99):
        end = data.index(b"\xff\xd9", len(data) - 4)  # the main image's end marker
        short = (data[:2] + app + data[2:])[: 2 + len(app) + int(cut * end)]
        (tmp_path / "cut.jpg").write_bytes(short)
        for read in (check_image, open_image):
            with pytest.raises(DatasetError, match="not a readable image"):
                read(tmp_path / "cut.jpg")
