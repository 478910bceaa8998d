"""Aggregate rank-normalised scores: leaf → class → category → all, with error bars.

For one config at one epoch and one measurement (metric, encoder, resize, prompt type):

* **class**: leaves are averaged into their class per checkpoint; the class value is the mean over
  seeds, with the standard error over seeds.
* **category**: the mean over (seed × class) units, standard error = sample std / √n over those
  units (the paper's error bars).
* **all**: the plain mean of the category means; its standard error combines the category ones as
  independent, √(Σ SE²) / K.

Missing scores are skipped (pandas' NaN-aware mean), so ``n`` counts only the units that have a
score. Every row has a 95 % confidence interval (``ci_low``/``ci_high``, method in ``interval``):
Student-t, ``mean ± t_{n−1} · se`` (for "all" with Welch–Satterthwaite degrees of freedom from the
category SEs), at every group size. Why t: at the sizes analyses meet (3 to 24 seed × class units
per category in the paper's data) it covers 93.8–94.8 % in simulation on bounded, skewed scores,
where a percentile bootstrap covers 74 % at 3 units and 93 % at 20–24, and a BCa bootstrap, the
only other candidate at ≥ 20 units, 93.5–94.7 %: not better, so not used
(``benchmarks/interval_coverage.py``, ``benchmarks/results/interval_coverage_2026-12-07.md``; an
audit measured 92–93 % for BCa). ``bootstrap > 0`` adds BCa bounds beside it
(``bca_low``/``bca_high``, where a group has at least :data:`MIN_BOOTSTRAP_UNITS` units) for
comparison only.

Scores live in [0, 1] and a t interval is symmetric, so near the bounds it runs past them: the
bounds are clipped to [0, 1] (``clipped`` says where); the mean and SE are untouched.
Differences between configs (the Table-1 order) use a paired bootstrap over seed × class units
instead (:mod:`t2ibench.analysis.tables`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from t2ibench.results import REQUIRED_COLUMNS

MEASURE: tuple[str, ...] = ("metric", "encoder", "resize", "prompt_type")
# Row annotations, not hyperparameters: how a value was computed (text-alignment convention, metric
# profile and its label for the measure), even where they happen to be constant within a config.
_NON_CONFIG = set(REQUIRED_COLUMNS) | {
    "score",
    "higher_is_better",
    "convention",
    "metric_profile",
    "measure",
}


def config_columns(df: pd.DataFrame) -> list[str]:
    """Extra columns that are constant within each config (its hyperparameters)."""
    extras = [c for c in df.columns if c not in _NON_CONFIG]
    if not extras:
        return []
    counts = df.groupby("config", dropna=False)[extras].nunique(dropna=True).max()
    return [c for c in extras if counts.get(c, 0) <= 1]


def _attach_config(table: pd.DataFrame, df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    if not cols:
        return table
    per_config = df.groupby("config", dropna=False)[cols].first().reset_index()
    return table.merge(per_config, on="config", how="left")


def class_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Per checkpoint, the mean score of each class (leaves averaged)."""
    keys = ["checkpoint", "config", "seed", "epoch", "category", "class", *MEASURE]
    return scores.groupby(keys, dropna=False, sort=True)["score"].mean().reset_index()


#: BCa bounds (comparison only) are computed from this many units; below, a bootstrap is useless.
MIN_BOOTSTRAP_UNITS = 20
T_INTERVAL = "Student-t"
BCA_INTERVAL = "BCa bootstrap"
#: The range of a rank score: intervals are clipped to it.
SCORE_RANGE = (0.0, 1.0)


def t_half_width(se, df, level: float = 0.95):
    """Half width of the t interval ``t_{df} · se`` (NaN where df < 1 or se is NaN)."""
    from scipy import stats

    se = np.asarray(se, dtype="float64")
    df = np.asarray(df, dtype="float64")
    with np.errstate(invalid="ignore"):
        q = stats.t.ppf(0.5 + level / 2, np.where(df >= 1, df, np.nan))
    return q * se


def bca_interval(values, n_boot: int, level: float, rng) -> tuple[float, float]:
    """BCa bootstrap interval of the mean of the finite ``values`` (seeded by ``rng``)."""
    from scipy import stats

    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    if len(v) < 2 or np.ptp(v) == 0.0:
        m = float(v.mean()) if len(v) else float("nan")
        return m, m
    res = stats.bootstrap(
        (v,), np.mean, n_resamples=n_boot, confidence_level=level, method="BCa",
        random_state=rng, vectorized=True,
    )  # fmt: skip
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def interval_note(bootstrap: int = 0) -> str:
    """One sentence for the report: how the aggregate intervals are made."""
    note = (
        "95% intervals: Student-t over seed × class units (mean ± t(n−1)·SE; for a category "
        "average, Welch–Satterthwaite degrees of freedom) at every group size, clipped to the "
        "scores' range [0, 1] (a t interval is symmetric and runs past the bounds near them; the "
        "CSVs' 'clipped' column marks those rows). Why t: at 3 to 24 units (the paper's data has "
        "3 to 24 per category) it covers 93.8–94.8% in simulation on bounded, skewed scores, "
        "where a percentile bootstrap covers 74% at 3 units and a BCa bootstrap 93.5–94.7% at "
        "20–24 units, no better (benchmarks/results/interval_coverage_2026-12-07.md)"
    )
    if bootstrap:
        note += (
            f"; BCa bounds from {bootstrap} resamples are in the CSVs (bca_low, bca_high; groups "
            f"of at least {MIN_BOOTSTRAP_UNITS} units) for comparison only"
        )
    return note + "."


def _set_interval(t: pd.DataFrame, half) -> None:
    """t interval ``mean ± half``, clipped to :data:`SCORE_RANGE` (``clipped`` marks where)."""
    lo, hi = t["mean"] - half, t["mean"] + half
    t["ci_low"], t["ci_high"] = lo.clip(lower=SCORE_RANGE[0]), hi.clip(upper=SCORE_RANGE[1])
    t["clipped"] = (lo < SCORE_RANGE[0]) | (hi > SCORE_RANGE[1])
    t["interval"] = T_INTERVAL


def aggregate(
    scores: pd.DataFrame,
    *,
    bootstrap: int = 0,
    ci_level: float = 0.95,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Aggregate a scored results table (with a ``score`` column, see
    :func:`t2ibench.analysis.rank_normalise`).

    Returns ``{"class": ..., "category": ..., "all": ...}``; each table has one row per config,
    epoch and measurement with ``mean``, ``se``, ``n`` (units with a score), the config's
    hyperparameter columns, and ``ci_low``/``ci_high`` (clipped to [0, 1]; ``clipped``) with their
    method in ``interval`` (see the module docstring; ``bootstrap`` resamples for BCa bounds beside
    them, ``bca_low``/``bca_high``, where a group has enough units).
    """
    cfg_cols = config_columns(scores)
    units = class_scores(scores)
    rng = np.random.default_rng(seed)
    tables: dict[str, pd.DataFrame] = {}

    base = ["config", "epoch", *MEASURE]
    for level, keys in (("class", [*base, "category", "class"]), ("category", [*base, "category"])):
        g = units.groupby(keys, dropna=False, sort=True)["score"]
        n = g.count()
        t = pd.DataFrame({"mean": g.mean(), "se": g.std(ddof=1) / np.sqrt(n), "n": n})
        t = t.reset_index()
        half = t_half_width(t["se"], t["n"] - 1, ci_level)
        _set_interval(t, half)
        if bootstrap > 0:
            t["bca_low"], t["bca_high"] = np.nan, np.nan
            big = np.flatnonzero(t["n"].to_numpy() >= MIN_BOOTSTRAP_UNITS)
            if len(big):
                groups = [v.to_numpy() for _, v in g]
                for i in big:
                    lo, hi = bca_interval(groups[i], bootstrap, ci_level, rng)
                    t.loc[i, ["bca_low", "bca_high"]] = [lo, hi]
        tables[level] = t

    cat = tables["category"]
    g = cat.groupby(base, dropna=False, sort=True)
    k = g["mean"].count()
    t = pd.DataFrame(
        {
            "mean": g["mean"].mean(),
            # Independent categories: Var(mean of K) = Σ Var_c / K².
            "se": np.sqrt(g["se"].apply(lambda s: (s**2).sum(min_count=len(s)))) / k,
            "n": g["n"].sum(),
            "n_categories": k,
        }
    ).reset_index()
    # Welch–Satterthwaite: df = (Σ s_c²)² / Σ (s_c⁴ / (n_c − 1)) with s_c = the category SEs.
    cat = cat.assign(_v=cat["se"] ** 2, _w=cat["se"] ** 4 / (cat["n"] - 1))
    gw = cat.groupby(base, dropna=False, sort=True)
    num = gw["_v"].sum(min_count=1) ** 2
    den = gw["_w"].sum(min_count=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        df_all = (num / den).to_numpy()
    half = t_half_width(t["se"], df_all, ci_level)
    _set_interval(t, half)
    tables["all"] = t
    return {name: _attach_config(tab, scores, cfg_cols) for name, tab in tables.items()}
