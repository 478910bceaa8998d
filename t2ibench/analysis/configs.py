"""The configs of a results table: their hyperparameter columns, each algorithm's default config,
and which hyperparameter a config varies (the paper's one-at-a-time design)."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Hyperparameters whose change from an algorithm's default config names the config's "variant".
VARIED_COLUMNS: tuple[str, ...] = ("preset", "lr", "dim", "alpha", "factor", "caption")


def config_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per config with its hyperparameter columns (those present)."""
    cols = [c for c in ("algorithm", *VARIED_COLUMNS) if c in df.columns]
    t = df[["config", *cols]].drop_duplicates("config").set_index("config")
    if "algorithm" not in t.columns:
        t["algorithm"] = "unknown"
    return t


def _same(a: object, b: object) -> bool:
    if pd.isna(a) and pd.isna(b):
        return True
    return bool(a == b)


def default_configs(configs: pd.DataFrame) -> dict[str, pd.Series]:
    """Per algorithm, its default hyperparameters: the most common value of each column (the
    one-at-a-time design leaves the default in the majority)."""
    out = {}
    for algo, rows in configs.groupby("algorithm", dropna=False):
        modes = {}
        for c in rows.columns:
            if c == "algorithm":
                continue
            vc = rows[c].value_counts(dropna=False)
            modes[c] = vc.index[0] if len(vc) else np.nan
        out[algo] = pd.Series(modes)
    return out


def varied_hyperparameter(configs: pd.DataFrame) -> pd.Series:
    """config → which hyperparameter(s) differ from its algorithm's default (``default`` if none);
    dim/alpha/factor changes read ``capacity`` (alpha alone: ``alpha``)."""
    defaults = default_configs(configs)
    labels = {}
    for cfg, row in configs.iterrows():
        ref = defaults[row["algorithm"]]
        diff = [c for c in ref.index if c in row.index and not _same(row[c], ref[c])]
        names = []
        for c in diff:
            name = "capacity" if c in ("dim", "factor") else c
            if c == "alpha" and ("dim" in diff):
                continue
            if name not in names:
                names.append(name)
        labels[cfg] = "+".join(names) if names else "default"
    return pd.Series(labels, name="varied")
