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
    ``pairs`` None = the pairs the metrics in ``scores`` declare (``MetricSpec.report.pairs``)."""
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
    for x_t, y_t in pairs:
        mx, my = resolve_measure(scores, x_t), resolve_measure(scores, y_t)
        if mx is None or my is None:
            continue
        keys = ["config", "epoch", "category"]
        xs = _measure_rows(agg_category, mx).set_index(keys)
        ys = _measure_rows(agg_category, my).set_index(keys)
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
        for i, cat in enumerate(cats):
            for j, ep in enumerate(epochs):
                ax = axes[i][j]
                sub = both[(both["category"] == cat) & (both["epoch"] == ep)]
                sub = sub.assign(
                    _algo=sub["algorithm"].astype(str) if "algorithm" in sub.columns else "",
                    _kind=sub["config"].map(lambda c: varied.get(c, "default")),
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
                        pts["mean_x"], pts["mean_y"], marker=marker.get(kind, "o"), s=22,
                        c=[colour.get(a, "grey") for a in pts["_algo"]], zorder=2,
                        edgecolors="black", linewidths=0.3,
                    )  # fmt: skip
                ax.set_title(_plain(f"{cat}, epoch {ep}"), fontsize=9)
                ax.grid(alpha=0.3)
                if i == len(cats) - 1:
                    ax.set_xlabel(_plain(f"{x_t.label} score"), fontsize=8)
                if j == 0:
                    ax.set_ylabel(_plain(f"{y_t.label} score"), fontsize=8)
        from matplotlib.lines import Line2D

        handles = [
            Line2D([], [], color=colour[a], marker="o", ls="", label=_plain(a)) for a in algos
        ]
        handles += [
            Line2D([], [], color="black", marker=marker[k], ls="", label=_plain(k)) for k in kinds
        ]
        fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 0.9, 1))
        name = f"scatter_{mx[0]}-{mx[3]}_vs_{my[0]}-{my[3]}.png"
        written.append((f"{x_t.label} vs {y_t.label}", _save(fig, out_dir / name)))
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
