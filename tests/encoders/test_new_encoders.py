"""The encoders the metric profiles need (DINO v1 ViT-S/16 and S/8, DINOv2-S/B, CLIP ViT-B/32):
tiny variants saved and re-loaded through the real loaders, the features they take, the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from encoders_testutil import noise_image
from safetensors.torch import load_file

from t2ibench.encoders import (
    FeatureCache,
    create_encoder,
    encode_images_cached,
    encode_texts_cached,
    get_encoder_spec,
)
from t2ibench.encoders import clip as clip_family
from t2ibench.encoders import dino_vits16 as dino_family
from t2ibench.encoders import dinov2 as dinov2_family
from t2ibench.errors import T2IBenchError

NEW = {
    # name: (family module whose load_model is used, default weights, weights file, tiny dim)
    "dino-vits16": (dino_family, "facebook/dino-vits16", "model.safetensors", 32),
    "dino-vits8": (dino_family, "facebook/dino-vits8", "model.safetensors", 32),
    "dinov2-s": (dinov2_family, "facebook/dinov2-small", "model.safetensors", 32),
    "dinov2-b": (dinov2_family, "facebook/dinov2-base", "model.safetensors", 32),
    "clip-b32": (clip_family, "ViT-B-32-quickgelu/openai", "open_clip_model.safetensors", 16),
}


@pytest.mark.parametrize("name", sorted(NEW))
def test_tiny_goes_through_the_real_loader(name: str, monkeypatch, tmp_path: Path) -> None:
    family, default, weights_file, dim = NEW[name]
    assert get_encoder_spec(name).default_weights == default
    calls: list[tuple] = []
    real_loader = family.load_model

    def spy(source: str, *args):
        calls.append((source, *args))
        return real_loader(source, *args)

    monkeypatch.setattr(family, "load_model", spy)
    enc = create_encoder(name, tiny=True, cache_dir=tmp_path)
    assert len(calls) == 1 and calls[0][1] == name  # errors name this encoder
    folder = Path(calls[0][0])
    assert folder.parent == tmp_path and (folder / weights_file).is_file()
    stored = load_file(str(folder / weights_file))
    state = list(enc.model.state_dict().values())
    for key, tensor in stored.items():
        assert any(t.shape == tensor.shape and torch.equal(t, tensor) for t in state), key
    images = [noise_image(64, 48, seed=1), noise_image(40, 72, seed=2)]
    feats = enc.encode_images(images)
    assert feats.shape == (2, dim) and torch.isfinite(feats).all()
    again = create_encoder(name, weights=folder)
    assert again.weights_id == enc.weights_id
    torch.testing.assert_close(again.encode_images(images), feats)


@pytest.mark.parametrize("name", ["dino-vits16", "dino-vits8"])
def test_dino_v1_feature_is_the_normed_cls_token(name: str, tmp_path: Path) -> None:
    enc = create_encoder(name, tiny=True, cache_dir=tmp_path)
    model = enc.model
    patch = int(name.removeprefix("dino-vits"))
    assert model.config.patch_size == patch and model.pooler is None
    # DINO's VisionTransformer.forward: x = norm(blocks(prepare_tokens(x))); return x[:, 0].
    pixels = enc.preprocess(noise_image(50, 50, seed=3)).unsqueeze(0)
    with torch.no_grad():
        x = model.embeddings(pixels)
        layers = (
            model.layers if hasattr(model, "layers") else model.encoder.layer
        )  # transformers 5/4
        for layer in layers:
            x = layer(x)
            x = x[0] if isinstance(x, tuple) else x
        expected = model.layernorm(x)[:, 0]
    torch.testing.assert_close(enc.encode_images([noise_image(50, 50, seed=3)]), expected)
    assert x.shape[1] == 1 + (224 // patch) ** 2


def test_clip_b32_is_the_quickgelu_vit_b32(tmp_path: Path) -> None:
    enc = create_encoder("clip-b32", tiny=True, cache_dir=tmp_path)
    visual = enc.model.visual
    assert visual.conv1.kernel_size == (32, 32)
    assert type(visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    texts = enc.encode_texts(["a photo of a dog", "a red cube"])
    assert texts.shape == (2, 16)


def test_feature_cache_and_missing_weights(tmp_path: Path) -> None:
    files = []
    for i in range(3):
        p = tmp_path / f"im{i}.png"
        noise_image(48, 48, seed=20 + i).save(p)
        files.append(p)
    cache = FeatureCache(tmp_path / "cache")
    for name in ("dino-vits8", "clip-b32"):
        enc = create_encoder(name, tiny=True, cache_dir=tmp_path / "m")
        first = encode_images_cached(enc, files, cache)
        passes = enc.forward_passes
        torch.testing.assert_close(encode_images_cached(enc, files, cache), first)
        assert enc.forward_passes == passes
    encode_texts_cached(enc, ["a dog"], cache)
    passes = enc.forward_passes
    encode_texts_cached(enc, ["a dog"], cache)
    assert enc.forward_passes == passes
    with pytest.raises(T2IBenchError, match="encoder dino-vits16: weights path"):
        create_encoder("dino-vits16", weights=tmp_path / "nowhere" / "model.safetensors")


@pytest.mark.parametrize("size", [(80, 60), (60, 90), (100, 70), (64, 64)])
def test_center_crop_is_torchvision_resize_then_crop(size: tuple[int, int]) -> None:
    """center-crop = CLIP's / DINO's transform (torchvision Resize(224) truncates the long side:
    80×60 → 298×224, not 299), pixel for pixel (failed with a rounded long side)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import v2 as T

    from t2ibench.encoders import resize_image

    img = noise_image(*size, seed=5)
    ref = T.Compose(
        [
            T.PILToTensor(),
            T.Resize(224, interpolation=InterpolationMode.BICUBIC, antialias=True),
            T.CenterCrop(224),
        ]
    )(img)
    assert torch.equal(resize_image(img, "center-crop", 224, "bicubic"), ref)
