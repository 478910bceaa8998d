"""The fixed seeded image order every run generates in, and an adaptive round's prefix of it."""

from t2ibench.pipeline.order import ordered_jobs, round_end
from t2ibench.prompts import GenerationJob


def test_image_order_is_seeded_and_spreads_over_leaves():
    jobs = [
        GenerationJob(leaf, pt, f"{leaf} {pt}", 1000 + k, k)
        for leaf in ("a", "b")
        for pt in ("train", "trigger")
        for k in range(5)
    ]
    ordered = ordered_jobs(jobs)
    assert ordered == ordered_jobs(jobs) and sorted(map(repr, ordered)) == sorted(map(repr, jobs))
    # prompt type by prompt type; the leaves in turn: every prefix of 2k holds k images per leaf
    assert [j.prompt_type for j in ordered] == ["train"] * 10 + ["trigger"] * 10
    assert [j.leaf for j in ordered[:10]] == ["a", "b"] * 5
    assert [j.index for j in ordered[:10:2]] != list(range(5))  # permuted, not index order
    # a round's prefix never splits a batch of the whole list
    assert round_end(10, 20, leaves=2, images=1, batch=4) == 12
    assert round_end(10, 20, leaves=2, images=2, batch=4) == 16
    assert round_end(10, 20, leaves=2, images=9, batch=4) == 20
