"""Headline measurements per criterion, the checkpoint line and the "best checkpoint" rule.

Each criterion (fidelity, controllability, preservation, ... as the metrics declare) is read on its
headline measurements: the metric × prompt type pairs the metric registry puts into the criterion,
each on one encoder (the one the metric names when present, else a DINO-like one, else the first)
and one resize mode (letterbox when present).

The recommendation (:func:`recommend`): each criterion's value for a checkpoint is the mean, over its
headline measurements, of the raw mean rescaled to [0, 1] between the worst and the best of the base
model and the checkpoints (direction-aware: 1 = best). The Pareto set holds the checkpoints that no
other checkpoint beats on every one of fidelity, controllability and preservation (those present);
the recommended checkpoint is the Pareto member with the highest sum of those criterion values
(ties: the earlier epoch, cheaper to train; the earlier step for checkpoints placed by step).
"""

from __future__ import annotations

import math

import pandas as pd

from t2ibench.analysis.raw import BASE_CHECKPOINT
from t2ibench.analysis.targets import criteria_targets, preferred_encoder

#: The checkpoint line draws one line per config up to this many configs.
MAX_LINE_CONFIGS = 8
PARETO_CRITERIA: tuple[str, ...] = ("fidelity", "controllability", "preservation")


def rule(criteria: tuple[str, ...] | list[str] = PARETO_CRITERIA) -> str:
    """The recommendation rule, naming the criteria it actually used."""
    return (
        "Criterion value = mean over its headline measurements of the raw mean rescaled to [0, 1] "
        "between the worst and best of the base model and the checkpoints (1 = best). Pareto set: "
        "checkpoints no other checkpoint beats on every one of "
        + " / ".join(criteria)
        + ". Recommended: the Pareto member with the highest sum of those criterion values (ties: "
        "the earlier epoch)."
    )


RULE = rule()


def left_out(df: pd.DataFrame) -> list[str]:
    """What the recommendation could not use, and why: a headline measurement (or a whole
    criterion of :data:`PARETO_CRITERIA`) present in the results whose values are all missing, and
    the criteria no metric in the results measures. ``df``: the results rows, NaN values kept."""
    have = df.dropna(subset=["value"])
    out = []
    targets = criteria_targets(df["metric"].unique())
    for criterion in PARETO_CRITERIA:
        present = [t for t in targets.get(criterion, ())
                   if ((df["metric"] == t.metric) & (df["prompt_type"] == t.prompt_type)).any()]  # fmt: skip
        if not present:
            out.append(f"{criterion}: not measured (no metric of it in the results)")
            continue
        empty = [t for t in present
                 if not ((have["metric"] == t.metric) & (have["prompt_type"] == t.prompt_type)).any()]  # fmt: skip
        if len(empty) == len(present):
            names = ", ".join(t.label for t in empty)
            out.append(f"{criterion}: every value of {names} is missing (NaN)")
        elif empty:
            names = ", ".join(t.label for t in empty)
            out.append(f"{criterion}: read without {names}, whose values are all missing (NaN)")
    return out


def _pick(values: list[str], preferred: str | None, fallback_contains: str | None) -> str:
    values = sorted(values)
    if preferred in values:
        return preferred
    if fallback_contains:
        hits = [v for v in values if fallback_contains in v]
        if hits:
            return hits[0]
    return values[0]


def headline_measures(raw: pd.DataFrame) -> pd.DataFrame:
    """criterion, metric, prompt_type, encoder, resize: one row per headline measurement present."""
    rows = []
    if raw.empty:
        return pd.DataFrame(columns=["criterion", "metric", "prompt_type", "encoder", "resize"])
    for criterion, targets in criteria_targets(raw["metric"].unique()).items():
        for t in targets:
            sub = raw[(raw["metric"] == t.metric) & (raw["prompt_type"] == t.prompt_type)]
            if sub.empty:
                continue
            enc = _pick(list(sub["encoder"].unique()), preferred_encoder(t.metric), "dino")
            res = _pick(list(sub[sub["encoder"] == enc]["resize"].unique()), "letterbox", None)
            rows.append(dict(criterion=criterion, metric=t.metric, prompt_type=t.prompt_type,
                             encoder=enc, resize=res))  # fmt: skip
    return pd.DataFrame(rows, columns=["criterion", "metric", "prompt_type", "encoder", "resize"])


def _headline_rows(raw: pd.DataFrame, heads: pd.DataFrame) -> pd.DataFrame:
    keys = ["metric", "prompt_type", "encoder", "resize"]
    return raw.merge(heads, on=keys, how="inner")


def criterion_values(raw: pd.DataFrame, directions: dict[str, bool]) -> pd.DataFrame:
    """checkpoint × criterion: the rescaled value used by :func:`recommend` (base included)."""
    heads = headline_measures(raw)
    rows = _headline_rows(raw, heads)
    if rows.empty:
        return pd.DataFrame()
    parts = []
    for _, g in rows.groupby(["criterion", "metric", "prompt_type", "encoder", "resize"]):
        lo, hi = g["mean"].min(), g["mean"].max()
        span = hi - lo
        up = directions.get(g["metric"].iloc[0], True)
        r = (g["mean"] - lo) / span if span > 0 else g["mean"] * 0 + 0.5
        parts.append(g.assign(rescaled=r if up else 1 - r))
    t = pd.concat(parts)
    return t.pivot_table(index="checkpoint", columns="criterion", values="rescaled", aggfunc="mean")


def recommend(raw: pd.DataFrame, directions: dict[str, bool]) -> tuple[pd.DataFrame, str | None]:
    """(table of checkpoints with criterion values, ``pareto`` and ``recommended`` flags, the
    recommended checkpoint or None)."""
    vals = criterion_values(raw, directions)
    if vals.empty:
        return vals, None
    crit = [c for c in PARETO_CRITERIA if c in vals.columns]
    ckpts = vals.drop(index=BASE_CHECKPOINT, errors="ignore").dropna(subset=crit, how="all")
    if not crit or ckpts.empty:
        return vals, None
    xcol = progress_column(raw)
    places = raw.drop_duplicates("checkpoint").set_index("checkpoint")
    epochs = places[xcol]
    x = ckpts[crit].fillna(-math.inf).to_numpy(dtype="float64")
    # b dominates a: at least as good on every criterion and better on one ([a, b] below)
    as_good = (x[None, :, :] >= x[:, None, :]).all(axis=2)
    better = (x[None, :, :] > x[:, None, :]).any(axis=2)
    pareto = [not row.any() for row in as_good & better]
    out = ckpts.assign(pareto=pareto, total=ckpts[crit].sum(axis=1, min_count=1))
    out["epoch"] = places["epoch"].reindex(out.index)
    out[xcol] = epochs.reindex(out.index)
    best = out[out["pareto"]].sort_values(["total", xcol], ascending=[False, True])
    chosen = str(best.index[0])
    out["recommended"] = out.index == chosen
    out.index.name = "checkpoint"
    return out.sort_values(xcol), chosen


def progress_column(raw: pd.DataFrame) -> str:
    """The curves' x axis: ``epoch``, or ``step`` when checkpoints were placed by training step
    (``t2ibench evaluate-checkpoints`` on a folder of step checkpoints)."""
    ck = raw[raw["checkpoint"] != BASE_CHECKPOINT]
    if "step" in ck.columns and ck["epoch"].isna().any() and ck["step"].notna().all():
        return "step"
    return "epoch"


def checkpoint_line(raw: pd.DataFrame, ceilings: pd.DataFrame, path, title: str = ""):
    """Per headline measurement: raw mean (t interval band) against epoch, base (dashed) and
    real-image ceiling (dotted) as reference lines. Returns ``path`` or None (nothing to draw)."""
    heads = headline_measures(raw)
    rows = _headline_rows(raw, heads)
    if rows.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_configs = rows.loc[rows["checkpoint"] != BASE_CHECKPOINT, "config"].nunique()
    if n_configs > MAX_LINE_CONFIGS:
        return None
    groups = list(rows.groupby(["criterion", "metric", "prompt_type", "encoder", "resize"]))
    ncol = min(3, len(groups))
    nrow = math.ceil(len(groups) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.7 * nrow), squeeze=False)
    xcol = progress_column(rows)
    ck_rows = rows[rows["checkpoint"] != BASE_CHECKPOINT]
    # Checkpoints without an epoch (or step), e.g. `t2ibench evaluate` of outside images: place
    # them in order at 0, 1, 2, ... and label each tick with the checkpoint's name.
    names = None
    if ck_rows[xcol].isna().any():
        names = sorted(ck_rows["checkpoint"].astype(str).unique())
        rows = rows.assign(_x=rows["checkpoint"].astype(str).map({n: i for i, n in
                                                                   enumerate(names)}))  # fmt: skip
        groups = list(rows.groupby(["criterion", "metric", "prompt_type", "encoder", "resize"]))
    xkey = "_x" if names is not None else xcol
    for ax, (key, g) in zip(axes.flat, groups, strict=False):
        criterion, metric, pt, enc, res = key
        ck = g[g["checkpoint"] != BASE_CHECKPOINT].sort_values(xkey)
        x = ck[xkey].astype(float)
        for i, (config, c) in enumerate(ck.groupby("config", sort=True)):
            cx = c[xkey].astype(float)
            label = "checkpoints" if n_configs == 1 else str(config)
            ax.plot(cx, c["mean"], "o-", color=f"C{i % 10}", label=label, ms=3)
            ax.fill_between(cx, c["ci_low"], c["ci_high"], color=f"C{i % 10}", alpha=0.15, lw=0)
        b = g[g["checkpoint"] == BASE_CHECKPOINT]
        several = "base" in b.columns and b["base"].nunique() > 1  # each base model its line
        for j, (name, bb) in enumerate(b.groupby("base") if several else [(None, b)]):
            if bb.empty:
                continue
            label = "base model" if name is None else f"base model ({name})"
            ls = ("--", "-.", (0, (6, 2, 1, 2, 1, 2)))[j % 3]
            ax.axhline(float(bb["mean"].iloc[0]), color="0.4", ls=ls, lw=1, label=label)
        if "ceiling" in ck and ck["ceiling"].notna().any():
            ax.axhline(float(ck["ceiling"].mean()), color="C2", ls=":", lw=1.5, label="real images")
        ax.set_title(f"{criterion}: {metric} <{pt}>\n{enc} {res}".strip(), fontsize=8)
        ax.set_xlabel("checkpoint" if names is not None else xcol, fontsize=8)
        ax.tick_params(labelsize=7)
        if names is not None:
            ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 3 else 0)
            ax.set_xlim(-0.5, len(names) - 0.5)
        elif len(x):
            ax.set_xticks(sorted(set(x)))
    for ax in list(axes.flat)[len(groups) :]:
        ax.axis("off")
    legend: dict[str, object] = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, h)
    handles, labels = list(legend.values()), list(legend)
    fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=8,
               frameon=False)  # fmt: skip
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
