"""Aggregate rank-normalised scores: leaf → class → category → all, with error bars.

For one config at one epoch and one measurement (metric, encoder, resize, prompt type):

* **class**: leaves are averaged into their class per checkpoint; the class value is the mean over
  seeds, with the standard error over seeds.
* **category**: the mean over (seed × class) units, standard error = sample std / √n over those
  units (the paper's error bars).
* **all**: the plain mean of the category means; its standard error combines the category ones as
  independent, √(Σ SE²) / K.

Missing scores are skipped (pandas' NaN-aware mean), so ``n`` counts only the units that have a
score. With ``bootstrap > 0``, percentile confidence intervals come from resampling the units
(stratified by category for "all") with a seeded generator.
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


def _bootstrap_ci(
    values: np.ndarray, strata: np.ndarray | None, n_boot: int, level: float, rng
) -> tuple[float, float]:
    values = np.asarray(values, dtype="float64")
    ok = ~np.isnan(values)
    values = values[ok]
    if len(values) < 2:
        return float("nan"), float("nan")
    if strata is None:
        idx = rng.integers(0, len(values), size=(n_boot, len(values)))
        stats = values[idx].mean(axis=1)
    else:
        strata = np.asarray(strata)[ok]
        parts = []
        for s in np.unique(strata):
            v = values[strata == s]
            idx = rng.integers(0, len(v), size=(n_boot, len(v)))
            parts.append(v[idx].mean(axis=1))
        stats = np.mean(parts, axis=0)  # plain mean of category means, as for the estimate
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


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
    hyperparameter columns and, with ``bootstrap > 0`` resamples, ``ci_low``/``ci_high``.
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
        if bootstrap > 0:
            cis = [
                _bootstrap_ci(v.to_numpy(), None, bootstrap, ci_level, rng)
                for _, v in units.groupby(keys, dropna=False, sort=True)["score"]
            ]
            t["ci_low"] = [c[0] for c in cis]
            t["ci_high"] = [c[1] for c in cis]
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
    if bootstrap > 0:
        cis = [
            _bootstrap_ci(v["score"].to_numpy(), v["category"].to_numpy(), bootstrap, ci_level, rng)
            for _, v in units.groupby(base, dropna=False, sort=True)
        ]
        t["ci_low"] = [c[0] for c in cis]
        t["ci_high"] = [c[1] for c in cis]
    tables["all"] = t
    return {name: _attach_config(tab, scores, cfg_cols) for name, tab in tables.items()}
