"""The validity report: CSVs, Markdown and a self-contained HTML page rendered by
:mod:`t2ibench.analysis.report`, the project's one report renderer."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pandas as pd

from t2ibench import csvsafe
from t2ibench.errors import ResultsError
from t2ibench.fsutil import atomic_write_with
from t2ibench.toy.validity.counterfactual import counterfactual_alignment, counterfactual_summary
from t2ibench.toy.validity.ground_truth import PAIRS
from t2ibench.toy.validity.joined import joined_table
from t2ibench.toy.validity.outcomes import (
    OUTCOMES_NAME,
    has_images,
    probe_outcomes,
    probed_images,
    read_outcomes,
)
from t2ibench.toy.validity.statistics import (
    FEW_RUNS,
    MIN_IMAGES,
    N_BOOT,
    N_PERM,
    by_leaf_table,
    validity_table,
)


def _summary(outcomes: pd.DataFrame, joined: pd.DataFrame) -> pd.DataFrame:
    """Mean ground truth per epoch × prompt type (epoch 0 = the base model)."""
    epochs = joined[["run", "checkpoint", "epoch"]].drop_duplicates(["run", "checkpoint"])
    df = outcomes.merge(epochs, on=["run", "checkpoint"], how="left")
    df.loc[df["run"].astype(str).str.startswith("base:"), "epoch"] = 0
    df = df[df["epoch"].notna()]
    cols = ["concept_rate", "attribute_follow_rate", "leak_rate", "base_change_rate",
            "distinct_outcomes"]  # fmt: skip
    cols = [c for c in cols if c in df.columns]
    out = df.groupby(["epoch", "prompt_type"], sort=True)[cols].mean().reset_index()
    out["epoch"] = out["epoch"].astype(int)
    return out


def _scatter(g: pd.DataFrame, row: pd.Series, path: Path) -> Path:
    """Metric vs ground truth, one colour per leaf (a between-leaf offset shows as separate
    clouds; the within-leaf slope is what the table reports)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 2.7), dpi=90)
    for leaf, sub in g.groupby("leaf", sort=True):
        ax.scatter(sub[row["ground_truth"]], sub["value"], s=10, alpha=0.6, label=str(leaf))
    ax.set_xlabel(str(row["ground_truth"]), fontsize=8, usetex=False)
    ax.set_ylabel(str(row["metric"]), fontsize=8)
    rho = row["spearman_within"]
    ax.set_title(
        f"{row['encoder']} · {row['prompt_type']} · within ρ={rho:.2f}"
        if math.isfinite(rho)
        else f"{row['encoder']} · {row['prompt_type']}",
        fontsize=8,
    )
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=5, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_with(path, lambda t: fig.savefig(t, format="png"))
    plt.close(fig)
    return path


def _slug(*parts: object) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(str(p) for p in parts))[:80]


def _method(n_boot: int, n_perm: int, min_images: int) -> list[str]:
    return [
        "Within leaf × epoch: each metric value (one per run, checkpoint, leaf and prompt type) is "
        "ranked against its ground truth among the runs of the same leaf and epoch; the headline ρ "
        "is the mean of these within-stratum Spearman ρ, weighted by stratum size. Leaves differ "
        "in level, so a ρ pooled over leaves measures partly which leaf a point comes from (pooled "
        "ρ is shown for comparison only). A mixed model was not chosen: ranks need no linearity "
        "and the stratified ρ stays on the scale of a correlation.",
        "Uncertainty by run: a run's checkpoints, leaves and prompt types share one trained model, "
        f"so the 95 % interval is a percentile cluster bootstrap that resamples whole runs "
        f"({n_boot} replicates); with fewer than {FEW_RUNS} runs it is too narrow (noted).",
        f"p-values: two-sided, from {n_perm} permutations of the run labels, jointly in every "
        f"stratum (floor 1/{n_perm + 1}); Holm-adjusted over every defined row of the table. A row "
        "holds (or fails) only when the interval excludes 0 and the Holm-adjusted p is below "
        "0.05; otherwise it is inconclusive.",
        f"Ground truth from groups of fewer than {min_images} images (per run, checkpoint, leaf "
        "and prompt type; for the attribute-follow rate, images whose prompt names an attribute) "
        "is flagged: such rates move in coarse steps.",
    ]


CONFOUND = (
    "Text alignment cleans each prompt before comparing it with the image: for objects and "
    "scenes the trigger becomes the class name ('rnq toy' → 'ring toy'), so their alignment also "
    "rises when the concept is shown, whatever the attributes. The within-leaf ρ removes the "
    "between-leaf part of this; the counterfactual below removes the rest: the same image scored "
    "against its prompt with only the attribute words swapped (red → green, striped → black, "
    "outline → flat, circle → square), both texts cleaned the same way."
)


def write_validity_report(
    sweep_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    probe_dir: str | os.PathLike | None = None,
    plots: bool = True,
    *,
    outcomes: str | os.PathLike | pd.DataFrame | None = None,
    min_images: int = MIN_IMAGES,
    n_boot: int = N_BOOT,
    n_perm: int = N_PERM,
    counterfactual: bool = True,
) -> Path:
    """Write ``validity.csv``, ``probe_outcomes.csv``, ``counterfactual.csv`` (when the images are
    there), ``validity.md`` and ``validity.html`` (one self-contained file, through
    :func:`t2ibench.analysis.report.render_html`) to ``out_dir`` (default ``<sweep>/validity``).

    ``outcomes``: probe outcomes from an earlier report (a ``probe_outcomes.csv`` or its table), for
    a sweep folder that no longer holds its images; the counterfactual then cannot be computed.
    Returns ``out_dir``.
    """
    from t2ibench.analysis.report import Section, render_html, render_markdown

    if min_images < 1:
        raise ResultsError(f"min_images: must be ≥ 1, got {min_images}")
    sweep_dir = Path(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep_dir / "validity"
    images = None
    if outcomes is None:
        if not has_images(sweep_dir) and (out / OUTCOMES_NAME).is_file():
            raise ResultsError(
                f"{sweep_dir}: no generated images here; to recompute the report from the probe "
                f"outcomes of the earlier one, pass --outcomes {out / OUTCOMES_NAME}"
            )
        images = probed_images(sweep_dir, probe_dir)
        outcomes = probe_outcomes(sweep_dir, images=images)
    elif not isinstance(outcomes, pd.DataFrame):
        outcomes = read_outcomes(outcomes)
    joined = joined_table(sweep_dir, outcomes)
    table = validity_table(joined=joined, min_images=min_images, n_boot=n_boot, n_perm=n_perm)
    summary = _summary(outcomes, joined)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_with(out / "validity.csv", lambda t: csvsafe.to_csv(table, t, index=False))
    atomic_write_with(out / OUTCOMES_NAME, lambda t: csvsafe.to_csv(outcomes, t, index=False))

    cf = None
    cf_note = "not computed (--no-counterfactual)."
    if counterfactual and images is not None:
        alter = images[(images["prompt_type"] == "alter") & ~images["run"].str.startswith("base:")]
        ta = joined[(joined["metric"] == "text_alignment") & (joined["prompt_type"] == "alter")]
        resize = str(ta["resize"].iat[0]) if len(ta) and pd.notna(ta["resize"].iat[0]) else None
        per_image = counterfactual_alignment(alter, resize=resize)
        if per_image.empty:
            cf_note = "not computed: no alter prompt names a base-vocabulary attribute."
        else:
            cf = counterfactual_summary(per_image, n_boot)
            atomic_write_with(
                out / "counterfactual.csv", lambda t: csvsafe.to_csv(cf, t, index=False)
            )
    elif counterfactual:
        cf_note = (
            "not computed: the sweep folder holds no images (only the probe outcomes), and the "
            "counterfactual scores the images themselves."
        )

    counts = table["verdict"].value_counts()
    defined = int((table["verdict"] != "undefined").sum())
    small = table[(table["n"] > 0) & ~table["enough_images"].astype(bool)]
    headline = (
        f"Of {defined} defined metric/ground-truth rows: {counts.get('holds', 0)} hold, "
        f"{counts.get('fails', 0)} fail, {counts.get('inconclusive', 0)} inconclusive "
        f"({len(table) - defined} undefined); {outcomes['run'].nunique()} folders, "
        f"{len(outcomes)} image groups."
    )
    if len(small):
        headline += (
            f" {len(small)} rows rest on groups smaller than {min_images} images (smallest: "
            f"{int(small['min_group_images'].min())}): their ground-truth rates are coarse; rerun "
            f"with at least {min_images} images per leaf and prompt type."
        )
    pairs = [f"{p.metric} vs {p.truth} ({'+' if p.sign > 0 else '-'}): {p.why}" for p in PAIRS]
    sections = [
        Section("Summary").text(headline).bullets(pairs),
        Section("Method").bullets(_method(n_boot, n_perm, min_images)),
        Section("Correlations within leaf × epoch").table(table, max_rows=200),
    ]
    leaves = by_leaf_table(joined)
    if not leaves.empty:
        sections.append(
            Section("Within-epoch ρ by leaf")
            .text("The headline ρ split by leaf (mean over epochs; no intervals).")
            .table(leaves, max_rows=200)
        )
    cfs = Section("Counterfactual: prompts with swapped attribute words").text(CONFOUND)
    if cf is not None:
        cfs.text(
            "drop = alignment with the image's own prompt − alignment with the swapped prompt, per "
            "image (alter prompts of the tuned runs); 95 % percentile CI resampling runs."
        ).table(cf)
    else:
        cfs.text(f"Counterfactual {cf_note}")
    sections.append(cfs)
    sections.append(Section("Ground truth by epoch (0 = base model)").table(summary, max_rows=200))
    if plots:
        figs = Section("Scatter plots (one colour per leaf)")
        for i, row in table[table["verdict"] != "undefined"].reset_index(drop=True).iterrows():
            g = joined[
                (joined["metric"] == row["metric"])
                & (joined["encoder"] == row["encoder"])
                & (joined["resize"].astype(str) == str(row["resize"]))
                & (joined["prompt_type"] == row["prompt_type"])
            ].dropna(subset=["value", row["ground_truth"]])
            name = _slug(f"{i:02d}", row["metric"], row["encoder"], row["prompt_type"])
            path = _scatter(g, row, out / "plots" / f"{name}.png")
            cap = (
                f"{row['metric']} ({row['encoder']}, {row['prompt_type']}) vs {row['ground_truth']}"
            )
            figs.figure(path, cap)
        if figs.blocks:
            sections.append(figs)
    title = "Metric validity on the toy world"
    render_markdown(title, sections, out / "validity.md", out)
    render_html(title, sections, out / "validity.html", out)
    return out
