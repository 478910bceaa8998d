"""Issue 13 item 1: the VGG encoder's Grams under autocast, and the dtype in the cache key."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from t2ibench.encoders import FeatureCache, create_encoder
from t2ibench.metrics import style_loss


def _near_copy_pair() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-3, 4, a.shape), 0, 255).astype(np.uint8)
    return [Image.fromarray(a), Image.fromarray(b)]


def _gram64(maps):
    out = []
    for m in maps:
        f = m.double().flatten(2)
        out.append(torch.bmm(f, f.transpose(1, 2)) / m[0].numel())
    return out


def test_item01_vgg_gram_float32_under_autocast(tmp_path):
    """Tiny VGG-19 under bf16 autocast (what CUDA runs by default): the near-copy style loss stays
    within 25 % of float64 (the bf16 conv maps remain: about 5 % here); today's main is off by a
    factor of ~28."""
    ims = _near_copy_pair()
    enc = create_encoder("vgg19", tiny=True, cache_dir=tmp_path)
    model64 = copy.deepcopy(enc.model).double()
    x = torch.stack([enc.preprocess(im) for im in ims]).double()
    with torch.no_grad():
        g64 = _gram64(model64(x))
    truth = float(style_loss([g[:1] for g in g64], [g[1:] for g in g64])[0])

    enc.autocast_dtype = torch.bfloat16  # CPU autocast stands in for the CUDA default
    grams = enc.encode_images(ims)
    assert all(g.dtype == torch.float32 for g in grams)
    got = float(style_loss([g[:1] for g in grams], [g[1:] for g in grams])[0])
    assert got == pytest.approx(truth, rel=0.25)


def test_item01_compute_dtype_is_part_of_the_cache_key(tmp_path):
    enc = create_encoder("vgg19", tiny=True, cache_dir=tmp_path)
    cache = FeatureCache(tmp_path / "cache")
    fp32 = cache.config_digest(enc)
    enc.autocast_dtype = torch.bfloat16
    bf16 = cache.config_digest(enc)
    enc.autocast_dtype = torch.float16
    assert len({fp32, bf16, cache.config_digest(enc)}) == 3
    assert FeatureCache.compute_dtype(enc) == "autocast-float16"
