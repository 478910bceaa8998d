"""KID equals torchmetrics' KernelInceptionDistance on the same features (same subset draws)."""

import pytest
import torch

from t2ibench.metrics import get_metric
from t2ibench.metrics.kid import (
    KernelInceptionDistance,
    kernel_inception_distance,
    kernel_inception_distance_with_std,
)

torchmetrics_kid = pytest.importorskip("torchmetrics.image.kid")


def feats(n, d, seed, shift=0.0):
    return (
        torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        + shift
    )


def reference_kid(gen, ref, seed, **options):
    """torchmetrics with an identity feature extractor: features go straight into its state; its
    subset draws use the global generator, seeded here as ours is."""
    metric = torchmetrics_kid.KernelInceptionDistance(feature=torch.nn.Identity(), **options)
    metric.update(ref, real=True)
    metric.update(gen, real=False)
    torch.manual_seed(seed)
    mean, std = metric.compute()
    return float(mean), float(std)


@pytest.mark.parametrize(
    "n_gen,n_ref,options",
    [
        (40, 30, dict(subsets=7, subset_size=20)),
        (25, 25, dict(subsets=3, subset_size=25)),
        (50, 60, dict(subsets=5, subset_size=10, degree=2, gamma=0.3, coef=0.5)),
    ],
)
def test_matches_torchmetrics(n_gen, n_ref, options):
    gen, ref = feats(n_gen, 16, 1, shift=0.3), feats(n_ref, 16, 2)
    expected = reference_kid(gen, ref, seed=123, **options)
    got = kernel_inception_distance_with_std(gen, ref, seed=123, **options)
    assert got[0] == pytest.approx(expected[0], abs=1e-6)
    assert got[1] == pytest.approx(expected[1], abs=1e-6)
    # Distinct subsets were drawn unless a subset is a whole set.
    assert (got[1] > 0) == (options["subset_size"] < min(n_gen, n_ref))


def test_seeded_and_deterministic():
    gen, ref = feats(30, 8, 3, shift=0.5), feats(30, 8, 4)
    a = kernel_inception_distance(gen, ref, subsets=5, subset_size=10, seed=7)
    assert a == kernel_inception_distance(gen, ref, subsets=5, subset_size=10, seed=7)
    assert a != kernel_inception_distance(gen, ref, subsets=5, subset_size=10, seed=8)
    # Same distribution → near zero; shifted → clearly positive.
    same = kernel_inception_distance(
        feats(200, 8, 5), feats(200, 8, 6), subsets=10, subset_size=100
    )
    far = kernel_inception_distance(
        feats(200, 8, 5, shift=1.0), feats(200, 8, 6), subsets=10, subset_size=100
    )
    assert abs(same) < 0.05 < far


def test_stream_update_and_merge_equal_the_function():
    gen, ref = feats(33, 8, 8), feats(21, 8, 9)
    a = KernelInceptionDistance(subsets=4, subset_size=15, seed=3)
    a.update(gen=gen[:10], ref=ref[:5])
    b = KernelInceptionDistance(subsets=4, subset_size=15, seed=3)
    b.update(gen=gen[10:])
    b.update(ref=ref[5:])
    a.merge(b)
    expected = kernel_inception_distance_with_std(gen, ref, subsets=4, subset_size=15, seed=3)
    assert a.compute_with_std() == pytest.approx(expected, abs=1e-12)
    assert a.compute() == pytest.approx(expected[0], abs=1e-12)
    with pytest.raises(ValueError, match="into itself"):
        a.merge(a)
    with pytest.raises(ValueError, match="shards with options"):
        a.merge(KernelInceptionDistance(subsets=4, subset_size=15, seed=4))


def test_small_sets_and_bad_input():
    gen, ref = feats(6, 4, 1), feats(9, 4, 2)
    # subset_size above the set sizes shrinks to the smaller set (torchmetrics would raise).
    assert kernel_inception_distance(gen, ref, subsets=2) == pytest.approx(
        kernel_inception_distance(gen, ref, subsets=2, subset_size=6), abs=0
    )
    with pytest.raises(ValueError, match="at least 2"):
        kernel_inception_distance(gen[:1], ref)
    with pytest.raises(ValueError, match="feature dims"):
        kernel_inception_distance(gen, feats(9, 5, 2))
    with pytest.raises(ValueError, match="needs generated"):
        KernelInceptionDistance().compute()


def test_registered_next_to_frechet():
    spec = get_metric("kid")
    assert spec.inputs == ("gen", "ref") and spec.criterion == "fidelity"
    assert not spec.higher_is_better
    s = spec.create_stream(subsets=2, subset_size=5)
    gen, ref = feats(8, 4, 1), feats(8, 4, 2)
    s.update(gen=gen, ref=ref)
    assert s.compute() == pytest.approx(spec.function(gen=gen, ref=ref, subsets=2, subset_size=5))


def test_item18_streaming_refuses_mismatched_widths_at_update():
    """Issue 22 item 18: rows of another width were kept and failed at compute() with a raw
    RuntimeError from the kernel's matmul; refused at update() in one line."""
    kid = KernelInceptionDistance(subsets=2, subset_size=2)
    kid.update(gen=torch.randn(4, 8))
    with pytest.raises(ValueError, match=r"ref: feature size 6 differs from .*\(8\)"):
        kid.update(ref=torch.randn(4, 6))
    with pytest.raises(ValueError, match="gen: feature size 5"):
        kid.update(gen=torch.randn(3, 5))
    kid.update(ref=torch.randn(4, 8))  # the right width still goes in
    assert isinstance(kid.compute(), float)
    other = KernelInceptionDistance(subsets=2, subset_size=2)
    other.update(gen=torch.randn(4, 3))
    with pytest.raises(ValueError, match="feature size 3 differs from 8"):
        kid.merge(other)
