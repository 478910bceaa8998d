"""Rank normalisation: raw metric values → comparable scores in [0, 1], 1 = best.

Within each group of :data:`RANK_GROUP` (one leaf, metric, encoder, resize mode and prompt type),
the checkpoints are ranked by how *good* their value is (direction from the metric's
``higher_is_better``); ties take the average rank; ``score = (rank - 1) / (n - 1)``. Missing values
(NaN) get no rank, stay missing, and do not count in ``n``. A group with a single non-missing value
has no comparison to make: its score is NaN.

A table that holds several bases (a ``base`` column, as a sweep across bases writes) is ranked
within each base too: an SDXL checkpoint is only ever ranked against SDXL checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from t2ibench.errors import ResultsError

RANK_GROUP: tuple[str, ...] = ("leaf", "metric", "encoder", "resize", "prompt_type")
#: The results column that names the base model; ranks never cross it.
BASE_COLUMN = "base"


def rank_group(df: pd.DataFrame, group: tuple[str, ...] = RANK_GROUP) -> tuple[str, ...]:
    """``group``, plus ``base`` when ``df`` holds more than one base."""
    if BASE_COLUMN not in group and len(bases_of(df)) > 1:
        return (*group, BASE_COLUMN)
    return group


def bases_of(df: pd.DataFrame) -> list[str]:
    """The bases a results table holds (its ``base`` column; empty without one)."""
    if BASE_COLUMN not in df.columns:
        return []
    return sorted(str(b) for b in df[BASE_COLUMN].dropna().unique() if str(b))


#: The base of rows that have none in a table where other rows name theirs (a results table from
#: before results named their base, concatenated with newer ones).
UNNAMED_BASE = "unnamed base"


def name_bases(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every row's base named: a table without a ``base`` column (written before
    results named their base) is one base and stays as it is; in one with the column, rows without
    a value (an old table concatenated with newer ones) are :data:`UNNAMED_BASE`."""
    if BASE_COLUMN not in df.columns:
        return df
    col = df[BASE_COLUMN]
    missing = col.isna() | (col.astype(str).str.strip() == "")
    if missing.all():
        return df.drop(columns=BASE_COLUMN)
    if not missing.any():
        return df
    return df.assign(**{BASE_COLUMN: col.where(~missing, UNNAMED_BASE).astype(str)})


def base_tag(base: str) -> str:
    """``base`` as a file-name part (a figure per base): safe characters only."""
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base)


def by_base(df: pd.DataFrame) -> list[tuple[str | None, pd.DataFrame]]:
    """``[(base, its rows), ...]`` when ``df`` holds several bases, else ``[(None, df)]``: the
    order statistics (epoch trends and claims, Table 1) are computed within each base."""
    bases = bases_of(df)
    if len(bases) < 2:
        return [(None, df)]
    return [(b, df[df[BASE_COLUMN].astype(str) == b]) for b in bases]


def metric_directions(
    df: pd.DataFrame, overrides: Mapping[str, bool] | None = None
) -> dict[str, bool]:
    """``higher_is_better`` for every metric in ``df``.

    Order of precedence: ``overrides`` (metric → bool), then a ``higher_is_better`` column in the
    results (must be constant per metric), then the metric registry. A metric none of them knows
    raises :class:`ResultsError` naming it.
    """
    overrides = dict(overrides or {})
    directions: dict[str, bool] = {}
    column: dict[str, bool] = {}
    if "higher_is_better" in df.columns:
        hib = df[["metric", "higher_is_better"]].dropna().drop_duplicates()
        for metric, rows in hib.groupby("metric"):
            vals = {_as_bool(v, metric) for v in rows["higher_is_better"]}
            if len(vals) > 1:
                raise ResultsError(f"metric {metric!r}: 'higher_is_better' is both true and false")
            column[metric] = vals.pop()
    unknown = []
    for metric in sorted(df["metric"].unique()):
        if metric in overrides:
            directions[metric] = bool(overrides[metric])
        elif metric in column:
            directions[metric] = column[metric]
        else:
            hib = _registry_direction(metric)
            if hib is None:
                unknown.append(metric)
            else:
                directions[metric] = hib
    if unknown:
        raise ResultsError(
            f"metric(s) {unknown} are not in the metric registry: add a 'higher_is_better' column "
            "to the results or pass a direction (--direction NAME=higher|lower)"
        )
    return directions


def _as_bool(v: object, metric: str) -> bool:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    s = str(v).strip().lower()
    if s in {"true", "1", "1.0", "yes", "higher"}:
        return True
    if s in {"false", "0", "0.0", "no", "lower"}:
        return False
    raise ResultsError(f"metric {metric!r}: cannot read 'higher_is_better' value {v!r}")


def _registry_direction(metric: str) -> bool | None:
    from t2ibench.metrics import get_metric
    from t2ibench.registry import UnknownNameError

    try:
        return bool(get_metric(metric).higher_is_better)
    except UnknownNameError:
        return None


def rank_normalise(
    df: pd.DataFrame,
    directions: Mapping[str, bool] | None = None,
    group: tuple[str, ...] = RANK_GROUP,
) -> pd.DataFrame:
    """Return a copy of ``df`` with a ``score`` column (see the module docstring).

    ``directions`` maps metric → higher_is_better and overrides the table and the registry.
    With several bases in ``df`` the groups are also split by base (:func:`rank_group`).
    """
    group = rank_group(df, group)
    dirs = metric_directions(df, directions)
    out = df.copy()
    sign = out["metric"].map(dirs).map({True: 1.0, False: -1.0}).to_numpy()
    # Rank "goodness": flipping the sign of lower-is-better values makes the best value the
    # largest, so it takes rank n and score 1.
    goodness = pd.Series(out["value"].to_numpy(dtype="float64") * sign, index=out.index)
    keys = [out[c] for c in group]
    ranks = goodness.groupby(keys, sort=False, dropna=False).rank(method="average")
    n = goodness.groupby(keys, sort=False, dropna=False).transform("count")
    with np.errstate(invalid="ignore", divide="ignore"):
        score = (ranks - 1.0) / (n - 1.0)
    out["score"] = score.where(n > 1)
    return out
