"""Headless matplotlib figures: metric-pair scatter plots, the rank table (SHAP beeswarms:
:mod:`t2ibench.analysis.shap_report`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from t2ibench.analysis.shap_analysis import resolve_measure
from t2ibench.analysis.targets import Target, pair_targets
from t2ibench.fsutil import atomic_write_with

MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*", "<", ">", "h", "p")
#: Marker area (pt²) by the varied hyperparameter's value against the algorithm's default.
SIZE_BY_LEVEL = {"lower": 12.0, "default": 30.0, "other": 30.0, "higher": 70.0}
_LEVEL_WORDS = {"lower": "below the default", "default": "default",
                "other": "other value", "higher": "above the default"}  # fmt: skip


def _as_number(v: object) -> float | None:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if np.isnan(f) else f


def value_levels(scores: pd.DataFrame, varied: pd.Series) -> pd.Series:
    """config → ``lower`` / ``higher`` / ``other`` (its varied hyperparameter against the
    algorithm's default: learning rate, capacity = dim or factor, alpha; a preset is ``other``) or
    ``default``. The scatter plots draw it as marker size, so a point shows the value's direction,
    not only which hyperparameter was varied."""
    from t2ibench.analysis.configs import config_table, default_configs

    table = config_table(scores)
    defaults = default_configs(table)
    levels = {}
    for cfg, row in table.iterrows():
        kind = str(varied.get(cfg, "default"))
        ref = defaults.get(row["algorithm"])
        level = "default" if kind == "default" else "other"
        cols = {"lr": ["lr"], "capacity": ["dim", "factor"], "alpha": ["alpha"]}.get(kind, [])
        for c in cols:
            if ref is None or c not in row.index:
                continue
            a, b = _as_number(row[c]), _as_number(ref.get(c))
            if a is not None and b is not None and a != b:
                # LoKr's factor: a smaller factor means larger Kronecker blocks (more capacity).
                up = a > b if c != "factor" else a < b
                level = "higher" if up else "lower"
                break
        levels[cfg] = level
    return pd.Series(levels, dtype=object)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless: never open a window
    import matplotlib.pyplot as plt

    return plt


def _plain(text: object) -> str:
    """Data text as literal text: matplotlib reads ``$…$`` as mathtext, and a category named
    ``$x_$`` would make the figure fail to draw."""
    return str(text).replace("$", r"\$")


def _save(fig, path: Path) -> Path:
    return atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=90, format=path.suffix[1:]))


def _measure_rows(agg: pd.DataFrame, measure: tuple[str, str, str, str]) -> pd.DataFrame:
    metric, enc, res, pt = measure
    return agg[
        (agg["metric"] == metric)
        & (agg["encoder"] == enc)
        & (agg["resize"] == res)
        & (agg["prompt_type"] == pt)
    ]


def scatter_pairs(
    agg_category: pd.DataFrame,
    scores: pd.DataFrame,
    varied: pd.Series,
    out_dir: Path,
    pairs: Sequence[tuple[Target, Target]] | None = None,
) -> list[tuple[str, Path]]:
    """One figure per metric pair: a grid of categories (rows) × epochs (columns), each point a
    config (mean score ± SE on both axes), colour = algorithm, marker = varied hyperparameter.
    ``pairs`` None = the pairs the metrics in ``scores`` declare (``MetricSpec.report.pairs``).
    Several bases: one figure per pair and base (scores are ranked within base, so points of two
    bases on one axis would compare what cannot be compared), the base in its label and name."""
    from t2ibench.analysis.scores import base_tag, by_base

    if pairs is None:
        pairs = pair_targets(scores["metric"].unique())
    plt = _pyplot()
    written = []
    algos = (
        sorted(agg_category["algorithm"].dropna().astype(str).unique())
        if ("algorithm" in agg_category.columns)
        else []
    )
    cmap = plt.get_cmap("tab10")
    colour = {a: cmap(i % 10) for i, a in enumerate(algos)}
    kinds = sorted(set(varied), key=lambda v: (v != "default", v))
    marker = {k: MARKERS[i % len(MARKERS)] for i, k in enumerate(kinds)}
    levels = value_levels(scores, varied)
    for (base, agg), (x_t, y_t) in ((b, pair) for b in by_base(agg_category) for pair in pairs):
        mx, my = resolve_measure(scores, x_t), resolve_measure(scores, y_t)
        if mx is None or my is None:
            continue
        keys = ["config", "epoch", "category"]
        xs = _measure_rows(agg, mx).set_index(keys)
        ys = _measure_rows(agg, my).set_index(keys)
        xcols = ["mean", "se"] + (["algorithm"] if "algorithm" in xs.columns else [])
        both = xs[xcols].join(ys[["mean", "se"]], how="inner", suffixes=("_x", "_y"))
        if both.empty:
            continue
        both = both.reset_index()
        cats = sorted(both["category"].unique())
        epochs = sorted(both["epoch"].dropna().unique()) or [np.nan]
        fig, axes = plt.subplots(
            len(cats), len(epochs), figsize=(3.6 * len(epochs) + 1.5, 3.2 * len(cats)),
            squeeze=False, sharex=True, sharey=True,
        )  # fmt: skip
        # Legend entries only for what some panel of this figure draws.
        used_algos: set[str] = set()
        used_kinds: set[str] = set()
        used_levels: set[str] = set()
        for i, cat in enumerate(cats):
            for j, ep in enumerate(epochs):
                ax = axes[i][j]
                sub = both[(both["category"] == cat) & (both["epoch"] == ep)]
                sub = sub.assign(
                    _algo=sub["algorithm"].astype(str) if "algorithm" in sub.columns else "",
                    _kind=sub["config"].map(lambda c: varied.get(c, "default")),
                    _level=sub["config"].map(lambda c: levels.get(c, "default")),
                )
                if sub.empty:
                    continue
                # One grey error-bar collection per panel and one scatter per marker: thousands
                # of single-point errorbar() calls make the figure slow to build and draw.
                ax.errorbar(
                    sub["mean_x"], sub["mean_y"], xerr=sub["se_x"], yerr=sub["se_y"], fmt="none",
                    ecolor="0.6", elinewidth=0.6, capsize=0, zorder=1,
                )  # fmt: skip
                for kind, pts in sub.groupby("_kind"):
                    ax.scatter(
                        pts["mean_x"], pts["mean_y"], marker=marker.get(kind, "o"),
                        s=[SIZE_BY_LEVEL[lv] for lv in pts["_level"]],
                        c=[colour.get(a, "grey") for a in pts["_algo"]], zorder=2,
                        edgecolors="black", linewidths=0.3,
                    )  # fmt: skip
                used_algos.update(sub["_algo"])
                used_kinds.update(sub["_kind"])
                used_levels.update(sub["_level"])
                ax.set_title(_plain(f"{cat}, epoch {ep}"), fontsize=9)
                ax.grid(alpha=0.3)
                if i == len(cats) - 1:
                    ax.set_xlabel(_plain(f"{x_t.label} score"), fontsize=8)
                if j == 0:
                    ax.set_ylabel(_plain(f"{y_t.label} score"), fontsize=8)
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], color=colour[a], marker="o", ls="", label=_plain(a))
            for a in algos
            if a in used_algos
        ]
        handles += [
            Line2D([], [], color="black", marker=marker[k], ls="", label=_plain(f"varied: {k}"))
            for k in kinds
            if k in used_kinds
        ]
        if used_levels - {"default"}:
            handles += [
                Line2D(
                    [],
                    [],
                    color="0.5",
                    marker="o",
                    ls="",
                    label=_LEVEL_WORDS[lv],
                    markersize=float(np.sqrt(SIZE_BY_LEVEL[lv])),
                )  # fmt: skip
                for lv in ("lower", "default", "other", "higher")
                if lv in used_levels
            ]
        fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
        if base is not None:
            fig.suptitle(_plain(f"base {base}"), fontsize=10)
        # room on the right for the legend, at the top for the base's title
        fig.tight_layout(rect=(0, 0, 0.9, 1 if base is None else 1 - 0.35 / fig.get_figheight()))
        name = f"scatter_{mx[0]}-{mx[3]}_vs_{my[0]}-{my[3]}"
        label = f"{x_t.label} vs {y_t.label}"
        if base is not None:
            name += "_" + base_tag(base)
            label += f" (base {base})"
        written.append((label, _save(fig, out_dir / f"{name}.png")))
        plt.close(fig)
    return written


def rank_table_plot(means: pd.DataFrame, ranks: pd.DataFrame, path: Path) -> Path | None:
    """Heat map of the Table-1-style ranks, annotated with rank and mean score."""
    if means.empty:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 * means.shape[1] + 2, 0.7 * means.shape[0] + 1.2))
    ax.imshow(ranks.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    ax.set_xticks(
        range(means.shape[1]), [_plain(c) for c in means.columns], rotation=20, ha="right"
    )
    ax.set_yticks(range(means.shape[0]), [_plain(i) for i in means.index])
    for i in range(means.shape[0]):
        for j in range(means.shape[1]):
            r, m = ranks.iat[i, j], means.iat[i, j]
            if pd.notna(r):
                ax.text(j, i, f"{r:g}\n({m:.2f})", ha="center", va="center", color="white")
    ax.set_title("rank (mean score); larger = more of the criterion", fontsize=9)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out
