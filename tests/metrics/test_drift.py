"""drift = mean of 1 − cos(image, base image of the same prompt and seed); stream and registry."""

import pytest
import torch

from t2ibench.metrics import Drift, drift, get_metric


def test_values_stream_and_registration():
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [1.0, 0.0], [-1.0, -1.0]])
    assert drift(g, b) == pytest.approx((0.0 + 1.0 + 2.0) / 3)
    s = Drift()
    s.update(gen=g[:1], base=b[:1])
    o = Drift()
    o.update(gen=g[1:], base=b[1:])
    assert s.merge(o).compute() == pytest.approx(drift(g, b))
    with pytest.raises(ValueError, match="paired row by row"):
        drift(g, b[:2])
    spec = get_metric("drift")
    assert spec.inputs == ("gen", "base") and spec.references == ("base_images",)
    assert spec.encoder == "dinov2-b" and not spec.higher_is_better


def test_identical_images_drift_exactly_zero():
    # The base model scored against itself: 1 − g·b left ±1e-16 noise in the report.
    torch.manual_seed(0)
    x = torch.randn(20, 768)
    assert drift(x, x) == 0.0
    assert drift(x.float(), x.float().clone()) == 0.0
    s = Drift()
    s.update(gen=x, base=x)
    assert s.compute() == 0.0
    # Small drifts keep their precision: ½‖g − b‖² equals 1 − cos for unit vectors.
    y = x + 1e-3 * torch.randn(20, 768)
    cos = torch.nn.functional.cosine_similarity(x.double(), y.double(), dim=1)
    assert drift(y, x) == pytest.approx(float((1 - cos).mean()), rel=1e-6)
    assert drift(y, x) > 0
