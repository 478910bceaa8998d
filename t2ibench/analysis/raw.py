"""The raw-value view: what each checkpoint (and the base model) measured, with intervals that do not
over-claim at small n.

The results table holds one value per (checkpoint, leaf, prompt type, metric, encoder, resize). For
one checkpoint and one measurement the leaves are the units: the view shows their mean with a
Student-t interval (``mean ± t_{n−1} · sd/√n``), the change against the base model paired by leaf
(a t interval over the per-leaf differences) and, where the real images give a ceiling for the
measurement, the share of that ceiling (higher-is-better metrics only). A t interval over a handful
of leaves is honest about its width where a percentile bootstrap over 3 units covers ~75 %, not 95 %.

Measurements whose value is the same everywhere (e.g. Vendi on ``alter`` prompts with one image per
prompt is 1.0 by construction) carry no information: :func:`constant_measures` finds them and the
analysis drops them from every table and criterion, and lists them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: The checkpoint name under which the base model's images are scored: an anchor, never a config.
BASE_CHECKPOINT = "base"
MEASURE: tuple[str, ...] = ("metric", "encoder", "resize", "prompt_type")
INTERVAL = "Student-t over leaves"


def t_interval(values, level: float = 0.95) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)`` of the finite ``values``; the interval is NaN for n < 2."""
    from scipy import stats

    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(v.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n


def normalise_base(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of config ``base`` are the base model's, whatever their checkpoint name (a sweep
    prefixes checkpoints with the run name, and every run of it scores the same base images):
    name them ``base`` and keep one row per key."""
    from t2ibench.results import key_columns

    is_base = (df["config"] == BASE_CHECKPOINT) | (df["checkpoint"] == BASE_CHECKPOINT)
    if not is_base.any():
        return df
    df = df.copy()
    df.loc[is_base, "checkpoint"] = BASE_CHECKPOINT
    df.loc[is_base, "config"] = BASE_CHECKPOINT
    return df.drop_duplicates(key_columns(df), keep="last").reset_index(drop=True)


def split_base(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the configs' rows, the base model's rows)."""
    is_base = df["checkpoint"] == BASE_CHECKPOINT
    return df[~is_base], df[is_base]


def constant_measures(df: pd.DataFrame, tol: float = 1e-9) -> pd.DataFrame:
    """Measurements with at least two values that are all equal (within ``tol``)."""
    keys = list(MEASURE)
    g = df.dropna(subset=["value"]).groupby(keys, dropna=False)["value"]
    t = pd.DataFrame({"value": g.first(), "n_values": g.count(), "spread": g.max() - g.min()})
    t = t[(t["n_values"] >= 2) & (t["spread"].abs() <= tol)].drop(columns="spread")
    return t.reset_index()


def drop_measures(df: pd.DataFrame, measures: pd.DataFrame) -> pd.DataFrame:
    """``df`` without the rows of ``measures`` (a table with the :data:`MEASURE` columns)."""
    if measures.empty:
        return df
    keys = list(MEASURE)
    drop = pd.MultiIndex.from_frame(measures[keys].astype(str))
    mine = pd.MultiIndex.from_frame(df[keys].astype(str))
    return df[~mine.isin(drop)]


def _t_summary(g, level: float, prefix: str = "") -> pd.DataFrame:
    """Vectorised :func:`t_interval` over a grouped Series."""
    from scipy import stats

    n = g.count()
    mean = g.mean()
    sd = g.std(ddof=1)
    tq = pd.Series(stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)), index=n.index)
    half = (tq * sd / np.sqrt(n)).where(n >= 2)
    return pd.DataFrame(
        {f"{prefix}n": n, prefix or "mean": mean, f"{prefix}ci_low" if prefix else "ci_low":
         mean - half, f"{prefix}ci_high" if prefix else "ci_high": mean + half}
    )  # fmt: skip


def raw_table(
    df: pd.DataFrame,
    ceilings: pd.DataFrame | None = None,
    directions: dict[str, bool] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """One row per checkpoint × measurement: ``n`` leaves, ``mean``, ``ci_low``/``ci_high``,
    ``delta`` (against the base model, paired by leaf) with its interval, ``ceiling`` and
    ``share_of_ceiling`` = mean / ceiling over the same leaves (higher-is-better metrics).

    ``ceilings`` has the columns ``leaf``, ``metric``, ``encoder``, ``resize``, ``value`` (the
    real-image value of a leaf; it holds for every prompt type).
    """
    keys = list(MEASURE)
    # ``step``: checkpoints placed by training step (evaluate-checkpoints) keep it for the curves
    step = ["step"] if "step" in df.columns else []
    # several bases: each checkpoint (and each base model) is paired with its own base model
    base_col = ["base"] if "base" in df.columns and df["base"].nunique() > 1 else []
    group_keys = ["checkpoint", *base_col, "config", "epoch", *step, *keys]
    df = df.dropna(subset=["value"])
    cols = [*group_keys, "n", "mean", "ci_low", "ci_high", "delta", "delta_ci_low",
            "delta_ci_high", "ceiling", "share_of_ceiling"]  # fmt: skip
    if df.empty:
        return pd.DataFrame(columns=cols)
    out = _t_summary(df.groupby(group_keys, dropna=False, sort=True)["value"], level)
    out = out.reset_index()
    base = df[df["checkpoint"] == BASE_CHECKPOINT][[*keys, *base_col, "leaf", "value"]]
    base = base.drop_duplicates([*keys, *base_col, "leaf"])
    base = base.rename(columns={"value": "base_value"})
    if not base.empty:
        paired = df[df["checkpoint"] != BASE_CHECKPOINT].merge(base, on=[*keys, *base_col, "leaf"])
        paired["diff"] = paired["value"] - paired["base_value"]
        d = _t_summary(paired.groupby(group_keys, dropna=False)["diff"], level, prefix="delta")
        d = d.drop(columns="deltan").rename(columns={"deltaci_low": "delta_ci_low",
                                                     "deltaci_high": "delta_ci_high"})  # fmt: skip
        out = out.merge(d.reset_index(), on=group_keys, how="left")
    if ceilings is not None and not ceilings.empty:
        ck = ["metric", "encoder", "resize", "leaf"]
        ceil = (
            ceilings.groupby(ck, as_index=False)["value"]
            .mean()
            .rename(columns={"value": "ceiling_value"})
        )
        m = df.merge(ceil, on=ck)
        if not m.empty:
            c = m.groupby(group_keys, dropna=False)[["value", "ceiling_value"]].mean()
            c = c.rename(columns={"ceiling_value": "ceiling", "value": "_ours"}).reset_index()
            out = out.merge(c, on=group_keys, how="left")
            up = out["metric"].map(lambda mt: (directions or {}).get(mt, True)).astype(bool)
            # Clipped at 0: a negative mean (cosines can be) is no share of a positive ceiling.
            out["share_of_ceiling"] = (
                (out["_ours"] / out["ceiling"]).clip(lower=0).where(up & (out["ceiling"] > 0))
            )
            out = out.drop(columns="_ours")
    if "measure" in df.columns and df["measure"].notna().any():
        # A metric profile's label for the measurement ("DINO", "CLIP-I"): shown beside the
        # metric's own name in the report.
        labels = df.dropna(subset=["measure"]).groupby(["metric", "encoder"])["measure"].first()
        pairs = zip(out["metric"], out["encoder"], strict=True)
        out["measure"] = [labels.get(pair) for pair in pairs]
        cols = [*cols, "measure"]
    for c in cols:
        if c not in out.columns:
            out[c] = np.nan
    out = out[cols]
    # The base model first, then checkpoints by epoch.
    order = (out["checkpoint"] != BASE_CHECKPOINT).astype(int)
    out = out.assign(_o=order).sort_values(["metric", "prompt_type", "encoder", "resize", "_o",
                                            "epoch", "checkpoint"])  # fmt: skip
    return out.drop(columns="_o").reset_index(drop=True)


def ceiling_rows(ceilings: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """The "real images" rows: the leave-one-out ceiling per measurement, mean and t interval over
    leaves."""
    rows = []
    for key, g in ceilings.groupby(["metric", "encoder", "resize"], dropna=False, sort=True):
        mean, lo, hi, n = t_interval(g["value"], level)
        rows.append(dict(zip(["metric", "encoder", "resize"], key, strict=True), n=n, mean=mean,
                         ci_low=lo, ci_high=hi))  # fmt: skip
    return pd.DataFrame(rows, columns=["metric", "encoder", "resize", "n", "mean", "ci_low",
                                       "ci_high"])  # fmt: skip
