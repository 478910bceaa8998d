"""The report's section for a results table that holds several bases (a sweep across bases):
each headline measurement as a table of methods × bases, raw values with their intervals side by
side, each base's own base model as the first row.

Raw values, not rank scores: rank scores are computed within each base
(:func:`t2ibench.analysis.scores.rank_group`), so a score of 1 on SDXL and one on FLUX both say
"best on its base" and comparing them across bases says nothing; the metrics' own units do.
"""

from __future__ import annotations

import pandas as pd

from t2ibench.analysis.checkpoints import headline_measures
from t2ibench.analysis.raw import BASE_CHECKPOINT, INTERVAL, MEASURE, t_interval
from t2ibench.analysis.report import Section
from t2ibench.analysis.scores import BASE_COLUMN, bases_of

#: The row of each base's own (not fine-tuned) model in the side-by-side tables.
BASE_MODEL_ROW = "base model"


def _ci(mean: float, lo: float, hi: float, n: int) -> str:
    if pd.isna(mean):
        return ""
    if pd.isna(lo):
        return f"{mean:.3g} (n={n})"
    return f"{mean:.3g} [{lo:.3g}, {hi:.3g}]"


def side_by_side(df: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per base × method × measurement: ``n`` leaves, ``mean``, ``ci_low``, ``ci_high``,
    ``checkpoints``. A method's value on a leaf is the mean over its checkpoints on that base, each
    config at its last epoch (the methods' configs and seeds pooled); the leaves are the units of
    the Student-t interval, as in the raw-value view. The base model is method
    :data:`BASE_MODEL_ROW`."""
    df = df.dropna(subset=["value"])
    method = "algorithm" if "algorithm" in df.columns else "config"
    is_base = df["checkpoint"] == BASE_CHECKPOINT
    ck = df[~is_base]
    if "epoch" in ck.columns and ck["epoch"].notna().any():
        last = ck.groupby([BASE_COLUMN, "config"], dropna=False)["epoch"].transform("max")
        ck = ck[(ck["epoch"] == last) | last.isna()]
    ck = ck.assign(_method=ck[method].astype(str))
    base_rows = df[is_base].assign(_method=BASE_MODEL_ROW)
    rows = pd.concat([base_rows, ck], ignore_index=True)
    keys = [BASE_COLUMN, "_method", *MEASURE]
    per_leaf = rows.groupby([*keys, "leaf"], dropna=False)["value"].mean().reset_index()
    counts = rows.groupby(keys, dropna=False)["checkpoint"].nunique()
    out = []
    for key, g in per_leaf.groupby(keys, dropna=False):
        mean, lo, hi, n = t_interval(g["value"], level)
        out.append(
            dict(zip(keys, key, strict=True))
            | {"n": n, "mean": mean, "ci_low": lo, "ci_high": hi, "checkpoints": counts[key]}
        )
    return pd.DataFrame(out).rename(columns={"_method": "method"})


def bases_section(
    df: pd.DataFrame, raw: pd.DataFrame, directions: dict[str, bool]
) -> Section | None:
    """ "Bases side by side" when ``df`` holds more than one base (None otherwise)."""
    bases = bases_of(df)
    if len(bases) < 2:
        return None
    sec = Section("Bases side by side")
    sec.text(
        f"The results hold {len(bases)} bases ({', '.join(bases)}). Rank scores are computed "
        "within each base: a checkpoint is ranked only against checkpoints of its own base, so a "
        "score says how it stands on that base, never against another base. Across bases, compare "
        "the raw values below, in the metrics' own units (↑ higher is better, ↓ lower): per "
        "headline measurement, one row per method and one column per base; a method's value on "
        "a leaf is the mean over its checkpoints on that base (each config at its last epoch, "
        f"configs and seeds pooled), with its 95 % interval ({INTERVAL}; n = leaves). The first row "
        "is each base's own model, scored on the same prompts and seeds."
    )
    table = side_by_side(df)
    heads = headline_measures(raw)
    keys = list(MEASURE)
    wanted = table.merge(heads, on=keys) if not heads.empty else table.iloc[0:0]
    if wanted.empty:
        sec.text("No headline measurement is present in the results: see raw_values.csv.")
        return sec
    for (criterion, *measure), g in wanted.groupby(["criterion", *keys], sort=True):
        metric, encoder, resize, prompt_type = measure
        arrow = "↑" if directions.get(metric, True) else "↓"
        cells = g.assign(cell=[_ci(r["mean"], r["ci_low"], r["ci_high"], r["n"])
                               for _, r in g.iterrows()])  # fmt: skip
        wide = cells.pivot_table(
            index="method", columns=BASE_COLUMN, values="cell", aggfunc="first"
        ).reindex(columns=bases)
        order = [BASE_MODEL_ROW] + sorted(m for m in wide.index if m != BASE_MODEL_ROW)
        wide = wide.reindex([m for m in order if m in wide.index]).fillna("")
        wide.columns.name = None
        where = " · ".join(x for x in (encoder, resize) if x)
        sec.table(
            wide,
            f"{criterion}: {metric} {arrow} <{prompt_type}>" + (f" · {where}" if where else ""),
            max_rows=100,
        )
    return sec
