"""Streaming classes equal the one-shot functions to 1e-9, in any chunking, with merge."""

import math

import pytest
import torch

from t2ibench.metrics import (
    CentroidDistance,
    FrechetDistance,
    ImageSimilarity,
    MeanScore,
    StyleLoss,
    TextAlignment,
    VendiScore,
    centroid_distance,
    frechet_distance,
    gram_matrices,
    image_similarity,
    mean_score,
    style_loss,
    text_alignment,
    vendi_score,
)


def feats(n, d, seed):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def chunks(x, sizes):
    out, i = [], 0
    for s in sizes:
        out.append(x[i : i + s])
        i += s
    assert i == x.shape[0]
    return out


@pytest.mark.parametrize(
    "cls,fn", [(ImageSimilarity, image_similarity), (CentroidDistance, centroid_distance)]
)
def test_centroid_metrics_stream(cls, fn):
    g, r = feats(37, 12, 0), feats(21, 12, 1)
    m = cls()
    for part in chunks(g, [10, 20, 7]):
        m.update(gen=part)
    m.update(ref=r[:5])
    other = cls()
    other.update(ref=r[5:])
    m.merge(other)
    assert m.compute() == pytest.approx(fn(g, r), abs=1e-9)


@pytest.mark.parametrize("q", [0, 0.5, 1, 2, math.inf])
@pytest.mark.parametrize("sizes", [[5, 6], [10, 10, 10, 10], [3, 40]])
def test_vendi_stream_crosses_n_equals_d(q, sizes):
    x = feats(sum(sizes), 16, 2)
    m = VendiScore(q=q)
    for part in chunks(x, sizes):
        m.update(part)
    assert m.compute() == pytest.approx(vendi_score(x, q=q), abs=1e-9)


def test_vendi_merge_mixed_states():
    x = feats(60, 16, 3)
    a, b = VendiScore(), VendiScore()
    a.update(x[:40])  # past d: second-moment state
    b.update(x[40:])  # below d: row state
    assert a.merge(b).compute() == pytest.approx(vendi_score(x), abs=1e-9)
    c, d = VendiScore(), VendiScore()
    c.update(x[:10])
    d.update(x[10:])
    assert c.merge(d).compute() == pytest.approx(vendi_score(x), abs=1e-9)


def test_text_alignment_stream():
    i, t = feats(30, 8, 4), feats(30, 8, 5)
    for conv in ("cosine", "clipscore-hessel", "clipscore-torchmetrics"):
        m = TextAlignment(conv)
        m.update(i[:11], t[:11])
        o = TextAlignment(conv)
        o.update(i[11:], t[11:])
        assert m.merge(o).compute() == pytest.approx(text_alignment(i, t, conv), abs=1e-9)


def test_style_loss_stream():
    gen = torch.Generator().manual_seed(6)
    a = gram_matrices(
        [torch.randn(6, 4, 3, 3, generator=gen), torch.randn(6, 2, 2, 2, generator=gen)]
    )
    b = gram_matrices(
        [torch.randn(6, 4, 3, 3, generator=gen), torch.randn(6, 2, 2, 2, generator=gen)]
    )
    m = StyleLoss()
    m.update([x[:2] for x in a], [x[:2] for x in b])
    m.update([x[2:] for x in a], [x[2:] for x in b])
    assert m.compute() == pytest.approx(float(style_loss(a, b).mean()), abs=1e-9)


def test_frechet_stream():
    g, r = feats(50, 6, 7), feats(45, 6, 8) + 0.5
    m = FrechetDistance()
    for part in chunks(g, [20, 30]):
        m.update(gen=part)
    o = FrechetDistance()
    o.update(ref=r)
    assert m.merge(o).compute() == pytest.approx(frechet_distance(g, r), abs=1e-9)


def test_mean_score_stream():
    s = feats(9, 1, 9)
    m = MeanScore()
    m.update(s[:4])
    m.update(s[4:].squeeze(1))
    assert m.compute() == pytest.approx(mean_score(s), abs=1e-12)


def test_empty_stream_raises():
    with pytest.raises(ValueError):
        ImageSimilarity().compute()
    with pytest.raises(ValueError):
        VendiScore().compute()
    with pytest.raises(TypeError):
        ImageSimilarity().merge(CentroidDistance())
