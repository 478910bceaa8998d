import numpy as np
import pandas as pd
import pytest
from scipy import stats

from t2ibench.analysis import aggregate, metric_directions, rank_normalise
from t2ibench.errors import ResultsError


def rows(values, metric="image_similarity", leaf="a/x", **extra):
    return pd.DataFrame(
        {
            "checkpoint": [f"ck{i}" for i in range(len(values))],
            "config": [f"c{i}" for i in range(len(values))],
            "seed": "a",
            "epoch": 10,
            "category": leaf.split("/")[0],
            "class": leaf.split("/")[1],
            "leaf": leaf,
            "prompt_type": "train",
            "metric": metric,
            "encoder": "dinov2-l",
            "resize": "letterbox",
            "value": values,
            **extra,
        }
    )


def test_ties_take_average_rank():
    s = rank_normalise(rows([0.1, 0.5, 0.5, 0.9]))["score"].tolist()
    # ranks 1, 2.5, 2.5, 4 of n = 4
    assert s == pytest.approx([0.0, 0.5, 0.5, 1.0])


def test_lower_is_better_flips_direction():
    s = rank_normalise(rows([0.1, 0.2, 0.3], metric="centroid_distance"))["score"].tolist()
    assert s == pytest.approx([1.0, 0.5, 0.0])
    s = rank_normalise(rows([0.1, 0.2, 0.3], metric="style_loss"))["score"].tolist()
    assert s == pytest.approx([1.0, 0.5, 0.0])


def test_missing_values_stay_missing_and_do_not_count():
    s = rank_normalise(rows([0.3, np.nan, 0.1, 0.2]))["score"]
    assert np.isnan(s.iloc[1])
    assert s.drop(1).tolist() == pytest.approx([1.0, 0.0, 0.5])  # n = 3, not 4
    single = rank_normalise(rows([0.3, np.nan]))["score"]
    assert single.isna().all()  # nothing to compare with


def test_groups_are_separate():
    df = pd.concat(
        [rows([1.0, 2.0]), rows([5.0, 3.0], leaf="a/y"), rows([0.2, 0.1], metric="vendi")]
    )
    s = rank_normalise(df)["score"].tolist()
    assert s == [0.0, 1.0, 1.0, 0.0, 1.0, 0.0]


def test_third_party_metric_direction():
    df = rows([1.0, 2.0], metric="my_metric")
    with pytest.raises(ResultsError, match="my_metric"):
        rank_normalise(df)
    assert rank_normalise(df, {"my_metric": False})["score"].tolist() == [1.0, 0.0]
    df["higher_is_better"] = True
    assert rank_normalise(df)["score"].tolist() == [0.0, 1.0]
    # an explicit override beats the column
    assert metric_directions(df, {"my_metric": False}) == {"my_metric": False}


def scored(table):
    """Hand-made scores: skip ranking, set the score column directly."""
    return table.assign(score=table["value"])


def test_aggregation_means_and_standard_errors():
    # one config, 2 seeds × 2 classes (class y has two leaves) in category a, 1 class in b
    recs = []
    for seed, (x, y1, y2, z) in {"s1": (0.2, 0.4, 0.6, 1.0), "s2": (0.4, 0.8, 1.0, 0.0)}.items():
        for cls, leaf, v, cat in (("x", "a/x", x, "a"), ("y", "a/y/1", y1, "a"),
                                  ("y", "a/y/2", y2, "a"), ("z", "b/z", z, "b")):  # fmt: skip
            recs.append(dict(checkpoint=f"ck-{seed}", config="c", seed=seed, epoch=10,
                             category=cat, **{"class": cls}, leaf=leaf, prompt_type="train",
                             metric="vendi", encoder="dinov2-l", resize="stretch", value=v,
                             algorithm="lora"))  # fmt: skip
    agg = aggregate(scored(pd.DataFrame(recs)), bootstrap=200, seed=1)
    cls = agg["class"].set_index("class")
    assert cls.loc["y", "mean"] == pytest.approx((0.5 + 0.9) / 2)  # leaves averaged first
    assert cls.loc["y", "se"] == pytest.approx(np.std([0.5, 0.9], ddof=1) / np.sqrt(2))
    cat = agg["category"].set_index("category")
    units = [0.2, 0.5, 0.4, 0.9]  # seed × class units of category a
    assert cat.loc["a", "mean"] == pytest.approx(np.mean(units))
    assert cat.loc["a", "se"] == pytest.approx(np.std(units, ddof=1) / 2)
    assert cat.loc["a", "n"] == 4
    assert cat.loc["a", "ci_low"] <= cat.loc["a", "mean"] <= cat.loc["a", "ci_high"]
    assert cat.loc["b", "se"] == pytest.approx(np.std([1.0, 0.0], ddof=1) / np.sqrt(2))
    all_ = agg["all"].iloc[0]
    assert all_["mean"] == pytest.approx((np.mean(units) + 0.5) / 2)
    se_a, se_b = cat.loc["a", "se"], cat.loc["b", "se"]
    assert all_["se"] == pytest.approx(np.sqrt(se_a**2 + se_b**2) / 2)
    assert all_["algorithm"] == "lora"  # config columns carried along


def test_aggregation_skips_missing_scores():
    df = scored(rows([0.2, np.nan, 0.6]).assign(config="c", seed=["a", "b", "c"]))
    cat = aggregate(df)["category"].iloc[0]
    assert cat["n"] == 2 and cat["mean"] == pytest.approx(0.4)


def _three_seed_scores(rng, n_sims, mu=0.6, sd=0.2):
    """``n_sims`` configs, each one category with one class scored by 3 seeds drawn from
    N(mu, sd): the category mean's true value is ``mu``."""
    v = rng.normal(mu, sd, size=(n_sims, 3))
    recs = {
        "checkpoint": [f"ck{i}-{s}" for i in range(n_sims) for s in "abc"],
        "config": [f"c{i}" for i in range(n_sims) for _ in "abc"],
        "seed": [s for _ in range(n_sims) for s in "abc"],
    }
    n = 3 * n_sims
    return pd.DataFrame(
        {**recs, "epoch": 10, "category": "scene", "class": "castle", "leaf": "scene/castle",
         "prompt_type": "train", "metric": "vendi", "encoder": "dinov2-l", "resize": "stretch",
         "value": v.ravel(), "score": v.ravel()},
        index=range(n),
    )  # fmt: skip


def test_category_interval_covers_95_percent_with_three_seeds():
    # The regression: a percentile bootstrap over 3 units covered ~75 % of the true mean.
    rng = np.random.default_rng(7)
    mu = 0.6
    df = _three_seed_scores(rng, 2000, mu=mu)
    cat = aggregate(df, bootstrap=200, seed=3)["category"]
    assert (cat["n"] == 3).all() and (cat["interval"] == "Student-t").all()
    covered = ((cat["ci_low"] <= mu) & (mu <= cat["ci_high"])).mean()
    assert 0.93 <= covered <= 0.97, covered
    # the t interval is wider than a ±2 SE one at n = 3 (t_2 = 4.30); where it is not clipped
    # at the scores' bounds
    inside = cat[~cat["clipped"]]
    assert len(inside) > 100
    half = (inside["ci_high"] - inside["mean"]) / inside["se"]
    assert half.to_numpy() == pytest.approx(4.302653, rel=1e-5)


def test_percentile_bootstrap_over_three_units_under_covers():
    # Why the t interval: the percentile bootstrap's coverage at n = 3, measured the same way.
    rng = np.random.default_rng(11)
    v = rng.normal(0.0, 1.0, size=(2000, 3))
    idx = rng.integers(0, 3, size=(400, 3))
    boot = v[:, idx].mean(axis=2)  # (sims, resamples)
    lo, hi = np.quantile(boot, [0.025, 0.975], axis=1)
    covered = ((lo <= 0) & (0 <= hi)).mean()
    assert 0.70 <= covered <= 0.80, covered


def test_all_level_interval_uses_welch_satterthwaite():
    from scipy import stats

    rng = np.random.default_rng(5)
    a = _three_seed_scores(rng, 1)
    b = _three_seed_scores(rng, 1).assign(category="anime", **{"class": "x"}, leaf="anime/x")
    agg = aggregate(pd.concat([a, b], ignore_index=True))
    cat = agg["category"].set_index("category")
    row = agg["all"].iloc[0]
    se2 = cat["se"] ** 2
    df = se2.sum() ** 2 / ((se2**2) / (cat["n"] - 1)).sum()
    half = stats.t.ppf(0.975, df) * row["se"]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        (row["mean"] - half, row["mean"] + half)
    )


def test_issue22_item19_t_interval_at_every_size_bca_only_beside_it():
    """BCa over ≥ 20 units replaced the t interval without its coverage shown: the t interval is
    the one reported at every size; --bootstrap adds BCa bounds beside it for comparison."""
    rng = np.random.default_rng(2)
    many = pd.concat(
        [_three_seed_scores(rng, 1).assign(**{"class": f"k{i}"}, leaf=f"scene/k{i}")
         for i in range(8)], ignore_index=True,
    )  # fmt: skip  # 24 units in one category
    cat = aggregate(many, bootstrap=500, seed=0)["category"].iloc[0]
    assert cat["n"] == 24 and cat["interval"] == "Student-t"
    half = stats.t.ppf(0.975, 23) * cat["se"]
    assert (cat["ci_low"], cat["ci_high"]) == pytest.approx(
        (cat["mean"] - half, cat["mean"] + half)
    )
    assert cat["bca_low"] < cat["mean"] < cat["bca_high"]


@pytest.mark.parametrize("n", [3, 6, 12, 24])
def test_issue22_item19_t_coverage_at_the_sizes_used(n):
    """The sizes of the paper's data: 3, 6, 12 and 24 seed × class units per category. Scores are
    bounded and skewed (Beta(2, 3)); the t interval covers ~95 % at each size."""
    rng = np.random.default_rng(n)
    mu = 2 / 5
    v = rng.beta(2, 3, size=(20000, n))
    m, se = v.mean(axis=1), v.std(axis=1, ddof=1) / np.sqrt(n)
    half = stats.t.ppf(0.975, n - 1) * se
    covered = ((m - half <= mu) & (mu <= m + half)).mean()
    assert 0.93 <= covered <= 0.97, covered


def test_issue22_item19_bca_under_covers_at_twenty_units():
    """Why BCa is not used: at 20 units, on the same scores, it covers less than the t interval
    (seeded simulation, 400 samples × 999 resamples; benchmarks/interval_coverage.py gives 93.5 %
    against 94.7 % with 1000 samples)."""
    from t2ibench.analysis.aggregate import bca_interval

    rng = np.random.default_rng(20)
    mu, n = 2 / 5, 20
    bca = t = 0
    for _ in range(400):
        v = rng.beta(2, 3, size=n)
        lo, hi = bca_interval(v, 999, 0.95, rng)
        bca += lo <= mu <= hi
        half = stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / np.sqrt(n)
        t += v.mean() - half <= mu <= v.mean() + half
    assert bca / 400 <= 0.935 < t / 400, (bca / 400, t / 400)


def test_issue22_item21_score_intervals_stay_within_zero_and_one():
    """Rank scores live in [0, 1]; a t interval over three units near 1 ran past 1."""
    rng = np.random.default_rng(4)
    df = _three_seed_scores(rng, 50, mu=0.95, sd=0.08).assign(score=lambda d: d["score"].clip(0, 1))
    cat = aggregate(df)["category"]
    assert (cat["ci_low"] >= 0).all() and (cat["ci_high"] <= 1).all()
    assert cat["clipped"].any() and (cat.loc[cat["clipped"], "ci_high"] == 1).all()
    unclipped = cat[~cat["clipped"]]
    half = stats.t.ppf(0.975, 2) * unclipped["se"]
    assert (unclipped["ci_high"] - unclipped["mean"]).to_numpy() == pytest.approx(half.to_numpy())
