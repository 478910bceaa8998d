"""The content-addressed feature cache: zero forward passes on a second run, keys, bad files."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from encoders_testutil import noise_image
from PIL import Image

from t2ibench.encoders import (
    FeatureCache,
    create_encoder,
    encode_images_cached,
    encode_texts_cached,
)
from t2ibench.errors import DatasetError, T2IBenchError


@pytest.fixture
def image_files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i, (w, h) in enumerate([(80, 48), (48, 80), (64, 64)]):
        p = folder / f"img{i}.png"
        noise_image(w, h, seed=10 + i).save(p)
        paths.append(p)
    dup = folder / "copy-of-img0.png"  # same bytes under another name
    shutil.copy(paths[0], dup)
    return [*paths, dup]


def as_list(feats: object) -> list[torch.Tensor]:
    return list(feats) if isinstance(feats, list) else [feats]  # type: ignore[list-item]


@pytest.mark.parametrize("name", ["dinov2-l", "vgg19"])
def test_second_run_does_no_forward_pass(
    name: str, image_files: list[Path], tmp_path: Path
) -> None:
    enc = create_encoder(name, tiny=True, resize="letterbox", batch_size=2)
    cache = FeatureCache(tmp_path / "cache")
    first = encode_images_cached(enc, image_files, cache)
    passes = enc.forward_passes
    assert passes == 2  # 3 distinct images (the copy is encoded once) in batches of 2
    second = encode_images_cached(enc, image_files, cache)
    assert enc.forward_passes == passes
    for a, b in zip(as_list(first), as_list(second), strict=True):
        assert torch.equal(a, b)
        assert a.shape[0] == len(image_files)
        assert torch.equal(a[0], a[3])  # duplicate file → identical row
    # a fresh encoder object with the same weights and preprocessing also hits the cache
    fresh = create_encoder(name, tiny=True, resize="letterbox")
    encode_images_cached(fresh, list(reversed(image_files)), cache)
    assert fresh.forward_passes == 0
    # and the cached rows equal direct encoding
    direct = enc.encode_images([Image.open(p) for p in image_files])
    for a, b in zip(as_list(first), as_list(direct), strict=True):
        torch.testing.assert_close(a, b)


def test_only_new_images_are_encoded(image_files: list[Path], tmp_path: Path) -> None:
    enc = create_encoder("convnextv2-l", tiny=True, batch_size=8)
    cache = FeatureCache(tmp_path / "cache")
    encode_images_cached(enc, image_files[:2], cache)
    assert enc.forward_passes == 1
    feats = encode_images_cached(enc, image_files, cache)
    assert enc.forward_passes == 2 and feats.shape == (4, 64)


def test_without_cache_everything_is_encoded(image_files: list[Path]) -> None:
    enc = create_encoder("convnextv2-l", tiny=True, batch_size=8)
    encode_images_cached(enc, image_files, None)
    encode_images_cached(enc, image_files, None)
    assert enc.forward_passes == 2


def test_texts_are_cached(tmp_path: Path) -> None:
    enc = create_encoder("clip-l14", tiny=True)
    cache = FeatureCache(tmp_path / "cache")
    texts = ["a photo of a castle", "a watercolor painting of a dog", "a photo of a castle"]
    first = encode_texts_cached(enc, texts, cache)
    assert enc.forward_passes == 1 and first.shape == (3, 16)
    second = encode_texts_cached(enc, texts, cache)
    assert enc.forward_passes == 1 and torch.equal(first, second)
    torch.testing.assert_close(first, enc.encode_texts(texts))
    with pytest.raises(T2IBenchError, match="no text tower"):
        encode_texts_cached(create_encoder("dinov2-l", tiny=True), texts, cache)


def test_key_changes_with_preprocessing_and_weights(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache")
    digest = "ab" * 32
    letterbox = create_encoder("dinov2-l", tiny=True, resize="letterbox")
    keys = {
        cache.key(letterbox, digest),
        cache.key(create_encoder("dinov2-l", tiny=True, resize="stretch"), digest),
        cache.key(create_encoder("dinov2-l", tiny=True, resize="letterbox", size=256), digest),
    }
    # other weights: the tiny folder with one tensor changed
    from safetensors.torch import load_file, save_file

    other = shutil.copytree(letterbox.source, tmp_path / "other-weights")
    state = load_file(str(other / "model.safetensors"))
    state["layernorm.bias"] = state["layernorm.bias"] + 0.5
    save_file(state, str(other / "model.safetensors"))
    keys.add(cache.key(create_encoder("dinov2-l", weights=other), digest))
    keys.add(cache.key(letterbox, "cd" * 32))  # other image content
    assert len(keys) == 5
    # same configuration, new object → same key
    same = create_encoder("dinov2-l", tiny=True, resize="letterbox")
    assert cache.key(same, digest) == cache.key(letterbox, digest)


def test_other_weights_miss_the_cache(image_files: list[Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    cache = FeatureCache(tmp_path / "cache")
    enc = create_encoder("dinov2-l", tiny=True)
    a = encode_images_cached(enc, image_files[:1], cache)
    other = shutil.copytree(enc.source, tmp_path / "w2")
    state = load_file(str(other / "model.safetensors"))
    state["layernorm.bias"] = state["layernorm.bias"] + 0.5
    save_file(state, str(other / "model.safetensors"))
    enc2 = create_encoder("dinov2-l", weights=other)
    b = encode_images_cached(enc2, image_files[:1], cache)
    assert enc2.forward_passes == 1
    torch.testing.assert_close(b - a, torch.full_like(a, 0.5))  # final layernorm bias moved by 0.5


def test_corrupt_image_names_the_file(image_files: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "images" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    enc = create_encoder("vgg19", tiny=True)
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(DatasetError, match="broken.png"):
        encode_images_cached(enc, [*image_files, bad], cache)
    with pytest.raises(DatasetError, match="missing.png"):
        encode_images_cached(enc, [tmp_path / "missing.png"], cache)


def test_damaged_cache_entry_is_recomputed(image_files: list[Path], tmp_path: Path) -> None:
    enc = create_encoder("convnextv2-l", tiny=True)
    cache = FeatureCache(tmp_path / "cache")
    first = encode_images_cached(enc, image_files[:1], cache)
    (entry,) = (tmp_path / "cache").rglob("*.safetensors")
    entry.write_bytes(b"garbage")
    again = encode_images_cached(enc, image_files[:1], cache)
    assert enc.forward_passes == 2
    assert torch.equal(first, again)
    assert not list((tmp_path / "cache").rglob("*.t2ibench-tmp"))  # no temp files left


def _rewrite_in_place_keeping_size_and_mtime(file: Path) -> None:
    """Other values written over the file's last tensor bytes (same inode, same size), then the
    mtime set back with os.utime, as a careless sync tool or a hand edit might."""
    st = file.stat()
    with open(file, "r+b") as f:
        f.seek(-256, os.SEEK_END)
        f.write(np.full(64, 0.5, dtype=np.float32).tobytes())
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = file.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        st.st_size,
        st.st_mtime_ns,
        st.st_ino,
    )


@pytest.mark.parametrize("always_hash_below", [None, 0])  # small files hashed; big ones memoised
def test_item08_in_place_rewrite_changes_weights_id(
    tmp_path: Path, image_files: list[Path], always_hash_below, monkeypatch
) -> None:
    from t2ibench import fsutil

    if always_hash_below is not None:
        monkeypatch.setattr(fsutil, "ALWAYS_HASH_BELOW", always_hash_below)
    tiny = create_encoder("dinov2-l", tiny=True, cache_dir=tmp_path / "tiny")
    folder = tmp_path / "weights"
    shutil.copytree(tiny.source, folder)
    first = create_encoder("dinov2-l", weights=folder)
    cache = FeatureCache(tmp_path / "cache")
    before = encode_images_cached(first, image_files[:1], cache)
    time.sleep(0.05)  # let the filesystem clock tick, so ctime can tell the rewrite apart
    _rewrite_in_place_keeping_size_and_mtime(folder / "model.safetensors")
    second = create_encoder("dinov2-l", weights=folder)
    assert second.weights_id != first.weights_id
    after = encode_images_cached(second, image_files[:1], cache)
    assert second.forward_passes == 1  # the new weights were run, not served from the cache
    assert not torch.equal(before, after)
