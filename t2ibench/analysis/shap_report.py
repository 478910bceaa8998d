"""The CatBoost + SHAP part of the report: beeswarm figures and the section (model fit in and out of
sample, findings first, greyed plots for models that do not beat a constant out of sample)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from t2ibench.analysis.plots import _plain, _pyplot, _save
from t2ibench.analysis.shap_analysis import (
    MIN_OUT_OF_SAMPLE_R2,
    NATIVE,
    ShapResult,
    level_codes,
)


def beeswarm(result: ShapResult, path) -> Path:
    """SHAP beeswarm of one (category, target) model. Categorical features are coloured by level in
    their natural order (the axis label lists the levels present, low colour first); the title gives
    the in-sample and out-of-sample R². A model that does not beat a constant out of sample
    (:attr:`ShapResult.is_finding` false) is drawn grey under its warning."""
    import shap

    plt = _pyplot()
    data = result.data.copy()
    names = []
    for f in result.features:
        col = data[f]
        if not pd.api.types.is_numeric_dtype(col):
            data[f], levels = level_codes(f, col)
            names.append(_plain(f"{f} ({' < '.join(levels)})" if len(levels) <= 4 else f))
        else:
            names.append(_plain(f))
    if "capacity" in result.features and "algorithm" in result.features:
        # Native's capacity was folded into algorithm: show no capacity value for it.
        data.loc[result.data["algorithm"] == NATIVE, "capacity"] = np.nan
    expl = shap.Explanation(
        values=result.shap_values,
        base_values=np.full(len(result.y), result.expected_value),
        data=data.to_numpy(dtype=float),
        feature_names=names,
    )
    fig = plt.figure(figsize=(7.5, 4))
    shap.plots.beeswarm(expl, show=False, plot_size=None, max_display=len(names))
    lines = [
        f"{result.category}: {result.target.label}",
        f"R² in-sample {result.r2:.2f}; out of sample: leave one seed out {result.r2_seed:.2f}, "
        f"leave one config out {result.r2_config:.2f}",
    ]
    if not result.is_finding:
        for ax in fig.axes:
            for coll in ax.collections:
                coll.set_cmap(plt.get_cmap("Greys"))
                coll.set_alpha(0.35)
            for im in ax.images:
                im.set_cmap(plt.get_cmap("Greys"))
        fig.axes[0].text(
            0.5, 0.5, "NOT A FINDING", transform=fig.axes[0].transAxes, ha="center",
            va="center", fontsize=22, color="0.45", alpha=0.6, rotation=12,
        )  # fmt: skip
        lines.append("not a finding: " + result.warning.removesuffix(": not a finding"))
    fig.suptitle(
        _plain("\n".join(lines)), fontsize=8, color="black" if result.is_finding else "0.35"
    )
    fig.tight_layout()
    out = _save(fig, Path(path))
    plt.close("all")
    return out


def shap_section(
    shap_fit: pd.DataFrame,
    results: Sequence[ShapResult],
    *,
    note: str = "",
    empty_text: str = "No SHAP model.",
    plots: bool = False,
    out=None,
    files: list | None = None,
    label=str,
):
    """The "CatBoost + SHAP" report section: in-sample and out-of-sample R² per model, then the
    beeswarms, findings first; a model that does not beat a constant out of sample is drawn grey
    and listed as not a finding."""
    from t2ibench.analysis.report import Section

    sh = Section("CatBoost + SHAP")
    if note:
        return sh.text(note + ".")
    if shap_fit.empty:
        return sh.text(empty_text)
    sh.text(
        "CatBoostRegressor per category and target on each checkpoint's mean score. R² in-sample "
        "is the fit to the training rows; out of sample, each seed (leave-one-seed-out: another "
        "training run of configs the model has seen) and each config (leave-one-config-out: a "
        "config it has not seen) is predicted by a model fitted on the rest, and R² is taken over "
        "the pooled held-out predictions (≤ 0: no better than a constant). A SHAP plot is a "
        f"finding only when both the leave-one-seed-out and the leave-one-config-out R² exceed "
        f"{MIN_OUT_OF_SAMPLE_R2:g} (a model that predicts only configs it has seen says nothing "
        "about a hyperparameter's effect); the others are drawn grey under that warning. Native fine-tuning's capacity SHAP value is folded "
        "into algorithm; categorical features are coloured by level in the order their label "
        "lists (low colour first)."
    )
    if "base" in results[0].features:
        sh.text(
            "The results hold several bases: base is a categorical feature too. Scores are "
            "ranked within base, so every base spans the same range and the base's own SHAP value "
            "stays near 0; it lets the other features' effects differ by base."
        )
    cols = ["category", "target", "epochs", "n_checkpoints", "r2_train", "r2_leave_one_seed_out",
            "r2_leave_one_config_out", "finding"]  # fmt: skip
    sh.table(shap_fit[cols], "model fit: in-sample and out-of-sample R²", max_rows=200)
    sh.table(
        shap_fit[["category", "target"] + [c for c in shap_fit.columns
                                           if c.startswith("mean_abs_shap_")]],
        "mean |SHAP| per feature", max_rows=200,
    )  # fmt: skip
    weak = [r for r in results if not r.is_finding]
    if weak:
        sh.bullets(
            [f"not a finding: {label(r.category)}, {r.target.label} — {r.warning}" for r in weak]
        )
    notes = sorted({n for r in results for n in r.notes})
    if notes:
        sh.bullets(notes)
    if plots and out is not None:
        for r in sorted(results, key=lambda r: not r.is_finding):
            name = f"shap_{r.category}_{r.measure[0]}_{r.measure[3]}.png".replace("/", "_")
            p = beeswarm(r, out / "plots" / name)
            if files is not None:
                files.append(p)
            grey = "" if r.is_finding else " (grey: not a finding)"
            sh.figure(p, f"{label(r.category)}: {r.target.label}{grey}")
    return sh
