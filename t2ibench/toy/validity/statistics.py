"""The statistics of the validity table: Spearman correlation within leaf × epoch strata, a cluster
bootstrap and a permutation test over runs (the unit of independence), Holm-adjusted across rows
(:func:`t2ibench.analysis.tables.holm`, the project's one Holm)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from t2ibench.analysis.tables import holm
from t2ibench.toy.validity.ground_truth import PAIRS
from t2ibench.toy.validity.joined import joined_table

#: Fewer images than this per (run, checkpoint, leaf, prompt type) group and a rate such as the
#: concept rate moves in steps of 1/n ≥ 0.07: rows built on smaller groups are flagged.
MIN_IMAGES = 16
N_BOOT = 2000  # cluster-bootstrap replicates (percentile CI)
N_PERM = 2000  # run-label permutations (p-value)
ALPHA = 0.05
FEW_RUNS = 8  # a cluster bootstrap over fewer runs gives intervals narrower than the truth


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spearman ρ along the last axis over the pairs where both sides are finite (ties: average
    ranks); NaN where fewer than 3 pairs or a side is constant. Returns (ρ, pairs)."""
    from scipy.stats import rankdata

    ok = np.isfinite(x) & np.isfinite(y)
    n = ok.sum(axis=-1)
    rx = rankdata(np.where(ok, x, np.nan), axis=-1, nan_policy="omit")
    ry = rankdata(np.where(ok, y, np.nan), axis=-1, nan_policy="omit")
    safe_n = np.maximum(n, 1)[..., None]
    dx = np.where(ok, rx - np.where(ok, rx, 0).sum(-1, keepdims=True) / safe_n, 0.0)
    dy = np.where(ok, ry - np.where(ok, ry, 0).sum(-1, keepdims=True) / safe_n, 0.0)
    vx, vy = (dx * dx).sum(-1), (dy * dy).sum(-1)
    defined = (n >= 3) & (vx > 1e-12) & (vy > 1e-12)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (dx * dy).sum(-1) / np.sqrt(vx * vy)
    return np.where(defined, rho, np.nan), n


def _stratified_rows(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x, y: (..., strata, runs). The mean of the within-stratum Spearman ρ, weighted by each
    stratum's number of pairs over the strata where ρ is defined; returns (ρ, defined strata)."""
    rho, n = _spearman_rows(x, y)
    w = np.where(np.isfinite(rho), n, 0)
    total = w.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        combined = (w * np.nan_to_num(rho)).sum(-1) / total
    return np.where(total > 0, combined, np.nan), np.isfinite(rho).sum(-1)


def stratified_spearman(x: Sequence[float], y: Sequence[float], strata: Sequence[object]) -> float:
    """Spearman ρ of x and y within each stratum, averaged with the strata's sizes as weights
    (strata with fewer than 3 finite pairs or a constant side left out; NaN if none is left)."""
    df = pd.DataFrame({"x": np.asarray(x, float), "y": np.asarray(y, float), "s": list(strata)})
    rhos, weights = [], []
    for _, g in df.groupby("s", sort=True):
        rho, n = _spearman_rows(g["x"].to_numpy(), g["y"].to_numpy())
        if np.isfinite(rho):
            rhos.append(float(rho))
            weights.append(int(n))
    return float(np.average(rhos, weights=weights)) if rhos else math.nan


def cluster_matrices(
    df: pd.DataFrame, x: str, y: str, stratum: str = "stratum", cluster: str = "run"
) -> tuple[np.ndarray, np.ndarray]:
    """(strata × clusters) matrices of x and y (NaN where a cluster has no row in a stratum; the
    mean where it has several)."""
    keys = [stratum, cluster]
    mx = df.groupby(keys, sort=True)[x].mean().unstack(cluster)
    my = df.groupby(keys, sort=True)[y].mean().unstack(cluster).reindex_like(mx)
    return mx.to_numpy(float), my.to_numpy(float)


def _replicates(X: np.ndarray, Y: np.ndarray, x_cols: np.ndarray, y_cols: np.ndarray):
    """The stratified ρ with columns (runs) re-indexed per replicate (rows of ``x_cols`` and
    ``y_cols``), in chunks so a paper-size sweep stays small in memory."""
    out = []
    for start in range(0, len(x_cols), _CHUNK):
        xs, ys = x_cols[start : start + _CHUNK], y_cols[start : start + _CHUNK]
        rho, _ = _stratified_rows(np.moveaxis(X[:, xs], 1, 0), np.moveaxis(Y[:, ys], 1, 0))
        out.append(rho)
    return np.concatenate(out) if out else np.empty(0)


_CHUNK = 250


def cluster_bootstrap(
    X: np.ndarray, Y: np.ndarray, n_boot: int = N_BOOT, seed: int = 0
) -> np.ndarray:
    """Replicates of the stratified ρ with whole clusters (columns: runs) resampled with
    replacement, the same draw in every stratum (a run's points stay together)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, X.shape[1], size=(n_boot, X.shape[1]))
    return _replicates(X, Y, idx, idx)


def permutation_p(
    X: np.ndarray, Y: np.ndarray, observed: float, n_perm: int = N_PERM, seed: int = 1
) -> float:
    """Two-sided p-value of the stratified ρ against run labels permuted jointly in every stratum
    (exchangeable runs under no association; the within-run dependence is kept). Its floor is
    1 / (n_perm + 1)."""
    if not math.isfinite(observed):
        return math.nan
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_perm, X.shape[1])), axis=1)
    same = np.broadcast_to(np.arange(X.shape[1]), perms.shape)
    reps = _replicates(X, Y, same, perms)
    reps = reps[np.isfinite(reps)]
    return float((1 + np.sum(np.abs(reps) >= abs(observed) - 1e-12)) / (1 + len(reps)))


def percentile_ci(reps: np.ndarray) -> tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if len(reps) < 100:
        return math.nan, math.nan
    lo, hi = np.percentile(reps, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return float(lo), float(hi)


def _truth_sizes(g: pd.DataFrame, truth: str) -> pd.Series:
    """Images behind each row's ground truth (the attribute-follow rate counts only the images
    whose prompt names an attribute)."""
    if truth == "attribute_follow_rate" and "n_attribute_prompts" in g.columns:
        return g["n_attribute_prompts"]
    return g["n_images"]


def _undefined_note(g: pd.DataFrame, truth: str, n: int) -> str:
    if n == 0:
        return "no ground truth for these prompts"
    const = [
        name
        for name, col in (("metric", "value"), ("truth", truth))
        if (g.groupby("stratum")[col].nunique(dropna=True) < 2).all()
    ]
    if const:
        return f"{' and '.join(const)} constant within every leaf × epoch"
    return "fewer than 3 runs with values in every leaf × epoch"


def _pair_groups(joined: pd.DataFrame):
    """(pair index, group index, pair, (encoder, resize, prompt type), rows with both sides finite
    and a ``stratum`` column = leaf × epoch) for every row of the validity table."""
    joined = joined.copy()
    epoch = joined["epoch"] if "epoch" in joined.columns else pd.Series(np.nan, joined.index)
    epoch = epoch.astype("object").where(epoch.notna(), joined["checkpoint"].astype(str))
    joined["stratum"] = joined["leaf"].astype(str) + " @ " + epoch.astype(str)
    for k, pair in enumerate(PAIRS):
        sub = joined[joined["metric"] == pair.metric]
        if pair.prompt_types is not None:
            sub = sub[sub["prompt_type"].isin(pair.prompt_types)]
        for j, (key, g) in enumerate(
            sub.groupby(["encoder", "resize", "prompt_type"], sort=True, dropna=False)
        ):
            ok = np.isfinite(g["value"].astype(float)) & np.isfinite(g[pair.truth].astype(float))
            yield k, j, pair, key, g[ok]


def by_leaf_table(joined: pd.DataFrame) -> pd.DataFrame:
    """The within-epoch Spearman ρ of every defined row, per leaf (no intervals: a breakdown that
    shows which leaves carry the headline, e.g. whether the class name in an object's cleaned
    prompt makes its alignment follow something else)."""
    rows = []
    for _, _, pair, (encoder, resize, prompt_type), g in _pair_groups(joined):
        row = {"metric": pair.metric, "encoder": encoder, "resize": resize}
        row["prompt_type"] = prompt_type
        for leaf, lg in g.groupby("leaf", sort=True):
            X, Y = cluster_matrices(lg, "value", pair.truth)
            row[str(leaf)] = float(_stratified_rows(X, Y)[0])
        if any(math.isfinite(v) for v in list(row.values())[4:]):
            rows.append(row)
    return pd.DataFrame(rows)


VALIDITY_COLUMNS = [
    "metric", "encoder", "resize", "prompt_type", "ground_truth", "expected_sign", "n", "n_runs",
    "n_strata", "spearman_within", "ci_low", "ci_high", "p_perm", "p_holm", "verdict",
    "pooled_spearman", "min_group_images", "enough_images", "note",
]  # fmt: skip


def validity_table(
    sweep_dir: str | os.PathLike | None = None,
    outcomes: pd.DataFrame | None = None,
    probe_dir: str | os.PathLike | None = None,
    joined: pd.DataFrame | None = None,
    *,
    min_images: int = MIN_IMAGES,
    n_boot: int = N_BOOT,
    n_perm: int = N_PERM,
    seed: int = 0,
) -> pd.DataFrame:
    """Per metric × encoder × resize × prompt type: how the metric tracks its ground truth.

    - ``spearman_within``: Spearman ρ between runs inside each leaf × epoch stratum, averaged over
      the strata (weighted by their sizes). Leaves differ in level (a scene's image similarity is
      not a character's), so a ρ pooled over leaves mixes that between-leaf contrast into the
      answer; ``pooled_spearman`` is shown for comparison only.
    - ``ci_low``/``ci_high``: 95 % percentile interval of a cluster bootstrap that resamples runs
      (``n_boot`` replicates): a run's checkpoints and leaves share one trained model, so runs, not
      points, are independent.
    - ``p_perm``: two-sided p-value from ``n_perm`` permutations of the run labels (jointly in
      every stratum); ``p_holm``: Holm-adjusted over every defined row of the table.
    - ``verdict``: ``holds`` / ``fails`` (the sign is / is not the expected one, the CI excludes 0
      and ``p_holm`` < 0.05), ``inconclusive`` (the CI covers 0 or ``p_holm`` ≥ 0.05), or
      ``undefined`` (see ``note``).
    - ``min_group_images`` / ``enough_images``: the smallest image group behind a ground-truth
      value; groups under ``min_images`` (default 16) are flagged in ``note``, and so are rows
      with fewer than 8 runs (a bootstrap over a handful of clusters is too narrow).
    """
    if joined is None:
        if sweep_dir is None:
            raise ValueError("validity_table: pass sweep_dir or joined")
        joined = joined_table(sweep_dir, outcomes, probe_dir)
    rows = []
    for k, j, pair, (encoder, resize, prompt_type), g in _pair_groups(joined):
        n = len(g)
        rho = lo = hi = p = math.nan
        n_strata, n_runs, pooled, note = 0, int(g["run"].nunique()), math.nan, ""
        if n:
            X, Y = cluster_matrices(g, "value", pair.truth)
            r, ns = _stratified_rows(X, Y)
            rho, n_strata = float(r), int(ns)
            pooled_r, _ = _spearman_rows(g["value"].to_numpy(float), g[pair.truth].to_numpy(float))
            pooled = float(pooled_r)
            if math.isfinite(rho):
                lo, hi = percentile_ci(cluster_bootstrap(X, Y, n_boot, seed + 1000 * k + j))
                p = permutation_p(X, Y, rho, n_perm, seed + 1000 * k + j + 500)
        if not math.isfinite(rho):
            note = _undefined_note(g, pair.truth, n)
        sizes = _truth_sizes(g, pair.truth)
        smallest = int(sizes.min()) if n else 0
        enough = bool(n) and smallest >= min_images
        flags = [note] if note else []
        if n and not enough:
            flags.append(f"groups of {smallest} < {min_images} images")
        if n and n_runs < FEW_RUNS:
            flags.append(f"only {n_runs} runs: the interval is optimistic")
        note = "; ".join(flags)
        rows.append(
            {
                "metric": pair.metric,
                "encoder": encoder,
                "resize": resize,
                "prompt_type": prompt_type,
                "ground_truth": pair.truth,
                "expected_sign": "+" if pair.sign > 0 else "-",
                "n": n,
                "n_runs": n_runs,
                "n_strata": n_strata,
                "spearman_within": rho,
                "ci_low": lo,
                "ci_high": hi,
                "p_perm": p,
                "pooled_spearman": pooled,
                "min_group_images": smallest,
                "enough_images": enough,
                "note": note,
                "exp_sign": pair.sign,
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=VALIDITY_COLUMNS)
    table["p_holm"] = holm(table["p_perm"].to_numpy(float))
    table["verdict"] = [_verdict(r) for r in table.itertuples(index=False)]
    return table[VALIDITY_COLUMNS]


def _verdict(r) -> str:
    if not math.isfinite(r.spearman_within):
        return "undefined"
    covers = not (r.ci_low > 0 or r.ci_high < 0)  # a NaN CI also counts as covering 0
    if covers or not r.p_holm < ALPHA:
        return "inconclusive"
    return "holds" if np.sign(r.spearman_within) == r.exp_sign else "fails"
