"""Summary tables: which hyperparameter a config varies, the Table-1-style rank table, and epoch
trends per category."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from t2ibench.analysis.shap_analysis import NATIVE, resolve_measure
from t2ibench.analysis.targets import Target, criteria_targets

#: Hyperparameters whose change from an algorithm's default config names the config's "variant".
VARIED_COLUMNS: tuple[str, ...] = ("preset", "lr", "dim", "alpha", "factor", "caption")

#: The paper's Table 1 (ranks 1-5, a larger number = more of the criterion).
PAPER_TABLE1: dict[str, dict[str, int]] = {
    "fidelity": {"lora": 3, "loha": 2, "lokr": 4, "native (high lr)": 5, "native (low lr)": 1},
    "controllability": {
        "lora": 2,
        "loha": 4,
        "lokr": 1,
        "native (high lr)": 3,
        "native (low lr)": 5,
    },
    "diversity": {"lora": 3, "loha": 4, "lokr": 2, "native (high lr)": 1, "native (low lr)": 5},
}


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


def algorithm_groups(configs: pd.DataFrame) -> dict[str, list[str]]:
    """Group label → configs for the rank table: each algorithm's default config; native split by
    learning rate (its default config and its lr variants)."""
    varied = varied_hyperparameter(configs)
    groups: dict[str, list[str]] = {}
    for cfg, row in configs.iterrows():
        algo = str(row["algorithm"])
        if algo == NATIVE and varied[cfg] in ("default", "lr"):
            groups.setdefault(f"native (lr {row['lr']:g})", []).append(cfg)
        elif varied[cfg] == "default":
            groups.setdefault(algo, []).append(cfg)
    return groups


def criterion_scores(
    agg_all: pd.DataFrame,
    scores: pd.DataFrame,
    criteria: Mapping[str, Sequence[Target]] | None = None,
) -> pd.DataFrame:
    """Mean score per config, epoch and criterion from the "all"-level aggregate; ``criteria``
    None = what the metrics in ``scores`` declare (``MetricSpec.criterion`` and
    ``report.criterion``)."""
    if criteria is None:
        criteria = criteria_targets(scores["metric"].unique())
    rows = []
    for crit, targets in criteria.items():
        for target in targets:
            m = resolve_measure(scores, target)
            if m is None:
                continue
            metric, enc, res, pt = m
            sel = agg_all[
                (agg_all["metric"] == metric)
                & (agg_all["encoder"] == enc)
                & (agg_all["resize"] == res)
                & (agg_all["prompt_type"] == pt)
            ]
            part = sel[["config", "epoch", "mean"]].assign(criterion=crit, measure=target.label)
            rows.append(part)
    if not rows:
        return pd.DataFrame(columns=["config", "epoch", "criterion", "score"])
    t = pd.concat(rows, ignore_index=True)
    return (
        t.groupby(["config", "epoch", "criterion"], dropna=False)["mean"]
        .mean()
        .rename("score")
        .reset_index()
    )


def rank_table(
    agg_all: pd.DataFrame,
    scores: pd.DataFrame,
    criteria: Mapping[str, Sequence[Target]] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1 style: (mean scores, ranks) with criteria as rows and algorithm groups as columns.

    A group's score is the mean over its configs, epochs and the criterion's measurements; ranks
    follow the paper (1 = lowest score, k = highest; ties averaged).
    """
    if criteria is None:
        criteria = criteria_targets(scores["metric"].unique())
    configs = config_table(scores)
    groups = algorithm_groups(configs)
    crit = criterion_scores(agg_all, scores, criteria)
    means = {}
    for label, cfgs in groups.items():
        sel = crit[crit["config"].isin(cfgs)]
        means[label] = sel.groupby("criterion")["score"].mean()
    table = pd.DataFrame(means).dropna(axis=1, how="all")  # groups without these measurements
    order = [c for c in criteria if c in table.index]
    table = table.loc[order] if order else table
    ranks = table.rank(axis=1, method="average")
    return table, ranks


def compare_with_paper(ranks: pd.DataFrame) -> pd.DataFrame:
    """For the groups both tables have, the order implied by the paper's Table 1 and by the data,
    per criterion (ranks re-computed among the shared groups only)."""
    rows = []
    for crit, paper in PAPER_TABLE1.items():
        if crit not in ranks.index:
            continue
        shared = [g for g in paper if g in ranks.columns]
        if len(shared) < 2:
            continue
        p = pd.Series({g: paper[g] for g in shared}).rank()
        d = ranks.loc[crit, shared].rank()
        rows.append(
            {
                "criterion": crit,
                "groups": ", ".join(shared),
                "paper_order": " < ".join(p.sort_values().index),
                "data_order": " < ".join(d.sort_values().index),
                "agrees": bool((p == d).all()),
            }
        )
    return pd.DataFrame(rows)


def epoch_trends(
    agg_category: pd.DataFrame,
    scores: pd.DataFrame,
    targets: Sequence[Target],
) -> pd.DataFrame:
    """Mean category score per epoch (over configs, with the SE over configs) for each target,
    plus the change from the first to the last epoch."""
    out = []
    for target in targets:
        m = resolve_measure(scores, target)
        if m is None:
            continue
        metric, enc, res, pt = m
        sel = agg_category[
            (agg_category["metric"] == metric)
            & (agg_category["encoder"] == enc)
            & (agg_category["resize"] == res)
            & (agg_category["prompt_type"] == pt)
        ]
        g = sel.groupby(["category", "epoch"], dropna=False)["mean"]
        t = pd.DataFrame({"mean": g.mean(), "se": g.std(ddof=1) / np.sqrt(g.count())})
        t = t.reset_index()
        t.insert(0, "measure", f"{target.label} ({enc}, {res or 'no resize'})")
        out.append(t)
    if not out:
        return pd.DataFrame(columns=["measure", "category", "epoch", "mean", "se"])
    return pd.concat(out, ignore_index=True)


def epoch_change(trends: pd.DataFrame) -> pd.DataFrame:
    """measure × category: score at the first and last epoch and the change."""
    rows = []
    for (measure, cat), t in trends.dropna(subset=["epoch"]).groupby(["measure", "category"]):
        t = t.sort_values("epoch")
        if len(t) < 2:
            continue
        first, last = t.iloc[0], t.iloc[-1]
        rows.append(
            {
                "measure": measure,
                "category": cat,
                "first_epoch": int(first["epoch"]),
                "last_epoch": int(last["epoch"]),
                "first": first["mean"],
                "last": last["mean"],
                "change": last["mean"] - first["mean"],
            }
        )
    return pd.DataFrame(rows)


#: Paper §5.3.2 on epochs: (categories, measurement, expected sign of the epoch-10 → 50 change).
EPOCH_CLAIMS: tuple[tuple[tuple[str, ...], Target, int], ...] = (
    (("anime", "people"), Target("image_similarity", "train", "dinov2-l", "letterbox"), +1),
    (("anime", "people"), Target("text_alignment", "alter"), -1),
    (("scene", "stuffed_toy"), Target("image_similarity", "train", "dinov2-l", "letterbox"), -1),
)


def check_epoch_claims(
    agg_category: pd.DataFrame,
    scores: pd.DataFrame,
    first: int = 10,
    last: int = 50,
    claims=EPOCH_CLAIMS,
) -> pd.DataFrame:
    """The paper's epoch findings against the data: mean category score (over configs) at
    ``first`` and ``last`` epoch, and whether the change has the claimed sign."""
    rows = []
    for cats, target, sign in claims:
        m = resolve_measure(scores, target)
        if m is None:
            continue
        metric, enc, res, pt = m
        sel = agg_category[
            (agg_category["metric"] == metric)
            & (agg_category["encoder"] == enc)
            & (agg_category["resize"] == res)
            & (agg_category["prompt_type"] == pt)
        ]
        for cat in cats:
            c = sel[sel["category"] == cat]
            a = c.loc[c["epoch"] == first, "mean"].mean()
            b = c.loc[c["epoch"] == last, "mean"].mean()
            if pd.isna(a) or pd.isna(b):
                continue
            rows.append(
                {
                    "category": cat,
                    "measure": f"{target.label} ({enc}, {res or 'no resize'})",
                    "claim": "rises" if sign > 0 else "falls",
                    f"epoch_{first}": a,
                    f"epoch_{last}": b,
                    "change": b - a,
                    "agrees": bool(np.sign(b - a) == sign),
                }
            )
    return pd.DataFrame(rows)
