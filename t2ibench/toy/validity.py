"""Validity of the metrics on the toy world: each metric against the probe's ground truth.

The paper could only compare metrics with each other; in the toy world the probe
(:mod:`t2ibench.toy.probe`) says what every generated image actually shows, so each metric can be
checked against what it claims to measure:

- fidelity (image similarity, centroid distance, Fréchet distance) vs the **concept rate** on train
  and trigger prompts: the share of images that show the leaf's concept;
- text alignment vs the **attribute-follow rate** on alter and style prompts: the share of images
  whose probed attributes match the base-vocabulary attributes the prompt names;
- Vendi vs the number of **distinct probe outcomes** among the images;
- style loss vs the **base-change rate**: 1 − the share of seed-paired base and tuned images whose
  probed background, colour and style agree.

The statistics respect how the sweep is built (see :func:`validity_table`): the correlation is taken
**within** each leaf × epoch stratum (leaves differ in level, so a pooled correlation mixes a
between-leaf effect into the answer), its confidence interval comes from a **cluster bootstrap over
runs** (a run's checkpoints, leaves and prompt types share one trained model, so the run is the
unit of independence), its p-value from permuting run labels, and the p-values are **Holm**-adjusted
across every metric/ground-truth row. Groups of fewer than :data:`MIN_IMAGES` images are flagged.
:func:`counterfactual_alignment` scores the same images against their prompts with the attribute
words swapped: an alignment metric that measures attributes must lose alignment.

``probe_outcomes(sweep)`` runs the probe once over every image of every run (cached by image hash in
``<sweep>/probe_cache.parquet``), ``validity_table(sweep)`` joins the results rows and computes the
statistics, ``write_validity_report(sweep, out)`` writes the CSVs, Markdown and self-contained HTML
report through :mod:`t2ibench.analysis.report`, the project's one report renderer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from t2ibench import csvsafe
from t2ibench.errors import ResultsError
from t2ibench.fsutil import atomic_write_with, file_sha256
from t2ibench.toy import world

log = logging.getLogger(__name__)

CACHE_NAME = "probe_cache.parquet"
OUTCOMES_NAME = "probe_outcomes.csv"
#: Fewer images than this per (run, checkpoint, leaf, prompt type) group and a rate such as the
#: concept rate moves in steps of 1/n ≥ 0.07: rows built on smaller groups are flagged.
MIN_IMAGES = 16
N_BOOT = 2000  # cluster-bootstrap replicates (percentile CI)
N_PERM = 2000  # run-label permutations (p-value)
ALPHA = 0.05
FEW_RUNS = 8  # a cluster bootstrap over fewer runs gives intervals narrower than the truth
ATTRS = tuple(world.ATTRIBUTES)  # shape, colour, background, style, outfit
PRESERVED = ("background", "colour", "style")  # what a base → tuned pair should keep
GROUP_KEYS = ("run", "checkpoint", "leaf", "prompt_type")


@dataclass(frozen=True)
class Pair:
    """A metric and the ground truth it should track, on the prompt types where that makes sense."""

    metric: str
    truth: str
    prompt_types: tuple[str, ...] | None  # None: every prompt type the metric has rows for
    sign: int  # expected sign of the correlation
    why: str


PAIRS: tuple[Pair, ...] = (
    Pair("image_similarity", "concept_rate", ("train", "trigger"), +1,
         "closer to the dataset images ↔ the concept is shown more often"),
    Pair("centroid_distance", "concept_rate", ("train", "trigger"), -1,
         "a distance: smaller when the concept is shown more often"),
    Pair("frechet_distance", "concept_rate", ("train", "trigger"), -1,
         "a distance: smaller when the concept is shown more often"),
    Pair("text_alignment", "attribute_follow_rate", ("alter", "style"), +1,
         "images match their prompt ↔ the probed attributes are the ones the prompt names"),
    Pair("vendi", "distinct_outcomes", None, +1,
         "more diverse features ↔ more distinct things shown"),
    Pair("style_loss", "base_change_rate", None, +1,
         "further from the base model's image ↔ its background, colour or style changed"),
)  # fmt: skip

_VOCAB = {
    **{w: "shape" for w in world.BASE_SHAPES},
    **{w: "colour" for w in world.BASE_COLOURS},
    **{w: "background" for w in world.BASE_BACKGROUNDS},
    **{w: "style" for w in world.BASE_STYLES},
}


# --- prompts and outcomes ---------------------------------------------------------------------------
def requested_attributes(prompt: str) -> dict[str, str]:
    """The base-vocabulary attributes a prompt names, matched by whole word.

    An attribute named with two different values ("a red circle and a blue square") is ambiguous
    and left out. Held-out words (triggers, "beach", "pastel") are not base vocabulary.
    """
    found: dict[str, set[str]] = {}
    for word in re.findall(r"[a-z]+", prompt.lower()):
        attr = _VOCAB.get(word)
        if attr:
            found.setdefault(attr, set()).add(word)
    return {a: next(iter(v)) for a, v in found.items() if len(v) == 1}


def outcome_tuple(pred: dict[str, str]) -> tuple[str, ...]:
    """The probe outcome as a tuple; colour means nothing on an empty scene, so it is blanked."""
    empty = pred.get("shape") == "none"
    return tuple("" if (a == "colour" and empty) else str(pred[a]) for a in ATTRS)


def shows_concept(pred: dict[str, str], leaf: str) -> bool:
    """Whether a probe prediction shows the leaf's held-out concept (every attribute it fixes)."""
    return all(pred.get(k) == v for k, v in world.concept(leaf).expected().items())


# --- finding the images -------------------------------------------------------------------------------
def _runs_root(sweep_dir: Path) -> Path:
    """``<sweep>/runs`` for a sweep; a ``t2ibench run --out`` folder holds the runs itself."""
    return sweep_dir / "runs" if (sweep_dir / "runs").is_dir() else sweep_dir


def _run_dirs(sweep_dir: Path) -> list[Path]:
    root = _runs_root(sweep_dir)
    if not root.is_dir():
        raise ResultsError(f"{sweep_dir}: no such sweep folder")
    runs = sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "run.json").is_file()
    )
    if not runs:
        raise ResultsError(f"{root}: no run folders (subfolders with a run.json)")
    return runs


def _base_images_dir(run_dir: Path) -> Path | None:
    """The run's base-model images: run.json ``base_images`` (looked up under this sweep's
    ``.base-images`` first, so a moved sweep folder still works), else an old-style images/base."""
    try:
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{run_dir / 'run.json'}: not JSON ({exc.msg})") from None
    spec = record.get("base_images")
    candidates = []
    if spec:
        candidates += [run_dir.parent / ".base-images" / Path(spec).name, Path(spec)]
    candidates.append(run_dir / "images" / "base")
    for c in candidates:
        if (c / "manifest.jsonl").is_file():
            return c
    return None


def _image_table(sweep_dir: Path) -> pd.DataFrame:
    """One row per generated image (runs' checkpoints and the base images they share)."""
    from t2ibench.pipeline.manifest import MANIFEST_NAME, read_manifest

    rows: list[dict] = []
    seen_base: dict[Path, str] = {}
    for run_dir in _run_dirs(sweep_dir):
        folders = []
        images = run_dir / "images"
        if images.is_dir():
            folders = [
                (run_dir.name, d)
                for d in sorted(images.iterdir())
                if d.name != "base" and (d / MANIFEST_NAME).is_file()
            ]
        base = _base_images_dir(run_dir)
        base_label = ""
        if base is not None:
            key = base.resolve()
            if key not in seen_base:
                seen_base[key] = f"base:{base.name}"
                folders.append((seen_base[key], base))
            base_label = seen_base[key]
        for run_name, folder in folders:
            for r in read_manifest(folder / MANIFEST_NAME):
                path = r.path(folder)
                if not path.is_file():
                    raise ResultsError(f"{folder / MANIFEST_NAME}: file {r.file!r} is missing")
                rows.append(
                    {
                        "run": run_name,
                        "base_of": base_label if not run_name.startswith("base:") else "",
                        "checkpoint": r.checkpoint,
                        "leaf": r.leaf,
                        "prompt_type": r.prompt_type,
                        "prompt": r.prompt,
                        "gen_seed": r.seed,
                        "index": -1 if r.index is None else r.index,
                        "variant": r.variant,
                        "sha256": r.sha256 or file_sha256(path),
                        "path": str(path),
                    }
                )
    if not rows:
        raise ResultsError(f"{sweep_dir}: no generated images (no images/*/manifest.jsonl)")
    return pd.DataFrame(rows)


# --- the probe, cached ------------------------------------------------------------------------------
def _probe_id(folder: Path) -> str:
    h = hashlib.sha256()
    for name in ("config.json", "probe.safetensors"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()[:16]


def probe_images(
    paths: Sequence[str], hashes: Sequence[str], cache: Path, probe_dir: Path | None = None,
    batch: int = 512,
) -> pd.DataFrame:  # fmt: skip
    """Probe predictions (columns sha256 + attributes) for the given images, cached by hash.

    Only images whose hash is not in ``cache`` (for the same probe weights) are read and probed, on
    the CPU in fixed batches, so a rerun costs nothing and the output does not depend on the batch.
    """
    import torch

    from t2ibench.images import open_image
    from t2ibench.toy.probe import PROBE_DIR, Probe

    probe_dir = Path(probe_dir or PROBE_DIR)
    if not (probe_dir / "probe.safetensors").is_file():
        raise ResultsError(f"{probe_dir}: the toy probe's weights are not installed")
    pid = _probe_id(probe_dir)
    known = pd.DataFrame(columns=["sha256", "probe", *ATTRS])
    if cache.is_file():
        try:
            known = pd.read_parquet(cache)
        except Exception as exc:  # a damaged cache is only lost time: recompute
            log.warning("%s: unreadable probe cache (%s); recomputing", cache, exc)
        else:
            known = known[known["probe"] == pid]
    have = set(known["sha256"])
    todo = {h: p for p, h in zip(paths, hashes, strict=True) if h not in have}
    if todo:
        probe = Probe.load(probe_dir)
        probe.net.to("cpu")
        torch.manual_seed(0)
        items = sorted(todo.items())
        new = []
        for i in range(0, len(items), batch):
            chunk = items[i : i + batch]
            images = []
            for _, p in chunk:
                images.append(open_image(p))
            for (h, _), pred in zip(chunk, probe.predict(images), strict=True):
                new.append({"sha256": h, "probe": pid, **pred})
        known = pd.concat([known, pd.DataFrame(new)], ignore_index=True)
        known = known.drop_duplicates("sha256", keep="last").sort_values("sha256")
        atomic_write_with(cache, lambda t: known.to_parquet(t, index=False))
    return known.drop(columns="probe").reset_index(drop=True)


def _vendi_groups_by_prompt(prompt_type: str) -> bool:
    """Whether the Vendi metric is computed per prompt then averaged on this prompt type (alter);
    the distinct-outcome count mirrors it so both count the same thing."""
    from t2ibench.metrics import get_metric

    try:
        return get_metric("vendi").group_by.get(prompt_type) == "prompt"
    except Exception:
        return False


def _entropy(counts: Sequence[int]) -> float:
    p = np.asarray(counts, float)
    p = p / p.sum()
    return float(-(p * np.log(p)).sum())


def _group_outcomes(g: pd.DataFrame, by_prompt: bool) -> dict[str, float]:
    n = len(g)
    concept = g["concept"].to_numpy(bool)
    req = g["requested"].to_numpy(bool)
    out: dict[str, float] = {
        "n_images": n,
        "concept_rate": float(concept.mean()),
        "n_attribute_prompts": int(req.sum()),
        "attribute_follow_rate": float(g["follows"][req].mean()) if req.any() else math.nan,
    }
    parts = [sub for _, sub in g.groupby("prompt", sort=True)] if by_prompt else [g]
    distinct = [len(set(sub["outcome"])) for sub in parts]
    counts = [list(Counter(sub["outcome"]).values()) for sub in parts]
    out["distinct_outcomes"] = float(np.mean(distinct))
    out["distinct_outcomes_norm"] = float(
        np.mean([d / len(s) for d, s in zip(distinct, parts, strict=True)])
    )
    out["outcome_entropy"] = float(np.mean([_entropy(c) for c in counts]))
    agnostic = g["prompt_type"].iat[0] == "concept-agnostic"
    out["leak_rate"] = float(concept.mean()) if agnostic else math.nan
    paired = g["base_agree"].notna().to_numpy()
    if paired.any():
        agree = g["base_agree"][paired].astype(float).mean()
        out["base_agreement_rate"] = float(agree)
        out["base_change_rate"] = float(1.0 - agree)
    else:
        out["base_agreement_rate"] = out["base_change_rate"] = math.nan
    return out


def has_images(sweep_dir: str | os.PathLike) -> bool:
    """Whether the sweep folder still holds its generated images (a committed reference sweep
    keeps only the tables; its report is recomputed from ``probe_outcomes.csv``)."""
    try:
        runs = _run_dirs(Path(sweep_dir))
    except ResultsError:
        return False
    return any(any((r / "images").glob("*/manifest.jsonl")) for r in runs)


def probed_images(
    sweep_dir: str | os.PathLike, probe_dir: str | os.PathLike | None = None
) -> pd.DataFrame:
    """One row per generated toy-world image: the manifest fields, the probe's attributes, and
    ``outcome``, ``concept`` (shows the leaf's concept), ``requested`` (the prompt names a
    base-vocabulary attribute), ``follows`` (every named attribute is shown) and ``base_agree``
    (background, colour and style agree with the seed-paired base image; None when unpaired)."""
    sweep_dir = Path(sweep_dir)
    images = _image_table(sweep_dir)
    toy = images["leaf"].isin({c.leaf for c in world.CONCEPTS})
    if not toy.all():
        # A run on another dataset (e.g. the tiny demo) has no ground truth: leave it out.
        other = images.loc[~toy, "run"].unique()
        log.warning("not toy-world leaves, left out: images of %s", ", ".join(sorted(other)))
        images = images[toy].reset_index(drop=True)
        if images.empty:
            raise ResultsError(
                f"{sweep_dir}: no image shows a toy-world leaf; the validity report needs a "
                "sweep on the toy dataset"
            )
    preds = probe_images(
        images["path"].tolist(),
        images["sha256"].tolist(),
        sweep_dir / CACHE_NAME,
        Path(probe_dir) if probe_dir else None,
    )
    df = images.merge(preds, on="sha256", how="left", validate="many_to_one")
    pred_dicts = df[list(ATTRS)].to_dict("records")
    df["outcome"] = [outcome_tuple(p) for p in pred_dicts]
    df["concept"] = [shows_concept(p, leaf) for p, leaf in zip(pred_dicts, df["leaf"], strict=True)]
    wants = [requested_attributes(p) for p in df["prompt"]]
    df["requested"] = [bool(w) for w in wants]
    df["follows"] = [
        all(p[k] == v for k, v in w.items()) for p, w in zip(pred_dicts, wants, strict=True)
    ]

    # Seed-paired base image of every tuned image: same leaf, prompt type, index and seed.
    pair_key = ["leaf", "prompt_type", "index", "gen_seed"]
    base = df[df["run"].str.startswith("base:")]
    base_preserved = {
        (row["run"], *(row[k] for k in pair_key)): tuple(row["outcome"][ATTRS.index(a)] for a in PRESERVED)
        for _, row in base.iterrows()
    }  # fmt: skip
    df["base_agree"] = [
        None
        if (ref := base_preserved.get((row["base_of"], *(row[k] for k in pair_key)))) is None
        else ref == tuple(row["outcome"][ATTRS.index(a)] for a in PRESERVED)
        for _, row in df.iterrows()
    ]
    return df


def probe_outcomes(
    sweep_dir: str | os.PathLike,
    probe_dir: str | os.PathLike | None = None,
    images: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Ground truth per (run, checkpoint, leaf, prompt type) of a sweep, from the probe.

    Columns: ``run`` (run folder; ``base:<hash>`` for the shared base-model images), ``checkpoint``,
    ``leaf``, ``prompt_type``, ``n_images``, ``concept_rate``, ``n_attribute_prompts``,
    ``attribute_follow_rate`` (NaN when no prompt names a base-vocabulary attribute),
    ``distinct_outcomes`` / ``distinct_outcomes_norm`` (÷ images) / ``outcome_entropy`` (nats;
    per prompt then averaged where Vendi is), ``leak_rate`` (concept-agnostic prompts only),
    ``base_agreement_rate`` / ``base_change_rate`` (seed-paired base images; tuned runs only).
    ``images``: the :func:`probed_images` table, when already at hand.
    """
    df = probed_images(sweep_dir, probe_dir) if images is None else images
    rows = []
    for key, g in df.groupby(list(GROUP_KEYS), sort=True):
        rows.append(
            {
                **dict(zip(GROUP_KEYS, key, strict=True)),
                **_group_outcomes(g, _vendi_groups_by_prompt(key[3])),
            }
        )
    out = pd.DataFrame(rows)
    out["n_images"] = out["n_images"].astype(int)
    return out


def read_outcomes(path: str | os.PathLike) -> pd.DataFrame:
    """A ``probe_outcomes.csv`` written by an earlier report (when the images are gone)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, keep_default_na=True)
        for col in df.select_dtypes(include="object"):
            df[col] = df[col].map(csvsafe.unescape_cell)  # written neutralised (csvsafe.to_csv)
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such probe outcomes file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not a probe outcomes CSV ({exc})") from None
    need = [*GROUP_KEYS, "n_images", "n_attribute_prompts", *sorted({p.truth for p in PAIRS})]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: not a probe outcomes CSV (missing columns {missing})")
    for c in GROUP_KEYS:
        df[c] = df[c].astype(str)
    return df


# --- results rows -----------------------------------------------------------------------------------
def _run_results(sweep_dir: Path) -> pd.DataFrame:
    """Every run's results rows, tagged with the run folder (checkpoint names repeat across runs).

    Run folders without a results table (a committed reference sweep keeps only ``run.json``) fall
    back to the sweep's joint ``results/`` table, whose checkpoints are ``<run>/<checkpoint>``.
    """
    from t2ibench.results import read_results

    frames, missing = [], []
    for run_dir in _run_dirs(sweep_dir):
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


# --- statistics -------------------------------------------------------------------------------------
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


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and do not count as tests)."""
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    pos = np.flatnonzero(np.isfinite(p))
    if len(pos):
        order = pos[np.argsort(p[pos], kind="stable")]
        m = len(order)
        adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
        out[order] = np.minimum(adj, 1.0)
    return out


def _percentile_ci(reps: np.ndarray) -> tuple[float, float]:
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
                lo, hi = _percentile_ci(cluster_bootstrap(X, Y, n_boot, seed + 1000 * k + j))
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


# --- counterfactual: swapped attribute words ---------------------------------------------------------
_BASE_VOCAB = {
    "shape": world.BASE_SHAPES,
    "colour": world.BASE_COLOURS,
    "background": world.BASE_BACKGROUNDS,
    "style": world.BASE_STYLES,
}


def swap_attributes(prompt: str) -> str | None:
    """The prompt with every base-vocabulary attribute it names replaced by the next value of the
    same attribute ("a red star on a striped background" → "a green star on a black background");
    None when it names none. Only the attribute words change."""
    wants = requested_attributes(prompt)
    for attr, word in wants.items():
        vocab = _BASE_VOCAB[attr]
        new = vocab[(vocab.index(word) + 1) % len(vocab)]
        prompt = re.sub(rf"(?<![a-z]){word}(?![a-z])", new, prompt, flags=re.IGNORECASE)
    return prompt if wants else None


def _toy_leaf(leaf: str):
    """The :class:`t2ibench.data.Leaf` of a toy leaf, as the toy dataset declares it, so the
    counterfactual texts are cleaned exactly as the alignment metric cleans its prompts."""
    from t2ibench.data import Concept, Leaf, Subclass
    from t2ibench.toy.dataset import KIND

    c = world.concept(leaf)
    subs = {
        o.subclass: Subclass(o.subclass, o.subclass_keyword.split()[0], o.subclass_keyword)
        for o in world.CONCEPTS
        if (o.category, o.cls) == (c.category, c.cls) and o.subclass and o.subclass_keyword
    }
    concept = Concept(
        key=f"{c.category}/{c.cls}",
        category=c.category,
        name=c.cls,
        trigger=c.trigger,
        class_word=c.class_word,
        kind=KIND[c.category],
        class_name=c.class_name,
        alter_templates=f"alter_{KIND[c.category]}.txt",
        repeats="auto",
        descriptor=f"{c.trigger} {c.class_word}",
        subclasses=subs,
    )
    return Leaf(leaf, concept, subs.get(c.subclass) if c.subclass else None, ())


def counterfactual_alignment(
    images: pd.DataFrame,
    encoder: str = "toy-clip",
    resize: str | None = None,
    weights: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Per image: cosine alignment with its own cleaned prompt and with the same prompt after
    :func:`swap_attributes`, and ``drop`` = original − swapped.

    ``images``: rows with ``path``, ``prompt``, ``leaf`` (and any other columns, kept). Images whose
    prompt names no base-vocabulary attribute are left out. Both texts go through
    :func:`t2ibench.prompts.clean_prompt`, so for objects and scenes both keep the class name: the
    drop isolates the attribute words from concept presence.
    """
    import torch

    from t2ibench.encoders import create_encoder
    from t2ibench.images import open_image
    from t2ibench.prompts import clean_prompt

    swapped = images["prompt"].map(swap_attributes)
    df = images[swapped.notna()].assign(swapped=swapped[swapped.notna()]).reset_index(drop=True)
    if df.empty:
        return df.assign(text=[], swapped_text=[], cos_original=[], cos_swapped=[], drop=[])
    leaves = {leaf: _toy_leaf(leaf) for leaf in df["leaf"].unique()}
    df["text"] = [
        clean_prompt(p, leaves[lf]) for p, lf in zip(df["prompt"], df["leaf"], strict=True)
    ]
    df["swapped_text"] = [
        clean_prompt(p, leaves[lf]) for p, lf in zip(df["swapped"], df["leaf"], strict=True)
    ]
    enc = create_encoder(encoder, weights=str(weights) if weights else None, resize=resize)
    feats = []
    for start in range(0, len(df), 256):
        batch = []
        for p in df["path"].iloc[start : start + 256]:
            batch.append(open_image(p))
        feats.append(enc.encode_images(batch))
    img = torch.nn.functional.normalize(torch.cat(feats).double(), dim=1)
    t_o = torch.nn.functional.normalize(enc.encode_texts(df["text"].tolist()).double(), dim=1)
    t_s = torch.nn.functional.normalize(
        enc.encode_texts(df["swapped_text"].tolist()).double(), dim=1
    )
    df["cos_original"] = (img * t_o).sum(1).numpy()
    df["cos_swapped"] = (img * t_s).sum(1).numpy()
    df["drop"] = df["cos_original"] - df["cos_swapped"]
    return df


def _mean_ci_by_cluster(
    values: np.ndarray, clusters: np.ndarray, n_boot: int, seed: int
) -> tuple[float, float, str]:
    """Percentile CI of the mean of ``values`` with whole clusters resampled (images when there
    is only one cluster, and the unit says so)."""
    rng = np.random.default_rng(seed)
    labels, inv = np.unique(clusters, return_inverse=True)
    unit = "run"
    if len(labels) < 2:
        inv, unit = np.arange(len(values)), "image (one run)"
    sums = np.bincount(inv, weights=values)
    counts = np.bincount(inv).astype(float)
    idx = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    reps = sums[idx].sum(1) / counts[idx].sum(1)
    lo, hi = _percentile_ci(reps)
    return lo, hi, unit


def counterfactual_summary(
    per_image: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0
) -> pd.DataFrame:
    """The paired drop (original − swapped alignment) with a cluster-bootstrap CI by run: over all
    images, over the images the probe says follow their prompt (when known), and per leaf.
    ``verdict``: ``loses alignment`` when the CI lies above 0, ``gains`` below, else inconclusive."""
    scopes: list[tuple[str, pd.DataFrame]] = [("all images", per_image)]
    if "follows" in per_image.columns:
        follows = per_image["follows"].astype(bool)
        scopes.append(("images that follow their prompt (probe)", per_image[follows]))
        scopes.append(("images that do not follow it (probe)", per_image[~follows]))
    scopes += [(f"leaf {leaf}", g) for leaf, g in per_image.groupby("leaf", sort=True)]
    rows = []
    for i, (scope, g) in enumerate(scopes):
        if g.empty:
            continue
        drop = g["drop"].to_numpy(float)
        clusters = g["run"].astype(str).to_numpy() if "run" in g.columns else np.zeros(len(g))
        lo, hi, unit = _mean_ci_by_cluster(drop, clusters, n_boot, seed + i)
        verdict = "loses alignment" if lo > 0 else "gains alignment" if hi < 0 else "inconclusive"
        rows.append(
            {
                "scope": scope,
                "n_images": len(g),
                "n_runs": int(pd.Series(clusters).nunique()),
                "mean_original": float(g["cos_original"].mean()),
                "mean_swapped": float(g["cos_swapped"].mean()),
                "mean_drop": float(drop.mean()),
                "ci_low": lo,
                "ci_high": hi,
                "resampled": unit,
                "share_lower": float((drop > 0).mean()),
                "verdict": verdict,
                "note": f"only {len(set(clusters))} runs: the interval is optimistic"
                if len(set(clusters)) < FEW_RUNS
                else "",
            }
        )
    return pd.DataFrame(rows)


# --- the report -------------------------------------------------------------------------------------
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
