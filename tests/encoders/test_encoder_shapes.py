"""Every tiny encoder: documented feature shapes for non-square images under all four resize modes."""

from __future__ import annotations

import pytest
import torch
from encoders_testutil import IMAGE_ENCODERS, TINY_DIMS, noise_image

from t2ibench.encoders import RESIZE_MODES, create_encoder
from t2ibench.errors import ConfigError


def check_shape(name: str, out: object, n: int) -> None:
    if name == "vgg19":
        assert isinstance(out, list) and len(out) == 5
        for gram, c in zip(out, TINY_DIMS[name], strict=True):
            assert gram.shape == (n, c, c) and gram.dtype == torch.float32
            torch.testing.assert_close(gram, gram.transpose(1, 2))  # Gram matrices are symmetric
    else:
        assert isinstance(out, torch.Tensor)
        assert out.shape == (n, TINY_DIMS[name]) and out.dtype == torch.float32
        assert out.device.type == "cpu" and torch.isfinite(out).all()


@pytest.mark.parametrize("mode", RESIZE_MODES)
@pytest.mark.parametrize("name", IMAGE_ENCODERS)
def test_tiny_encoder_shapes_for_non_square_images(name: str, mode: str, nonsquare_images) -> None:
    if name == "clip-l14" and mode == "scale":
        # a fixed 16×16 position grid cannot take a 224×373 input: refused up front
        with pytest.raises(ConfigError, match="square"):
            create_encoder(name, tiny=True, resize=mode)
        return
    enc = create_encoder(name, tiny=True, resize=mode)
    assert enc.preprocess_id.startswith(f"{mode}-224-")
    out = enc.encode_images(nonsquare_images)
    check_shape(name, out, 2)
    # scale gives two different shapes → two batches; the square modes batch them together
    assert enc.forward_passes == (2 if mode == "scale" else 1)


@pytest.mark.parametrize("name", IMAGE_ENCODERS)
def test_batching_keeps_input_order_and_values(name: str) -> None:
    # mixed shapes under scale (or letterbox for clip) interleaved, batch size 2
    mode = "letterbox" if name == "clip-l14" else "scale"
    images = [noise_image(80, 48, 1), noise_image(48, 80, 2), noise_image(80, 48, 3)]
    batched = create_encoder(name, tiny=True, resize=mode, batch_size=2)
    single = create_encoder(name, tiny=True, resize=mode, batch_size=1)
    a, b = batched.encode_images(images), single.encode_images(images)
    assert single.forward_passes == 3
    pairs = zip(a, b, strict=True) if name == "vgg19" else [(a, b)]
    for x, y in pairs:
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    rows = a[0] if name == "vgg19" else a
    assert not torch.allclose(rows[0], rows[2])  # different images, different features


def test_clip_text_features_share_the_image_space() -> None:
    enc = create_encoder("clip-l14", tiny=True)
    texts = ["a photo of a castle", "a pencil drawing of a dog", "a photo of a castle"]
    t = enc.encode_texts(texts)
    assert t.shape == (3, TINY_DIMS["clip-l14"]) and t.dtype == torch.float32
    torch.testing.assert_close(t[0], t[2])
    assert not torch.allclose(t[0], t[1])
    assert enc.encode_images([noise_image(48, 80)]).shape[1] == t.shape[1]


@pytest.mark.parametrize("name", ["dinov2-l", "convnextv2-l", "vgg19"])
def test_image_only_encoders_have_no_text_tower(name: str) -> None:
    from t2ibench.errors import T2IBenchError

    with pytest.raises(T2IBenchError, match="no text tower"):
        create_encoder(name, tiny=True).encode_texts(["x"])


def test_same_seed_same_tiny_features(tmp_path) -> None:
    # tiny weights are seeded: a fresh build in another folder gives the same weights and features
    img = [noise_image(64, 40)]
    a = create_encoder("dinov2-l", tiny=True)
    b = create_encoder("dinov2-l", tiny=True, cache_dir=tmp_path)
    assert a.weights_id == b.weights_id
    torch.testing.assert_close(a.encode_images(img), b.encode_images(img))


def test_cpu_rejects_half_precision() -> None:
    with pytest.raises(ConfigError, match="CUDA"):
        create_encoder("vgg19", tiny=True, dtype="fp16")


def test_autocast_dtype_choice() -> None:
    from t2ibench.encoders.base import resolve_dtype

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_dtype(cuda, "fp16") is torch.float16
    assert resolve_dtype(cuda, torch.bfloat16) is torch.bfloat16
    assert resolve_dtype(cuda, "fp32") is None  # plain float32, no autocast
    assert resolve_dtype(cpu, None) is None and resolve_dtype(cpu, "float32") is None
    with pytest.raises(ConfigError, match="dtype"):
        resolve_dtype(cuda, "int8")
