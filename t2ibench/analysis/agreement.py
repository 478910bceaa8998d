"""How far each metric agrees with human ratings, with intervals, beside the human ceiling.

Inputs are two tables joined on the rated unit ``(system, item)``:

- **ratings** (:func:`read_ratings`): one row per (criterion, system, item, rater) score, read from
  DreamBench++'s released human ratings, ImagenHub's rater TSVs, or a plain CSV
  (``image, prompt, rater, score`` and optional ``criterion``, ``system``);
- **scores** (:func:`read_scores`): per-image metric values (``t2ibench agreement --images`` makes
  them, :mod:`t2ibench.analysis.per_image`), averaged per unit when a unit has several images.

For every (criterion, metric) the report gives, against the raters' mean score per unit:

- Spearman ρ and Kendall τ-b, with BCa bootstrap intervals that resample *items* (a cluster holds
  every system's unit of one item, since the units of one prompt are not independent);
- pairwise accuracy: among pairs of units of the same item whose mean human scores differ (pairs of
  systems on one prompt, as DreamBench++ and ImagenHub compare methods), the share the metric
  orders the same way (metric ties count ½); with one system, all pairs of units;
- Krippendorff's α (interval) of the raters with the metric added as one more rater, beside α of
  the raters alone. A metric is not on the rating scale, so it is first mapped affinely onto it
  (same mean and standard deviation as the pooled human scores); α is then "could this metric
  stand in for a rater", not a correlation.

The **human ceiling** row of each criterion is leave-one-rater-out: each rater against the mean of
the other raters (Spearman, Kendall, pairwise accuracy), averaged over raters, with the same
bootstrap. A metric is compared with *all* raters' mean, a rater with one fewer, so the ceiling is
slightly conservative. A lower-is-better metric (its registry entry says so, or the scores table's
``higher_is_better`` column) is negated first, so a positive ρ always means agreement.

Security: ratings files are parsed as data only (JSON, TSV, CSV; ImagenHub's ``[a, b]`` cells with
:func:`json.loads`), the CSV goes through :mod:`t2ibench.csvsafe` and the HTML escapes every cell.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from t2ibench.errors import T2IBenchError

RATING_FORMATS: tuple[str, ...] = ("dreambench-pp", "imagenhub", "csv")
#: DreamBench++ stores [concept preservation, prompt following] per key (merge_data.py).
DREAMBENCH_PP_CRITERIA: tuple[str, str] = ("concept_preservation", "prompt_following")
#: ImagenHub's cells are [semantic consistency, perceptual quality]; overall = sqrt(SC * PQ).
IMAGENHUB_CRITERIA: tuple[str, str] = ("semantic_consistency", "perceptual_quality")
CEILING = "human ceiling (leave one rater out)"
N_BOOT = 1000
LEVEL = 0.95
#: Below this many rated items the report flags the intervals as rough.
MIN_ITEMS = 20


class AgreementError(T2IBenchError, ValueError):
    """A ratings or scores file cannot be read, or the two do not join."""


# --------------------------------------------------------------------------------------------------
# Reading human ratings
# --------------------------------------------------------------------------------------------------

RATING_COLUMNS = ("criterion", "system", "item", "rater", "score")


def _slug(text: str) -> str:
    """DreamBench++'s method slug: spaces and hyphens to underscores, lower case."""
    return text.replace(" ", "_").replace("-", "_").lower()


def _finish(df: pd.DataFrame, where: Path) -> pd.DataFrame:
    df = df.copy()
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    df = df.dropna(subset=["score"])
    for col in ("criterion", "system", "item", "rater"):
        df[col] = df[col].astype(str)
    if df.empty:
        raise AgreementError(f"{where}: no numeric ratings")
    dup = df.duplicated(["criterion", "system", "item", "rater"], keep=False)
    if dup.any():
        r = df[dup].iloc[0]
        raise AgreementError(
            f"{where}: rater {r.rater!r} rates {r.system or ''}/{r.item} ({r.criterion}) twice"
        )
    return df.reset_index(drop=True)


def read_dreambench_pp(path: Path) -> pd.DataFrame:
    """DreamBench++'s human ratings (the released ``data_human_rating`` archive).

    Raw layout (yuangpeng/dreambench_plus, ``merge_data.py`` ``merge_data_human_rating``):
    ``raw_data/<group>/<anything>-<method>.json``, each mapping ``"<collection_id>-<prompt_index>"``
    to ``[concept preservation, prompt following]``; a group is one rater. Merged layout
    (``krippendorff_analysis.py``): ``merged_data/<group>/<method>-cp.json`` / ``-pf.json`` mapping
    the same keys to one score. ``path`` may be the archive root, ``raw_data``/``merged_data``, or
    one group's folder. Rows: system = the method slug, item = the key.
    """
    root = path
    for sub in ("raw_data", "merged_data"):
        if (path / sub).is_dir():
            root = path / sub
            break
    groups = [p for p in sorted(root.iterdir()) if p.is_dir()] if root.is_dir() else []
    if not groups and any(root.glob("*.json")):
        groups = [root]
    rows = []
    for group in groups:
        for file in sorted(group.glob("*.json")):
            try:
                data = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise AgreementError(f"{file}: not a DreamBench++ ratings JSON ({exc})") from None
            if not isinstance(data, dict):
                raise AgreementError(f"{file}: expected a JSON object of key → score")
            stem = file.stem
            merged = re.match(r"^(.+)-(cp|pf)$", stem)
            for key, value in data.items():
                if merged:
                    criterion = DREAMBENCH_PP_CRITERIA[merged.group(2) == "pf"]
                    rows.append((criterion, merged.group(1), key, group.name, value))
                    continue
                if not isinstance(value, list) or len(value) != 2:
                    raise AgreementError(
                        f"{file}: key {key!r}: expected [concept preservation, prompt following]"
                    )
                system = stem.rsplit("-", 1)[-1]
                for criterion, v in zip(DREAMBENCH_PP_CRITERIA, value, strict=True):
                    rows.append((criterion, system, key, group.name, v))
    if not rows:
        raise AgreementError(
            f"{path}: no DreamBench++ ratings (expected raw_data/<group>/*-<method>.json or "
            "merged_data/<group>/<method>-cp.json)"
        )
    return _finish(pd.DataFrame(rows, columns=list(RATING_COLUMNS)), path)


_IMAGENHUB_RATER = re.compile(r"^(.*?)_?(rater\w*)$")


def read_imagenhub(path: Path) -> pd.DataFrame:
    """ImagenHub's human ratings (TIGER-AI-Lab/ImagenHub ``eval/human_ratings/<Task>/``).

    One TSV per rater, ``<Task>_rater<k>.tsv``: column ``uid`` (the sample file, e.g.
    ``sample_0.jpg``), then one column per model whose cells are ``[SC, PQ]`` (semantic consistency
    and perceptual quality, each 0, 0.5 or 1). ImagenHub's overall score is sqrt(SC × PQ); all three
    are criteria here. ``path``: one TSV, a task folder or ``human_ratings``. Rows: system = the
    model column, item = the uid (prefixed by the task when several tasks are read).
    """
    files = [path] if path.is_file() else sorted(path.rglob("*.tsv"))
    if not files:
        raise AgreementError(f"{path}: no ImagenHub rater TSV (<Task>_rater<k>.tsv)")
    tasks = {f.parent.name for f in files}
    rows = []
    for file in files:
        m = _IMAGENHUB_RATER.match(file.stem)
        rater = m.group(2) if m else file.stem
        try:
            df = pd.read_csv(file, sep="\t", dtype=str, keep_default_na=False)
        except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise AgreementError(f"{file}: not a TSV ({exc})") from None
        if "uid" not in df.columns:
            raise AgreementError(f"{file}: no 'uid' column (ImagenHub rater TSV)")
        prefix = f"{file.parent.name}/" if len(tasks) > 1 else ""
        for _, r in df.iterrows():
            for system in (c for c in df.columns if c != "uid"):
                cell = r[system].strip()
                if not cell:
                    continue
                try:
                    sc, pq = (float(v) for v in json.loads(cell))
                except (ValueError, TypeError, json.JSONDecodeError):
                    raise AgreementError(
                        f"{file}: uid {r['uid']!r}, column {system!r}: expected [SC, PQ], "
                        f"got {cell[:40]!r}"
                    ) from None
                item = prefix + r["uid"]
                rows.append((IMAGENHUB_CRITERIA[0], system, item, rater, sc))
                rows.append((IMAGENHUB_CRITERIA[1], system, item, rater, pq))
                rows.append(("overall", system, item, rater, math.sqrt(max(sc * pq, 0.0))))
    return _finish(pd.DataFrame(rows, columns=list(RATING_COLUMNS)), path)


def read_plain_csv(path: Path) -> pd.DataFrame:
    """A plain CSV: ``image, prompt, rater, score`` (+ optional ``criterion``, ``system``)."""
    from t2ibench.csvsafe import unescape_cell

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise AgreementError(f"{path}: not a CSV ({exc})") from None
    missing = [c for c in ("image", "rater", "score") if c not in df.columns]
    if missing:
        raise AgreementError(
            f"{path}: missing column(s) {missing}; expected image, prompt, rater, score "
            "(optional criterion, system)"
        )
    out = pd.DataFrame(
        {
            "criterion": df.get("criterion", pd.Series(["score"] * len(df))).map(unescape_cell),
            "system": df.get("system", pd.Series([""] * len(df))).map(unescape_cell),
            "item": df["image"].map(unescape_cell).map(normalise_image),
            "rater": df["rater"].map(unescape_cell),
            "score": df["score"],
        }
    )
    out.loc[out["criterion"] == "", "criterion"] = "score"
    return _finish(out, path)


def normalise_image(path: str) -> str:
    """An image path as a join key: forward slashes, no leading ``./``."""
    p = str(path).replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    return p


def detect_format(path: Path) -> str:
    if path.is_file():
        return "imagenhub" if path.suffix == ".tsv" else "csv"
    if any(path.rglob("*.tsv")):
        return "imagenhub"
    if any(path.rglob("*.json")):
        return "dreambench-pp"
    raise AgreementError(f"{path}: cannot tell the ratings format; pass --format")


def read_ratings(path: str | Path, fmt: str = "auto") -> pd.DataFrame:
    """Human ratings as rows ``criterion, system, item, rater, score`` (see the module doc)."""
    path = Path(path)
    if not path.exists():
        raise AgreementError(f"{path}: no such ratings file or folder")
    fmt = detect_format(path) if fmt == "auto" else fmt
    readers: dict[str, Callable[[Path], pd.DataFrame]] = {
        "dreambench-pp": read_dreambench_pp,
        "imagenhub": read_imagenhub,
        "csv": read_plain_csv,
    }
    if fmt not in readers:
        raise AgreementError(f"ratings format {fmt!r}: expected auto, {', '.join(RATING_FORMATS)}")
    return readers[fmt](path)


# --------------------------------------------------------------------------------------------------
# Reading per-image metric values
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _direction(metric: str) -> float:
    """+1 for a higher-is-better metric, -1 for lower-is-better; unregistered: +1."""
    from t2ibench.metrics import METRICS

    if metric in METRICS:
        return 1.0 if METRICS.get(metric).higher_is_better else -1.0
    return 1.0


def read_scores(path: str | Path, fmt: str = "csv") -> pd.DataFrame:
    """Per-image metric values (CSV or parquet): ``metric, value`` and ``item`` or ``image``
    (optional ``system``, ``encoder``, ``measure``, ``higher_is_better``). Returns rows
    ``judge, system, item, value, direction`` averaged per (judge, system, item)."""
    from t2ibench.csvsafe import unescape_cell

    path = Path(path)
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, keep_default_na=False)
            for col in df.columns:
                if df[col].dtype == object:
                    df[col] = df[col].map(unescape_cell)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise AgreementError(f"{path}: cannot read the per-image scores ({exc})") from None
    return prepare_scores(df, str(path), fmt)


_DREAMBENCH_IMAGE = re.compile(r"(?:^|/)([^/]+)/(\d+)_\d+\.[A-Za-z]+$")


def item_of_image(image: str, fmt: str = "csv") -> str:
    """The ratings' item key of an image file: DreamBench++ rates ``<collection_id>-<prompt>`` and
    its images are ``tgt_image/<collection_id>/<prompt>_<j>.jpg``; ImagenHub rates the file name
    (``sample_0.jpg``, one folder per model); a plain CSV names the image path itself."""
    image = normalise_image(image)
    if fmt == "dreambench-pp":
        m = _DREAMBENCH_IMAGE.search(image)
        if not m:
            raise AgreementError(
                f"image {image!r}: not a DreamBench++ output (tgt_image/<id>/<prompt>_<j>.jpg)"
            )
        return f"{m.group(1)}-{m.group(2)}"
    if fmt == "imagenhub":
        return image.rsplit("/", 1)[-1]
    return image


def prepare_scores(df: pd.DataFrame, where: str = "scores", fmt: str = "csv") -> pd.DataFrame:
    """See :func:`read_scores`; ``df`` is the table already read; ``fmt`` (the ratings format)
    says how an ``image`` column becomes the ratings' item key (:func:`item_of_image`)."""
    if "metric" not in df.columns or "value" not in df.columns:
        raise AgreementError(f"{where}: needs columns metric and value (one row per image)")
    if "item" in df.columns:
        item = df["item"].astype(str)
    elif "image" in df.columns:
        item = df["image"].astype(str).map(lambda p: item_of_image(p, fmt))
    else:
        raise AgreementError(f"{where}: needs an item or image column")
    encoder = df["encoder"].astype(str) if "encoder" in df.columns else pd.Series([""] * len(df))
    measure = df["measure"].astype(str) if "measure" in df.columns else pd.Series([""] * len(df))
    metric = df["metric"].astype(str)
    judge = [
        ms if ms not in ("", "nan", "None") else (m if e in ("", m) else f"{m}@{e}")
        for m, e, ms in zip(metric, encoder.values, measure.values, strict=True)
    ]
    if "higher_is_better" in df.columns:
        direction = [1.0 if str(v).lower() in ("1", "true", "1.0") else -1.0
                     for v in df["higher_is_better"]]  # fmt: skip
    else:
        direction = [_direction(m) for m in metric]
    out = pd.DataFrame(
        {
            "judge": judge,
            "metric": metric.values,
            "system": df["system"].astype(str).values if "system" in df.columns else "",
            "item": item.values,
            "value": pd.to_numeric(df["value"], errors="coerce").values,
            "direction": direction,
        }
    ).dropna(subset=["value"])
    if out.empty:
        raise AgreementError(f"{where}: no numeric per-image values")
    return (
        out.groupby(["judge", "metric", "system", "item"], as_index=False, sort=True)
        .agg(value=("value", "mean"), direction=("direction", "first"))
        .reset_index(drop=True)
    )


def match_systems(
    ratings: pd.DataFrame, scores: pd.DataFrame, system_map: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """``scores`` with its systems renamed to the ratings' names: ``system_map`` (scores name →
    ratings name) first, then a scores system whose slug starts with exactly one ratings system's
    slug (DreamBench++'s ``samples/dreambooth_sd_gs7_5_…`` folder for method ``dreambooth_sd``)."""
    scores = scores.copy()
    rated = sorted(set(ratings["system"]))
    mapping = dict(system_map or {})
    for name in sorted(set(scores["system"])):
        if name in mapping or name in rated:
            continue
        hits = [r for r in rated if r and _slug(name).startswith(_slug(r))]
        longest = max((len(h) for h in hits), default=0)
        hits = [h for h in hits if len(h) == longest]
        if len(hits) == 1:
            mapping[name] = hits[0]
    scores["system"] = [mapping.get(s, s) for s in scores["system"]]
    if set(ratings["system"]) == {""}:
        scores["system"] = ""  # ratings of images, not of systems: the image is the unit
    # Renamed or merged systems: one value per (metric, system, item) again.
    return scores.groupby(["judge", "metric", "system", "item"], as_index=False, sort=True).agg(
        value=("value", "mean"), direction=("direction", "first")
    )


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank), as scipy's rankdata."""
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman ρ along the last axis (Pearson correlation of average ranks); NaN when constant."""
    rx, ry = _rank(np.asarray(x, float)), _rank(np.asarray(y, float))
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    den = np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(-1) / np.where(den > 0, den, 1), np.nan)


def _tie_pairs(x: np.ndarray) -> float:
    """Pairs tied in ``x`` (1-D)."""
    _, counts = np.unique(x, return_counts=True)
    return float((counts * (counts - 1) / 2).sum())


def concordance(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kendall τ-b of ``x`` against ``y`` and pairwise accuracy, along the last axis.

    τ-b = (C − D) / sqrt((n0 − n1)(n0 − n2)) (n0 pairs, n1 / n2 tied in x / y). Pairwise accuracy:
    among pairs ``y`` does not tie, the share ``x`` orders the same way, an ``x`` tie counting ½.
    Small samples use sign matrices (vectorised over rows); large ones scipy's O(n log n) τ-b and
    tie counts: the pairs y does not tie are C + D + T (T: tied in x only), and C − D = S.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.ndim == 1:
        tau, acc = concordance(x[None], y[None])
        return tau[0], acc[0]
    rows, n = x.shape
    tau, acc = np.full(rows, np.nan), np.full(rows, np.nan)
    if n < 2:
        return tau, acc
    if n <= 300:
        i, j = np.triu_indices(n, 1)
        step = max(1, 4_000_000 // len(i))
        for s in range(0, rows, step):
            dx = np.sign(x[s : s + step, i] - x[s : s + step, j])
            dy = np.sign(y[s : s + step, i] - y[s : s + step, j])
            prod = dx * dy
            num = prod.sum(-1)
            nx, ny = (dx != 0).sum(-1), (dy != 0).sum(-1)
            den = np.sqrt(nx * ny.astype(float))
            agree = (prod > 0).sum(-1) + 0.5 * ((dx == 0) & (dy != 0)).sum(-1)
            with np.errstate(invalid="ignore", divide="ignore"):
                tau[s : s + step] = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
                acc[s : s + step] = np.where(ny > 0, agree / np.where(ny > 0, ny, 1), np.nan)
        return tau, acc
    from scipy.stats import kendalltau

    n0 = n * (n - 1) / 2
    for i in range(rows):
        t = float(kendalltau(x[i], y[i]).statistic)
        n1, n2 = _tie_pairs(x[i]), _tie_pairs(y[i])
        both = _tie_pairs(x[i] + 1j * y[i])  # tied in x and in y
        s_ = t * math.sqrt((n0 - n1) * (n0 - n2)) if np.isfinite(t) else 0.0
        t_only = n1 - both
        untied_y = n0 - n2
        concordant = (untied_y - t_only + s_) / 2
        tau[i] = t
        acc[i] = (concordant + 0.5 * t_only) / untied_y if untied_y > 0 else math.nan
    return tau, acc


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall τ-b along the last axis (see :func:`concordance`)."""
    return concordance(x, y)[0]


def pair_stats(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(rows, 3): Spearman ρ, Kendall τ-b, all-pairs accuracy of ``x`` against ``y``."""
    x2, y2 = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(y, float))
    tau, acc = concordance(x2, y2)
    return np.stack([spearman(x2, y2), tau, acc], axis=-1)


def krippendorff_alpha_interval(matrix: np.ndarray) -> float:
    """Krippendorff's α, interval metric, of a raters × units matrix (NaN = not rated).

    α = 1 − D_o / D_e over pairable values (units with at least two ratings): D_o is the mean
    squared difference within units (each unit's pairs weighted 1 / (m_u − 1)), D_e the mean
    squared difference between any two pairable values (Krippendorff 2011, "Computing
    Krippendorff's alpha-reliability", §C).
    """
    m = np.asarray(matrix, float)
    counts = np.sum(~np.isnan(m), axis=0)
    units = m[:, counts >= 2]
    mu = counts[counts >= 2]
    n = mu.sum()
    if n < 2:
        return math.nan
    d_o = 0.0
    for u in range(units.shape[1]):
        v = units[:, u][~np.isnan(units[:, u])]
        d_o += ((v[:, None] - v[None, :]) ** 2).sum() / (len(v) - 1)
    d_o /= n
    values = units[~np.isnan(units)]
    # Σ_{i≠j} (v_i − v_j)² = 2n Σ v² − 2 (Σ v)²
    d_e = (2 * n * (values**2).sum() - 2 * values.sum() ** 2) / (n * (n - 1))
    return math.nan if d_e == 0 else 1.0 - d_o / d_e


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def _clusters(keys: Sequence[str]) -> list[np.ndarray]:
    """Row indices of each distinct key, keys sorted."""
    codes, uniques = pd.factorize(pd.Series(list(keys)), sort=True)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(len(uniques))]


def _draws(clusters: list[np.ndarray], n_boot: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of ``n_boot`` cluster-bootstrap samples (whole clusters drawn with replacement)."""
    c = len(clusters)
    picks = rng.integers(0, c, size=(n_boot, c))
    if len({len(k) for k in clusters}) == 1:  # equal clusters: one fancy index
        return list(np.stack(clusters)[picks].reshape(n_boot, -1))
    return [np.concatenate([clusters[j] for j in row]) for row in picks]


def _on_samples(
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray
) -> Callable[[list[np.ndarray]], np.ndarray]:
    """A statistic over row samples: ``fn`` on the stacked samples when they have one length."""

    def stat(samples: list[np.ndarray]) -> np.ndarray:
        if len({len(i) for i in samples}) == 1:
            idx = np.stack(samples)
            return fn(x[idx], y[idx])
        return np.concatenate([fn(x[i][None], y[i][None]) for i in samples])

    return stat


def bca_intervals(
    statistic: Callable[[list[np.ndarray]], np.ndarray],
    clusters: list[np.ndarray],
    *,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    rng: np.random.Generator,
) -> list[Interval]:
    """BCa bootstrap intervals of the statistics ``statistic`` computes, resampling clusters.

    ``statistic(samples)`` takes a list of row-index arrays and returns (samples, k) values; the
    acceleration comes from the leave-one-cluster-out jackknife (Efron & Tibshirani 1993, §14.3).
    A statistic whose correction is undefined gets the percentile interval; fewer than 3 clusters,
    or a bootstrap where most draws are undefined, no interval.
    """
    from scipy.stats import norm

    full = np.atleast_2d(statistic([np.concatenate(clusters)]))[0]
    k = full.shape[0]
    if len(clusters) < 3:
        return [Interval(float(e), math.nan, math.nan) for e in full]
    boots = np.atleast_2d(statistic(_draws(clusters, n_boot, rng)))
    jack = np.atleast_2d(
        statistic([np.concatenate(clusters[:i] + clusters[i + 1 :]) for i in range(len(clusters))])
    )
    alpha = (1 - level) / 2
    out = []
    for j in range(k):
        est, b, jk = float(full[j]), boots[:, j], jack[:, j]
        b, jk = b[np.isfinite(b)], jk[np.isfinite(jk)]
        if not np.isfinite(est) or len(b) < n_boot // 2:
            out.append(Interval(est, math.nan, math.nan))
            continue
        prop = (np.sum(b < est) + 0.5 * np.sum(b == est)) / len(b)
        z0 = norm.ppf(min(max(prop, 1 / (2 * len(b))), 1 - 1 / (2 * len(b))))
        d = jk.mean() - jk if len(jk) else np.zeros(1)
        den = 6 * float(np.sum(d**2)) ** 1.5
        a = float(np.sum(d**3) / den) if den > 0 else 0.0
        qs = []
        for z in (norm.ppf(alpha), norm.ppf(1 - alpha)):
            adj = z0 + (z0 + z) / (1 - a * (z0 + z))
            qs.append(float(norm.cdf(adj)) if np.isfinite(adj) else (alpha if z < 0 else 1 - alpha))
        low, high = np.quantile(b, qs)
        out.append(Interval(est, float(low), float(high)))
    return out


def _within_pairs(items: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) of rows of the same item, and each pair's item number (sorted items)."""
    a, b, c = [], [], []
    for number, rows in enumerate(_clusters(items)):
        if len(rows) > 1:
            i, j = np.triu_indices(len(rows), 1)
            a.append(rows[i])
            b.append(rows[j])
            c.append(np.full(len(i), number))
    if not a:
        return np.array([], int), np.array([], int), np.array([], int)
    return np.concatenate(a), np.concatenate(b), np.concatenate(c)


def pairwise_agreement(
    metric: np.ndarray, human: np.ndarray, first: np.ndarray, second: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: 1 if the metric orders it as the humans do, ½ if the metric ties, 0 if not;
    and a mask of the pairs the humans do not tie (only those count)."""
    h = np.sign(human[first] - human[second])
    m = np.sign(metric[first] - metric[second])
    score = np.where(m == 0, 0.5, (m == h).astype(float))
    return score, h != 0


def _within_accuracy(
    pairs: list[tuple[np.ndarray, np.ndarray]],
    n_clusters: int,
    n_boot: int,
    level: float,
    rng: np.random.Generator,
) -> tuple[Interval, int]:
    """Pairwise accuracy over within-item pairs, averaged over ``pairs`` (one (per-cluster agree
    sums, per-cluster counts) per rater or metric), with a percentile interval: a cluster-bootstrap
    sample weighs each cluster by how often it was drawn."""
    w = rng.multinomial(n_clusters, np.full(n_clusters, 1 / n_clusters), size=n_boot)
    ests, boots = [], []
    for sums, counts in pairs:
        if counts.sum():
            ests.append(sums.sum() / counts.sum())
            with np.errstate(invalid="ignore", divide="ignore"):
                boots.append((w @ sums) / (w @ counts))
    n_pairs = int(sum(c.sum() for _, c in pairs))
    if not ests:
        return Interval(math.nan, math.nan, math.nan), 0
    est = float(np.mean(ests))
    b = np.nanmean(np.stack(boots), axis=0) if n_clusters >= 3 else np.array([])
    b = b[np.isfinite(b)]
    if len(b) < n_boot // 2:
        return Interval(est, math.nan, math.nan), n_pairs
    a = (1 - level) / 2
    return Interval(est, float(np.quantile(b, a)), float(np.quantile(b, 1 - a))), n_pairs


def _cluster_sums(
    metric: np.ndarray, human: np.ndarray, items: np.ndarray, ok: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per item: the agreement sum and count of its within-item pairs the humans tell apart."""
    first, second, number = _within_pairs(items)
    score, counted = pairwise_agreement(metric, human, first, second)
    if ok is not None:
        counted &= ok[first] & ok[second]
    n = len(set(items.tolist()))
    sums = np.bincount(number[counted], weights=score[counted], minlength=n)
    counts = np.bincount(number[counted], minlength=n).astype(float)
    return sums, counts


_STATS = ("spearman", "kendall", "pairwise_accuracy")


def _intervals_dict(names: Sequence[str], ivs: Sequence[Interval]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, iv in zip(names, ivs, strict=True):
        low = "pairwise" if name == "pairwise_accuracy" else name
        out.update({name: iv.estimate, f"{low}_low": iv.low, f"{low}_high": iv.high})
    return out


def _stats_for(
    metric: np.ndarray,
    human: np.ndarray,
    items: np.ndarray,
    within: bool,
    n_boot: int,
    level: float,
    rng: np.random.Generator,
) -> dict[str, Any]:
    clusters = _clusters(items)
    ivs = bca_intervals(_on_samples(pair_stats, metric, human), clusters,
                        n_boot=n_boot, level=level, rng=rng)  # fmt: skip
    out = _intervals_dict(_STATS, ivs)
    if within:  # pairs of systems on one item, not all pairs of units
        acc, n_pairs = _within_accuracy(
            [_cluster_sums(metric, human, items)], len(clusters), n_boot, level, rng
        )
        out.update(_intervals_dict(["pairwise_accuracy"], [acc]))
    else:
        n_pairs = int(len(human) * (len(human) - 1) / 2 - _tie_pairs(human))
    out["n_pairs"] = n_pairs
    return out


def _ceiling(
    matrix: np.ndarray,
    items: np.ndarray,
    within: bool,
    n_boot: int,
    level: float,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Leave-one-rater-out: each rater against the other raters' mean, averaged over raters.

    The other raters' mean of a unit does not change when units are resampled, so it is computed
    once; a bootstrap sample averages the per-rater statistics over the same drawn clusters.
    """
    n_raters = matrix.shape[0]
    if n_raters < 2:
        return {}
    clusters = _clusters(items)
    per_rater = []
    for r in range(n_raters):
        others = np.delete(matrix, r, axis=0)
        ok = ~np.isnan(matrix[r]) & (np.sum(~np.isnan(others), axis=0) > 0)
        if ok.sum() < 3:
            continue
        with np.errstate(invalid="ignore"):
            rest = np.where(ok, np.nanmean(np.where(np.isnan(others), np.nan, others), axis=0), 0)
        per_rater.append((np.where(ok, matrix[r], 0.0), rest, ok))
    if not per_rater:
        return {}

    def stat(samples: list[np.ndarray]) -> np.ndarray:
        values = []
        for own, rest, ok in per_rater:
            if ok.all():
                values.append(_on_samples(pair_stats, own, rest)(samples))
            else:
                values.append(
                    np.concatenate([pair_stats(own[i[ok[i]]], rest[i[ok[i]]]) for i in samples])
                )
        with np.errstate(invalid="ignore"):
            return np.nanmean(np.stack(values), axis=0)

    boot = max(200, n_boot // 2)
    out = _intervals_dict(_STATS, bca_intervals(stat, clusters, n_boot=boot, level=level, rng=rng))
    if within:
        sums = [_cluster_sums(own, rest, items, ok) for own, rest, ok in per_rater]
        acc, _ = _within_accuracy(sums, len(clusters), boot, level, rng)
        out.update(_intervals_dict(["pairwise_accuracy"], [acc]))
    return out


def _unit_table(ratings: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Units (system, item) of one criterion, and a raters × units matrix of scores (NaN: not
    rated)."""
    wide = ratings.pivot_table(
        index=["system", "item"], columns="rater", values="score", aggfunc="mean", sort=True
    )
    units = wide.index.to_frame(index=False)
    return units, wide.to_numpy(float).T, [str(c) for c in wide.columns]


def agreement(
    ratings: pd.DataFrame,
    scores: pd.DataFrame,
    *,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
    system_map: Mapping[str, str] | None = None,
    judges: Sequence[str] = (),
    ceiling: bool = True,
) -> pd.DataFrame:
    """One row per (criterion, metric) and one human-ceiling row per criterion (module doc).

    ``ratings``: :func:`read_ratings` rows; ``scores``: :func:`prepare_scores` rows. ``judges``:
    metric names to label ``judge`` (the rest are ``paper metric``); by default the registered
    metrics whose encoder is a judge (:mod:`t2ibench.metrics.judges`). ``ceiling=False`` skips the
    human-ceiling rows. Columns: criterion, metric, kind, n_units, n_items, n_raters,
    spearman(_low/_high), kendall(_low/_high), pairwise_accuracy (pairwise_low/_high), n_pairs,
    alpha_with_metric, alpha_humans.
    """
    scores = match_systems(ratings, scores, system_map)
    judge_names = set(judges) or _default_judges()
    rows = []
    for criterion, rated in ratings.groupby("criterion", sort=True):
        units, matrix, raters = _unit_table(rated)
        human = np.nanmean(matrix, axis=0)
        key = list(zip(units["system"], units["item"], strict=True))
        items_all = units["item"].to_numpy(str)
        within = units.groupby("item")["system"].nunique().max() > 1
        alpha_h = krippendorff_alpha_interval(matrix)
        base = {"criterion": criterion, "n_raters": len(raters), "alpha_humans": alpha_h}
        rng = np.random.default_rng(seed)
        top = _ceiling(matrix, items_all, within, n_boot, level, rng) if ceiling else {}
        if top:
            rows.append(
                {
                    **base,
                    "metric": CEILING,
                    "kind": "human",
                    "n_units": len(units),
                    "n_items": len(set(items_all)),
                    **top,
                }
            )
        for judge, sc in scores.groupby("judge", sort=True):
            values = dict(zip(zip(sc["system"], sc["item"], strict=True), sc["value"], strict=True))
            have = np.array([k in values for k in key])
            if have.sum() < 3:
                continue
            direction = float(sc["direction"].iloc[0])
            m = np.array([values[k] for k, h in zip(key, have, strict=True) if h]) * direction
            h = human[have]
            items = items_all[have]
            stats = _stats_for(m, h, items, within, n_boot, level, np.random.default_rng(seed))
            pooled = matrix[:, have][~np.isnan(matrix[:, have])]
            sd_m = m.std()
            mapped = (
                (m - m.mean()) / sd_m * pooled.std() + pooled.mean() if sd_m > 0 else m * np.nan
            )
            alpha_j = krippendorff_alpha_interval(np.vstack([matrix[:, have], mapped[None]]))
            rows.append(
                {
                    **base,
                    "alpha_humans": krippendorff_alpha_interval(matrix[:, have]),
                    "metric": judge,
                    "kind": "judge" if str(sc["metric"].iloc[0]) in judge_names else "paper metric",
                    "n_units": int(have.sum()),
                    "n_items": len(set(items)),
                    **stats,
                    "alpha_with_metric": alpha_j,
                }
            )
    if not any(r["kind"] != "human" for r in rows):
        raise AgreementError(
            "no metric value joins the ratings (need at least 3 rated units with a value): check "
            "that the scores' item/image and system match the ratings' (--system OLD=NEW)"
        )
    cols = [
        "criterion", "metric", "kind", "n_units", "n_items", "n_raters",
        "spearman", "spearman_low", "spearman_high", "kendall", "kendall_low", "kendall_high",
        "pairwise_accuracy", "pairwise_low", "pairwise_high", "n_pairs",
        "alpha_with_metric", "alpha_humans",
    ]  # fmt: skip
    return pd.DataFrame(rows).reindex(columns=cols)


def _default_judges() -> set[str]:
    """The registered metrics whose encoder is a judge (family ``judge``)."""
    from t2ibench.encoders import ENCODERS
    from t2ibench.metrics import METRICS

    out = set()
    for name in METRICS.names():
        encoder = METRICS.get(name).encoder
        if encoder and encoder in ENCODERS and ENCODERS.get(encoder).family == "judge":
            out.add(name)
    return out


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def agreement_section(table: pd.DataFrame, *, n_boot: int = N_BOOT, level: float = LEVEL) -> Any:
    """The report section (a :class:`t2ibench.analysis.report.Section`) for ``table``."""
    from t2ibench.analysis.report import Section

    sec = Section("Agreement with human ratings")
    sec.text(
        f"Per criterion, each metric against the raters' mean score per rated unit: Spearman ρ and "
        f"Kendall τ-b with {level:.0%} BCa bootstrap intervals resampling items ({n_boot} draws), "
        "pairwise accuracy on the pairs of systems the raters tell apart, and Krippendorff's α "
        "(interval) with the metric as one more rater (mapped onto the rating scale). The human "
        "ceiling is each rater against the other raters' mean. A metric whose interval overlaps "
        "the ceiling's is not shown to be worse than a rater; overlapping metrics are not ranked."
    )
    shown = table.copy()

    def ci(est: str, lo: str, hi: str) -> list[str]:
        return [
            ""
            if not np.isfinite(e)
            else f"{e:.3f} [{lo_:.3f}, {hi_:.3f}]"
            if np.isfinite(lo_)
            else f"{e:.3f}"
            for e, lo_, hi_ in zip(shown[est], shown[lo], shown[hi], strict=True)
        ]

    view = pd.DataFrame(
        {
            "criterion": shown["criterion"],
            "metric": shown["metric"],
            "kind": shown["kind"],
            "units": shown["n_units"],
            "Spearman ρ": ci("spearman", "spearman_low", "spearman_high"),
            "Kendall τ": ci("kendall", "kendall_low", "kendall_high"),
            "pairwise acc.": ci("pairwise_accuracy", "pairwise_low", "pairwise_high"),
            "α with metric": shown["alpha_with_metric"],
            "α humans": shown["alpha_humans"],
        }
    )
    sec.table(view, caption="Agreement with human ratings", max_rows=200)
    few = sorted({f"{c}: {m} ({n} items)" for c, m, n in
                  zip(table["criterion"], table["metric"], table["n_items"], strict=True)
                  if n < MIN_ITEMS})  # fmt: skip
    if few:
        sec.text(
            f"Fewer than {MIN_ITEMS} rated items: the bootstrap intervals of these rows are rough "
            "(a cluster bootstrap needs many clusters); read them as inconclusive."
        )
        sec.bullets(few)
    return sec


def write_agreement(
    table: pd.DataFrame, out: str | Path, *, n_boot: int = N_BOOT, level: float = LEVEL
) -> tuple[Path, Path]:
    """``agreement.csv`` (neutralised) and ``agreement.html`` (escaped) in ``out``."""
    import io

    from t2ibench import csvsafe
    from t2ibench.analysis.report import render_html
    from t2ibench.fsutil import atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    csvsafe.to_csv(table, buf, index=False)
    csv_path = atomic_write(out / "agreement.csv", buf.getvalue())
    html_path = render_html(
        "t2ibench: agreement with human ratings",
        [agreement_section(table, n_boot=n_boot, level=level)],
        out / "agreement.html",
        out,
    )
    return csv_path, html_path
