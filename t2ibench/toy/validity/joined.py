"""The sweep's results rows joined with the probe's ground truth, one row per group and metric."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from t2ibench.errors import ResultsError
from t2ibench.toy.validity.ground_truth import GROUP_KEYS, PAIRS
from t2ibench.toy.validity.outcomes import probe_outcomes, run_dirs

log = logging.getLogger(__name__)


def _run_results(sweep_dir: Path) -> pd.DataFrame:
    """Every run's results rows, tagged with the run folder (checkpoint names repeat across runs).

    Run folders without a results table (a committed reference sweep keeps only ``run.json``) fall
    back to the sweep's joint ``results/`` table, whose checkpoints are ``<run>/<checkpoint>``.
    """
    from t2ibench.results import read_results

    frames, missing = [], []
    for run_dir in run_dirs(sweep_dir):
        if not (run_dir / "results").is_dir():
            missing.append(run_dir.name)
            continue
        try:
            df = read_results(run_dir / "results")
        except ResultsError as exc:
            log.warning("%s; left out", exc)
            continue
        frames.append(df.assign(run=run_dir.name))
    if frames:
        if missing:
            log.warning("no results yet, left out: %s", ", ".join(missing))
        return pd.concat(frames, ignore_index=True)
    joint = sweep_dir / "results"
    if joint.is_dir():
        df = read_results(joint)
        parts = df["checkpoint"].astype(str).str.split("/", n=1, expand=True)
        if parts.shape[1] == 2 and parts[1].notna().all():
            return df.assign(run=parts[0], checkpoint=parts[1])
    raise ResultsError(f"{sweep_dir}: no run has a results table yet")


def joined_table(
    sweep_dir: str | os.PathLike,
    outcomes: pd.DataFrame | None = None,
    probe_dir: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Results rows of the paired metrics with the ground truth of their group (one row each)."""
    sweep_dir = Path(sweep_dir)
    if outcomes is None:
        outcomes = probe_outcomes(sweep_dir, probe_dir)
    results = _run_results(sweep_dir)
    results = results[results["metric"].isin({p.metric for p in PAIRS})]
    truth_cols = sorted({p.truth for p in PAIRS})
    extra = ["n_attribute_prompts"] if "n_attribute_prompts" in outcomes.columns else []
    joined = results.drop(columns=["n_images"], errors="ignore").merge(
        outcomes[[*GROUP_KEYS, "n_images", *extra, *truth_cols]],
        on=list(GROUP_KEYS),
        how="inner",
        validate="many_to_one",
    )
    if joined.empty and not results.empty:
        raise ResultsError(
            f"{sweep_dir}: no results row matches a probed group (run, checkpoint, leaf, prompt "
            "type); are the probe outcomes from this sweep?"
        )
    return joined
