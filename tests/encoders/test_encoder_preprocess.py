"""Resize geometry of the four modes and the normalisation, independent of any model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from t2ibench.encoders import RESIZE_MODES, Preprocess, resize_image
from t2ibench.encoders.base import IMAGENET_MEAN, IMAGENET_STD
from t2ibench.errors import ConfigError


def solid(width: int, height: int, rgb: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (width, height), rgb)


def striped(width: int, height: int, stripe: int) -> Image.Image:
    """White image whose leftmost ``stripe`` columns are pure green."""
    a = np.full((height, width, 3), 255, dtype=np.uint8)
    a[:, :stripe] = (0, 255, 0)
    return Image.fromarray(a)


def test_modes_are_the_four_documented() -> None:
    assert RESIZE_MODES == ("scale", "letterbox", "center-crop", "stretch")


@pytest.mark.parametrize(("w", "h"), [(80, 48), (48, 80)])
def test_letterbox_pads_black_around_the_centred_image(w: int, h: int) -> None:
    x = resize_image(solid(w, h, (255, 255, 255)), "letterbox", 224)
    assert x.shape == (3, 224, 224) and x.dtype == torch.uint8
    short = round(min(w, h) * 224 / max(w, h))  # 134
    before = (224 - short) // 2
    # the padded axis is the image's short axis: rows for landscape, columns for portrait
    profile = x[0, :, 112] if w > h else x[0, 112, :]
    assert (profile[:before] == 0).all()
    assert (profile[before + short :] == 0).all()
    assert (profile[before + 1 : before + short - 1] == 255).all()
    other = x[0, 112, :] if w > h else x[0, :, 112]
    assert (other == 255).all()  # the long axis fills the square, no padding


def test_center_crop_removes_the_borders() -> None:
    # 10 of 80 columns green; short side 48→224 makes the width 373, and the crop drops 74 px a side
    x = resize_image(striped(80, 48, 10), "center-crop", 224)
    assert x.shape == (3, 224, 224)
    assert (x[0] > 250).all()  # no green (R = 0) pixel survives the crop
    assert x.min() > 0  # and no black padding


def test_stretch_keeps_the_whole_image_distorted() -> None:
    x = resize_image(striped(80, 48, 10), "stretch", 224)
    assert x.shape == (3, 224, 224)
    # the stripe is 1/8 of the width → 28 of 224 columns (antialiasing blurs the edge column)
    assert (x[0, :, :27] < 5).all() and (x[0, :, 29:] > 250).all()


@pytest.mark.parametrize(("w", "h", "out"), [(80, 48, (224, 373)), (48, 80, (373, 224))])
def test_scale_sets_the_short_side_and_keeps_the_aspect(w: int, h: int, out: tuple) -> None:
    x = resize_image(striped(w, h, 10), "scale", 224)
    assert tuple(x.shape[1:]) == out
    # the 10-column stripe becomes ~46 columns wide in both cases: nothing was cropped
    assert (x[0, :, :40] < 5).all() and (x[0, :, 50:] > 250).all()


def test_non_rgb_inputs_become_three_channels() -> None:
    gray = Image.new("L", (30, 20), 128)
    rgba = Image.new("RGBA", (30, 20), (10, 20, 30, 0))
    assert resize_image(gray, "stretch", 32).shape == (3, 32, 32)
    # transparency is composited on white (issue 13 item 7), not dropped
    assert resize_image(rgba, "stretch", 32)[:, 0, 0].tolist() == [255, 255, 255]
    opaque = Image.new("RGBA", (30, 20), (10, 20, 30, 255))
    assert resize_image(opaque, "stretch", 32)[:, 0, 0].tolist() == [10, 20, 30]


def test_normalisation_maps_black_padding_to_minus_mean_over_std() -> None:
    pre = Preprocess("letterbox", 224, IMAGENET_MEAN, IMAGENET_STD)
    x = pre(solid(80, 48, (255, 255, 255)))
    assert x.dtype == torch.float32
    expected_black = (-torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)).view(3)
    expected_white = ((1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)).view(3)
    torch.testing.assert_close(x[:, 0, 0], expected_black)
    torch.testing.assert_close(x[:, 112, 112], expected_white)
    unit = Preprocess("letterbox", 224, IMAGENET_MEAN, IMAGENET_STD, normalize=False)
    assert unit(solid(80, 48, (255, 255, 255))).max() == 1.0


def test_preprocess_id_names_every_setting() -> None:
    base = Preprocess("letterbox", 224, IMAGENET_MEAN, IMAGENET_STD)
    variants = [
        Preprocess("stretch", 224, IMAGENET_MEAN, IMAGENET_STD),
        Preprocess("letterbox", 256, IMAGENET_MEAN, IMAGENET_STD),
        Preprocess("letterbox", 224, (0.5, 0.5, 0.5), IMAGENET_STD),
        Preprocess("letterbox", 224, IMAGENET_MEAN, IMAGENET_STD, interpolation="bilinear"),
        Preprocess("letterbox", 224, IMAGENET_MEAN, IMAGENET_STD, normalize=False),
    ]
    ids = {base.id, *(v.id for v in variants)}
    assert len(ids) == 1 + len(variants)
    assert "letterbox" in base.id and "224" in base.id and "bicubic" in base.id


def test_unknown_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="pad"):
        Preprocess("pad", 224, IMAGENET_MEAN, IMAGENET_STD)
    with pytest.raises(ConfigError, match="resize"):
        resize_image(solid(8, 8, (0, 0, 0)), "squash", 224)


def test_item15_convnext_v2_is_the_papers_code_checkpoint(tmp_path) -> None:
    """Issue 22 item 15: ``convnextv2-l`` is timm's default tag for ``convnextv2_large`` — what the
    paper's code loaded (``timm.create_model("convnextv2_large", pretrained=True)``) — i.e.
    ``fcmae_ft_in22k_in1k``, a 224 px fine-tune, not ``..._384``. Checked on random weights saved
    and re-loaded through the real loader; no download."""
    import timm

    from t2ibench.encoders import create_encoder, get_encoder_spec
    from t2ibench.encoders.convnext import DEFAULT_WEIGHTS, TINY_ARGS

    assert DEFAULT_WEIGHTS == "convnextv2_large.fcmae_ft_in22k_in1k"
    assert get_encoder_spec("convnextv2-l").default_weights == DEFAULT_WEIGHTS
    # timm resolves the bare architecture name to this tag (its first, default one)
    bare = timm.create_model("convnextv2_large", pretrained=False, **TINY_ARGS)
    assert f"convnextv2_large.{bare.pretrained_cfg['tag']}" == DEFAULT_WEIGHTS
    cfg = bare.pretrained_cfg
    assert tuple(cfg["input_size"]) == (3, 224, 224)  # trained at the size the metrics use
    spec = get_encoder_spec("convnextv2-l")
    assert (spec.mean, spec.std, spec.interpolation) == (
        tuple(cfg["mean"]), tuple(cfg["std"]), cfg["interpolation"]
    )  # fmt: skip
    # the tiny stand-in is built from that tag and loads back through local-dir: with its config
    enc = create_encoder("convnextv2-l", tiny=True, cache_dir=tmp_path)
    assert enc.model.pretrained_cfg.get("tag") == "fcmae_ft_in22k_in1k"
    assert enc.preprocess.size == 224 and enc.preprocess.interpolation == "bicubic"
    x = enc.encode_images([Image.new("RGB", (64, 48), "gray")])
    assert x.shape[0] == 1 and torch.isfinite(x).all()
