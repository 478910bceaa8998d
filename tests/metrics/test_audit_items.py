"""Regression tests for issue 13, items 1–6 (metrics), each named after its item."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from vendi_score import vendi

from t2ibench.metrics import (
    CentroidDistance,
    FrechetDistance,
    ImageSimilarity,
    MeanScore,
    StyleLoss,
    TextAlignment,
    VendiScore,
    frechet_distance,
    gram_matrices,
    image_similarity,
    mean_score,
    style_loss,
    text_alignment,
    vendi_score,
)


def feats(n, d, seed, dtype=torch.float64):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def gram64(maps):
    out = []
    for m in maps:
        f = m.double().flatten(2)
        out.append(torch.bmm(f, f.transpose(1, 2)) / m[0].numel())
    return out


# --- item 1 -------------------------------------------------------------------------------------


def test_item01_vgg_gram_float32_under_autocast():
    """Grams taken under bf16 autocast are float32 and within float32 error of float64 (today's
    main: bf16, 3e-3 relative error, which the style loss of a near-copy pair multiplies)."""
    maps = [feats(2, c, s, torch.float32).reshape(2, c, 1, 1).expand(2, c, 24, 24) * 3
            + feats(2 * c * 576, 1, s + 9, torch.float32).reshape(2, c, 24, 24)
            for c, s in [(16, 1), (32, 2)]]  # fmt: skip
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grams = gram_matrices(maps)
    exact = gram64(maps)
    for g, e in zip(grams, exact, strict=True):
        assert g.dtype == torch.float32
        assert float((g.double() - e).abs().max() / e.abs().max()) < 1e-6
    # a near-copy pair: the style loss keeps float32 accuracy under autocast
    near = [m + 1e-3 * torch.randn_like(m) for m in maps]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = float(style_loss(gram_matrices(maps), gram_matrices(near))[0])
    truth = float(style_loss(gram64(maps), gram64(near))[0])
    assert loss == pytest.approx(truth, rel=1e-2)  # float32 cancellation on a near-copy: ~1e-3


def test_item01_gram_refuses_fp16_overflow_and_other_dtypes():
    big = torch.full((1, 2, 64, 64), 300.0, dtype=torch.float16)  # fp16 Gram entries 9e4 > 65504
    (g,) = gram_matrices([big])
    assert g.dtype == torch.float32 and bool(torch.isfinite(g).all())
    with pytest.raises(ValueError, match="float32 or float64"):
        gram_matrices([big], dtype=torch.bfloat16)


# --- item 2 -------------------------------------------------------------------------------------


class _FeatureTable(torch.nn.Module):
    """A CLIP-shaped lookup for torchmetrics: image i / text "i" → row i of fixed features.

    torchmetrics' ``CLIPScore`` (the oracle here) only normalises, scales and aggregates the
    features the model returns; this supplies ours so its aggregation can be compared exactly.
    """

    def __init__(self, img: torch.Tensor, txt: torch.Tensor) -> None:
        super().__init__()
        self.img, self.txt = img.float(), txt.float()
        self.config = type("Config", (), {})()

    def get_image_features(self, pixel_values):
        return self.img[pixel_values[:, 0, 0, 0].long()]

    def get_text_features(self, input_ids, attention_mask=None):
        return self.txt[input_ids[:, 0]]


def _processor(images=None, text=None, return_tensors="pt", padding=True):
    if images is not None:
        return {"pixel_values": torch.stack(images)}
    ids = torch.tensor([[int(t)] for t in text])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_item02_clipscore_conventions_match_hessel_and_torchmetrics():
    pytest.importorskip("torchmetrics")
    from torchmetrics.multimodal import CLIPScore

    # cos = 1 and -0.995: clamped per pair, mean 50 (scale 100); clamped mean 0.25
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    txt = torch.tensor([[1.0, 0.0], [-0.995, math.sqrt(1 - 0.995**2)]], dtype=torch.float64)
    assert text_alignment(img, txt, "clipscore-hessel") == pytest.approx(2.5 * 1.0 / 2)
    assert text_alignment(img, txt, "clipscore-torchmetrics") == pytest.approx(0.25)
    with pytest.raises(ValueError, match="ambiguous"):
        text_alignment(img, txt, "clipscore")

    img, txt = feats(12, 6, 1), feats(12, 6, 2)  # mixed-sign cosines
    tm = CLIPScore(model_name_or_path=lambda: (_FeatureTable(img, txt), _processor))
    images = [torch.full((3, 1, 1), float(i)) for i in range(12)]
    tm.update(images[:5], [str(i) for i in range(5)])
    tm.update(images[5:], [str(i) for i in range(5, 12)])
    ours = TextAlignment("clipscore-torchmetrics")
    ours.update(img[:7], txt[:7])
    other = TextAlignment("clipscore-torchmetrics")
    other.update(img[7:], txt[7:])
    ours.merge(other)
    assert ours.compute() == pytest.approx(float(tm.compute()), abs=1e-4)
    assert text_alignment(img, txt, "clipscore-torchmetrics") == pytest.approx(ours.compute())
    # Hessel: mean over pairs of 2.5·max(cos, 0)
    cos = torch.nn.functional.cosine_similarity(img, txt, dim=1)
    assert text_alignment(img, txt, "clipscore-hessel") == pytest.approx(
        float((2.5 * cos.clamp_min(0)).mean()), abs=1e-12
    )


# --- item 3 -------------------------------------------------------------------------------------


def test_item03_feature_shapes_checked_and_named():
    with pytest.raises(ValueError, match=r"feats: expected a \(n, d\)"):
        vendi_score(torch.randn(6))
    with pytest.raises(ValueError, match="ref: feature size 3 differs from gen"):
        image_similarity(feats(4, 5, 0), feats(4, 3, 1))
    with pytest.raises(ValueError, match="ref: feature size 3 differs from gen"):
        frechet_distance(feats(8, 5, 0), feats(8, 3, 1))
    with pytest.raises(ValueError, match="paired"):
        text_alignment(feats(4, 5, 0), feats(4, 3, 1))
    with pytest.raises(ValueError, match="scores"):
        mean_score(torch.ones(3, 2))
    # an (n, 1) batch must not broadcast into streaming sums
    for cls in (ImageSimilarity, CentroidDistance, FrechetDistance):
        m = cls()
        m.update(gen=feats(6, 5, 0))
        with pytest.raises(ValueError, match="gen: feature size 1 differs"):
            m.update(gen=feats(6, 1, 1))
        with pytest.raises(ValueError, match="ref: feature size 1 differs"):
            m.update(ref=feats(6, 1, 2))
        a, b = cls(), cls()
        a.update(gen=feats(6, 5, 0))
        b.update(ref=feats(6, 1, 2))
        with pytest.raises(ValueError, match="feature size 1 differs from 5"):
            a.merge(b)
    v = VendiScore()
    v.update(feats(3, 5, 0))
    with pytest.raises(ValueError, match="feats: feature size 1"):
        v.update(feats(3, 1, 1))


# --- item 4 -------------------------------------------------------------------------------------


def test_item04_zero_rows_are_refused_not_dropped():
    x = feats(1, 5, 3)
    with pytest.raises(ValueError, match="feats: row 2 is all zeros"):
        vendi_score(torch.cat([x, x, torch.zeros(1, 5, dtype=torch.float64)]))
    with pytest.raises(ValueError, match="gen: row 1 is all zeros"):
        image_similarity(torch.cat([x, 0 * x]), x)
    with pytest.raises(ValueError, match="text_feats: row 0 is all zeros"):
        text_alignment(x, 0 * x)
    # Fréchet distance works on raw features: a zero row is a point like any other
    assert math.isfinite(frechet_distance(torch.cat([feats(9, 2, 1), torch.zeros(1, 2)]),
                                          feats(10, 2, 2)))  # fmt: skip


def test_item04_tiny_and_huge_rows_keep_their_direction():
    x = feats(12, 6, 4)
    scaled = x.clone()
    scaled[0] *= 1e-13  # an absolute epsilon made this row's cosines 0.1 of the truth
    scaled[1] *= 1e-200
    scaled[2] *= 1e300  # norms of 1e308 rows overflow unless rows are rescaled first
    assert vendi_score(scaled) == pytest.approx(vendi.score_dual(x.numpy()), rel=1e-9)
    assert vendi_score(scaled) == pytest.approx(vendi_score(x), rel=1e-12)
    assert image_similarity(scaled[:3], x) == pytest.approx(image_similarity(x[:3], x), rel=1e-12)
    assert text_alignment(scaled, x) == pytest.approx(1.0, rel=1e-12)
    huge = torch.full((2, 3), 1e308, dtype=torch.float64)
    assert vendi_score(huge) == pytest.approx(1.0)
    g, r = feats(9, 2, 1), feats(8, 2, 2)
    assert frechet_distance(g * 1e100, r * 1e100) == pytest.approx(
        frechet_distance(g, r) * 1e200, rel=1e-9
    )
    with pytest.raises(ValueError, match="overflow float64"):
        frechet_distance(g * 1e200, r)


def test_item04_nan_in_grams_and_features_is_refused():
    maps = [torch.randn(2, 3, 4, 4)]
    maps[0][1, 2, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"feature_maps\[0\]: contains NaN"):
        gram_matrices(maps)
    good = gram_matrices([torch.randn(2, 3, 4, 4)])
    bad = [good[0].clone()]
    bad[0][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"grams_b\[0\]: contains NaN"):
        style_loss(good, bad)
    with pytest.raises(ValueError, match="gen: row 1 contains NaN"):
        image_similarity(torch.tensor([[1.0, 2.0], [float("inf"), 0.0]]), torch.ones(1, 2))


# --- item 5 -------------------------------------------------------------------------------------


def test_item05_merge_refuses_self_and_mismatched_options():
    v = VendiScore()
    v.update(feats(10, 4, 0))
    with pytest.raises(ValueError, match="into itself"):
        v.merge(v)
    assert v.n == 10
    for cls in (ImageSimilarity, CentroidDistance, StyleLoss, FrechetDistance, MeanScore):
        m = cls()
        with pytest.raises(ValueError, match="into itself"):
            m.merge(m)
    a, b = TextAlignment("cosine"), TextAlignment("clipscore-hessel")
    a.update(feats(3, 4, 0), feats(3, 4, 1))
    b.update(feats(3, 4, 2), feats(3, 4, 3))
    with pytest.raises(ValueError, match="convention='cosine' and convention='clipscore-hessel'"):
        a.merge(b)
    with pytest.raises(ValueError, match="q=1.0 and q=2.0"):
        VendiScore(q=1).merge(VendiScore(q=2))


# --- item 6 -------------------------------------------------------------------------------------


def test_item06_frechet_n_le_d_clamped_and_warned():
    from t2ibench.metrics.frechet import SingularCovarianceWarning

    # 6 samples of one 40-d set against themselves plus round-off: singular covariances
    g = feats(6, 40, 5)
    with pytest.warns(SingularCovarianceWarning, match="n=6 ≤ d=40"):
        value = frechet_distance(g, g + 1e-12 * feats(6, 40, 6))
    assert value >= 0.0
    m = FrechetDistance()
    m.update(gen=g, ref=g.clone())
    with pytest.warns(SingularCovarianceWarning):
        assert m.compute() >= 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frechet_distance(feats(50, 4, 1), feats(50, 4, 2))  # n > d: no warning


def test_item06_frechet_value_never_negative_on_random_small_samples():
    negatives = 0
    for seed in range(20):
        g = feats(5, 32, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            negatives += frechet_distance(g, g.flip(0)) < 0
    assert negatives == 0


def test_frechet_exact_where_n_gt_d():
    from scipy import linalg

    g, r = feats(60, 6, 10), feats(50, 6, 11) * 1.5 + 0.3
    s1, s2 = np.cov(g.numpy(), rowvar=False), np.cov(r.numpy(), rowvar=False)
    expected = ((g.numpy().mean(0) - r.numpy().mean(0)) ** 2).sum() + np.trace(
        s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real
    )
    assert frechet_distance(g, r) == pytest.approx(expected, rel=1e-8)
