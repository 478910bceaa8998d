"""Metric math against independent references."""

import math

import numpy as np
import pytest
import torch
from vendi_score import vendi

from t2ibench.metrics import (
    centroid_distance,
    frechet_distance,
    gram_matrices,
    image_similarity,
    style_loss,
    text_alignment,
    vendi_score,
)


def feats(n, d, seed):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_image_similarity_is_mean_pairwise_cosine():
    g, r = feats(7, 5, 0), feats(9, 5, 1)
    cos = torch.nn.functional.cosine_similarity(g[:, None, :], r[None, :, :], dim=-1)
    assert image_similarity(g, r) == pytest.approx(float(cos.mean()), abs=1e-12)


def test_centroid_identity_eq23():
    """‖μx−μy‖² = 2 − Var(x̂) − Var(ŷ) − 2·sim with Var(x̂) = 1 − ‖μx‖² (paper eq. 23)."""
    g, r = feats(40, 8, 2) + 1.0, feats(30, 8, 3)
    gh, rh = g / g.norm(dim=1, keepdim=True), r / r.norm(dim=1, keepdim=True)
    var_g = float((gh - gh.mean(0)).pow(2).sum(1).mean())
    var_r = float((rh - rh.mean(0)).pow(2).sum(1).mean())
    assert var_g == pytest.approx(1 - float(gh.mean(0).norm() ** 2), abs=1e-12)
    expected = 2 - var_g - var_r - 2 * image_similarity(g, r)
    assert centroid_distance(g, r) == pytest.approx(expected, abs=1e-12)


def test_scale_invariance():
    g, r = feats(5, 4, 4), feats(6, 4, 5)
    assert image_similarity(3 * g, 0.5 * r) == pytest.approx(image_similarity(g, r), abs=1e-12)


@pytest.mark.parametrize("n,d", [(30, 64), (200, 16)])  # n×n and d×d branches
def test_vendi_matches_vendi_score_package(n, d):
    x = feats(n, d, 6).numpy()
    ours = vendi_score(torch.from_numpy(x), q=1)
    assert ours == pytest.approx(vendi.score_dual(x), rel=1e-9)
    assert ours == pytest.approx(vendi.score_X(x), rel=1e-6)


@pytest.mark.parametrize("q", [0, 0.5, 1, 2, math.inf])
def test_vendi_orders_on_identical_and_orthonormal(q):
    same = torch.ones(10, 6, dtype=torch.float64)
    assert vendi_score(same, q=q) == pytest.approx(1.0, abs=1e-9)
    ortho = torch.eye(12, dtype=torch.float64)[:5] * 3.0
    assert vendi_score(ortho, q=q) == pytest.approx(5.0, abs=1e-9)


@pytest.mark.parametrize("q", [0.5, 2, math.inf])
def test_vendi_orders_match_scipy_eigen(q):
    x = feats(25, 10, 7)
    xh = x / x.norm(dim=1, keepdim=True)
    lam = np.clip(np.linalg.eigvalsh((xh @ xh.T).numpy() / 25), 0, None)
    lam = lam[lam > 1e-15]
    expected = 1 / lam.max() if math.isinf(q) else (lam**q).sum() ** (1 / (1 - q))
    assert vendi_score(x, q=q) == pytest.approx(expected, rel=1e-9)


def test_vendi_order_zero_is_rank():
    x = torch.cat([feats(3, 8, 8)] * 4)  # 12 rows spanning 3 directions
    assert vendi_score(x, q=0) == 3.0


def test_text_alignment_conventions():
    img = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    txt = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    c = math.sqrt(0.5)
    assert text_alignment(img, txt) == pytest.approx((c - 1) / 2)
    assert text_alignment(img, txt, convention="clipscore-hessel") == pytest.approx(2.5 * c / 2)
    assert text_alignment(img, txt, convention="clipscore-torchmetrics") == 0.0  # mean < 0
    with pytest.raises(ValueError, match="paired"):
        text_alignment(img, txt[:1])
    with pytest.raises(ValueError, match="convention"):
        text_alignment(img, txt, convention="nope")


def test_gram_and_style_loss_against_direct_loops():
    gen = torch.Generator().manual_seed(9)
    maps_a = [torch.randn(2, c, h, h, generator=gen) for c, h in [(3, 4), (5, 2)]]
    maps_b = [torch.randn(2, c, h, h, generator=gen) for c, h in [(3, 4), (5, 2)]]
    ga, gb = gram_matrices(maps_a), gram_matrices(maps_b)
    for i in range(2):
        total = 0.0
        for fa, fb in zip(maps_a, maps_b, strict=True):
            c, h, w = fa.shape[1:]
            a = np.asarray(fa[i].reshape(c, -1), dtype=np.float64)
            b = np.asarray(fb[i].reshape(c, -1), dtype=np.float64)
            da = a @ a.T / (c * h * w) - b @ b.T / (c * h * w)
            total += float((da**2).sum())
        assert float(style_loss(ga, gb)[i]) == pytest.approx(total, rel=1e-6)
    assert torch.all(style_loss(ga, ga) == 0)


def test_frechet_against_scipy():
    from scipy import linalg

    g, r = feats(60, 6, 10), feats(50, 6, 11) * 1.5 + 0.3
    gn, rn = g.numpy(), r.numpy()
    mu1, mu2 = gn.mean(0), rn.mean(0)
    s1, s2 = np.cov(gn, rowvar=False), np.cov(rn, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance(g, r) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(g, g) == pytest.approx(0.0, abs=1e-8)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="gen"):
        image_similarity(torch.tensor([[float("nan"), 1.0]]), torch.ones(1, 2))
    with pytest.raises(ValueError, match="ref"):
        centroid_distance(torch.ones(2, 2), torch.ones(2, 2, 2))
