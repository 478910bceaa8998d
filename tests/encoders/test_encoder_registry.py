"""Registry contents, third-party registration, lazy heavy imports, and ``t2ibench encoders list``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from encoders_testutil import noise_image

from t2ibench.encoders import (
    ENCODERS,
    Encoder,
    EncoderSpec,
    Preprocess,
    create_encoder,
    get_encoder_spec,
    list_encoders,
    register_encoder,
)
from t2ibench.encoders.base import ENCODER_KINDS
from t2ibench.registry import UnknownNameError

BUILT_INS = {"dinov2-l", "clip-l14", "convnextv2-l", "vgg19", "liqe", "maniqa"}


def test_built_ins_and_their_specs() -> None:
    assert BUILT_INS <= set(list_encoders())
    for name in BUILT_INS:
        spec = get_encoder_spec(name)
        assert spec.name == name and spec.kind in ENCODER_KINDS
        for attr in ("default_weights", "feature_desc", "description"):
            assert isinstance(getattr(spec, attr), str) and getattr(spec, attr)
    assert get_encoder_spec("dinov2-l").default_weights == "facebook/dinov2-large"
    assert get_encoder_spec("clip-l14").kind == "image-text"
    assert "datacomp_xl_s13b_b90k" in get_encoder_spec("clip-l14").default_weights
    assert (
        get_encoder_spec("convnextv2-l").default_weights == "convnextv2_large.fcmae_ft_in22k_in1k"
    )
    assert get_encoder_spec("vgg19").kind == "gram"
    assert list_encoders("*-l") == ["convnextv2-l", "dinov2-l"]


def test_normalisation_matches_each_real_model() -> None:
    import open_clip

    clip_cfg = open_clip.get_pretrained_cfg("ViT-L-14", "datacomp_xl_s13b_b90k")
    spec = get_encoder_spec("clip-l14")
    mean = clip_cfg.get("mean") or open_clip.OPENAI_DATASET_MEAN
    std = clip_cfg.get("std") or open_clip.OPENAI_DATASET_STD
    assert spec.mean == tuple(mean) and spec.std == tuple(std)
    from timm.models import get_pretrained_cfg

    tcfg = get_pretrained_cfg("convnextv2_large.fcmae_ft_in22k_in1k")
    spec = get_encoder_spec("convnextv2-l")
    assert (
        spec.mean == tcfg.mean and spec.std == tcfg.std and spec.interpolation == tcfg.interpolation
    )
    from torchvision.models import VGG19_Weights

    tv = VGG19_Weights.IMAGENET1K_V1.transforms()
    spec = get_encoder_spec("vgg19")
    assert list(spec.mean) == list(tv.mean) and list(spec.std) == list(tv.std)
    assert spec.interpolation == tv.interpolation.value


def test_real_feature_sizes_in_the_descriptions() -> None:
    import open_clip

    assert (
        str(open_clip.get_model_config("ViT-L-14")["embed_dim"])
        in get_encoder_spec("clip-l14").feature_desc
    )


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="dinov2-l"):
        get_encoder_spec("dinov2-large")


def test_third_party_encoder_registers_and_loads() -> None:
    class MeanColour(Encoder):
        kind = "image"

        def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
            return pixels.mean(dim=(2, 3))

    def load(spec, weights, tiny, preprocess, device, dtype, batch_size, cache_dir):
        return MeanColour(
            spec.name, torch.nn.Identity(), "none", preprocess, device, dtype, batch_size
        )

    spec = EncoderSpec(
        name="test-mean-colour",
        kind="image",
        default_weights="-",
        feature_desc="(n, 3)",
        description="mean colour",
        load=load,
    )
    assert register_encoder(spec) is spec
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_encoder(EncoderSpec(**{**spec.__dict__, "description": "other"}))
        enc = create_encoder("test-mean-colour", resize="stretch", size=8)
        assert isinstance(enc.preprocess, Preprocess) and enc.preprocess.size == 8
        assert enc.encode_images([noise_image(20, 10)]).shape == (1, 3)
    finally:
        ENCODERS._items.pop("test-mean-colour", None)  # keep the global registry clean


def test_import_does_not_load_model_libraries() -> None:
    code = (
        "import sys, json; import t2ibench.encoders; "
        "print(json.dumps([m for m in ('transformers', 'open_clip', 'timm', 'pyiqa', 'diffusers') "
        "if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_cli_encoders_list() -> None:
    from typer.testing import CliRunner

    from t2ibench.cli import app

    result = CliRunner().invoke(app, ["encoders", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in BUILT_INS:
        assert name in result.output
    assert "facebook/dinov2-large" in result.output
