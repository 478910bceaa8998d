"""How many images a study needs: a planner from a pilot's results (``t2ibench plan``).

**The unit.** A results table holds one value per checkpoint × leaf × measurement (a leaf's mean over
its ``n_images`` images), never one per image, so the planner works in the units t2ibench's own
intervals use: for one checkpoint and one measurement (metric, encoder, resize, prompt type) the
leaves are the units, and the interval is the raw view's Student-t over leaves,
``mean ± t_{n−1} · sd / √n`` (:mod:`t2ibench.analysis.raw`). A table whose rows are single images
(``n_images`` = 1) is planned the same way, image by image.

**Width.** For a target half-width ``w`` (in the metric's own units) the units needed are the smallest
``n ≥ 2`` with ``t_{n−1} · sd / √n ≤ w``, ``sd`` the pilot's between-unit standard deviation pooled
over checkpoints (root mean of their variances; ``n_all`` uses the largest checkpoint's, so every
checkpoint meets the target). Images per prompt type and checkpoint = units × the pilot's images
per unit. The prediction assumes new units vary as the pilot's do: more leaves of the same kind at
the same images per leaf. More images per leaf shrink only the image-noise share of a leaf's
variance; a leaf table alone cannot separate that share from the between-leaf one.

**Ranking.** For a target probability that the order of the checkpoints (or configs) on a criterion's
headline measurement is the pilot's order, a normal approximation on per-unit paired differences:
two entities with pilot mean difference ``d`` and per-unit difference SD ``s`` are ordered right at
``n`` units with probability ``Φ(|d| √n / s)``; the whole order's probability is bounded below by
``1 − Σ`` over adjacent pairs of their error probabilities (Bonferroni), the best entity's by the
same sum over its pairs with every other. Plug-in: it takes the pilot's differences as the truth,
so a pilot that happens to separate two entities makes the plan optimistic; a tie in the pilot
needs "never" (reported as NaN).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from t2ibench.errors import ResultsError

MEASURE: tuple[str, ...] = ("metric", "encoder", "resize", "prompt_type")
BASE_CHECKPOINT = "base"
#: Unit counts above this are reported as not reachable (NaN): the pilot says "effectively never".
MAX_UNITS = 1_000_000
WIDTH_METHOD = "Student-t over units (leaves), mean ± t(n−1)·sd/√n, sd pooled over checkpoints"
RANK_METHOD = (
    "normal approximation on per-unit paired differences, P(pair ordered) = Φ(|d|√n/s), "
    "Bonferroni over adjacent pairs (order) or over the best's pairs (best)"
)


def _check_widths(widths: Iterable[float]) -> list[float]:
    out = [float(w) for w in widths]
    if not out:
        raise ResultsError("plan: give at least one target half-width (--width 0.01)")
    bad = [w for w in out if not (math.isfinite(w) and w > 0)]
    if bad:
        raise ResultsError(f"plan: a target half-width must be a positive number, got {bad[0]}")
    return out


def _check_level(level: float, what: str = "--level") -> float:
    if not (0.0 < float(level) < 1.0):
        raise ResultsError(f"plan: {what} must be between 0 and 1 (exclusive), got {level}")
    return float(level)


def t_half(sd: float, n, level: float = 0.95):
    """``t_{n−1} · sd / √n`` (NaN for n < 2)."""
    from scipy import stats

    n = np.asarray(n, dtype="float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        q = stats.t.ppf(0.5 + level / 2, np.where(n >= 2, n - 1, np.nan))
        return q * sd / np.sqrt(n)


def units_for_width(sd: float, width: float, level: float = 0.95) -> float:
    """Smallest ``n ≥ 2`` with ``t_{n−1}·sd/√n ≤ width``; NaN when sd is NaN, or above
    :data:`MAX_UNITS`."""
    from scipy import stats

    if not math.isfinite(sd):
        return math.nan
    if sd == 0.0:
        return 2.0
    z = stats.norm.ppf(0.5 + level / 2)
    n = max(2, math.ceil((z * sd / width) ** 2))  # the normal answer is a lower bound
    if n > MAX_UNITS:
        return math.nan
    while t_half(sd, n, level) > width:
        n += 1
    return float(n)


def _usable(df: pd.DataFrame) -> pd.DataFrame:
    need = ["checkpoint", "leaf", "value", *MEASURE]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ResultsError(f"plan: the results table lacks column(s) {missing}")
    from t2ibench.analysis.raw import constant_measures, drop_measures

    out = df[np.isfinite(pd.to_numeric(df["value"], errors="coerce"))]
    out = out[out["checkpoint"] != BASE_CHECKPOINT]
    # A measurement equal everywhere (Vendi of one image per prompt) says nothing about widths.
    out = drop_measures(out, constant_measures(out))
    if out.empty:
        raise ResultsError(
            "plan: no finite, non-constant values for any checkpoint other than the base model"
        )
    return out


def images_per_unit(df: pd.DataFrame) -> float:
    """The pilot's images per unit (median ``n_images``); NaN when the table does not say."""
    if "n_images" not in df.columns:
        return math.nan
    n = pd.to_numeric(df["n_images"], errors="coerce").dropna()
    return float(n.median()) if len(n) else math.nan


def unit_sd(df: pd.DataFrame) -> pd.DataFrame:
    """Per measurement: the pilot's between-unit SD per checkpoint, pooled and largest.

    Columns: the measure, ``checkpoints``, ``units`` (median units per checkpoint), ``mean``,
    ``sd`` (pooled: root mean of the checkpoints' variances), ``sd_max``, ``images_per_unit``.
    """
    df = _usable(df)
    per = (
        df.groupby(["checkpoint", *MEASURE], dropna=False)["value"]
        .agg(["count", "mean", "var"])
        .reset_index()
    )
    per = per[per["count"] >= 2]
    if per.empty:
        raise ResultsError(
            "plan: every checkpoint has a single unit (leaf) per measurement; an SD needs ≥ 2"
        )
    ipu = images_per_unit(df)
    g = per.groupby(list(MEASURE), dropna=False)
    out = pd.DataFrame(
        {
            "checkpoints": g["checkpoint"].nunique(),
            "units": g["count"].median(),
            "mean": g["mean"].mean(),
            "sd": np.sqrt(g["var"].mean()),
            "sd_max": np.sqrt(g["var"].max()),
        }
    ).reset_index()
    out["images_per_unit"] = ipu
    return out


def criteria_of(df: pd.DataFrame) -> pd.DataFrame:
    """The headline measurement of each criterion present (see
    :func:`t2ibench.analysis.checkpoints.headline_measures`)."""
    from t2ibench.analysis.checkpoints import headline_measures

    return headline_measures(df)


def width_plan(df: pd.DataFrame, widths: Sequence[float], level: float = 0.95) -> pd.DataFrame:
    """One row per measurement × target width: the units and images per prompt type and checkpoint
    for an interval of half-width ``width`` (see the module docstring)."""
    widths = _check_widths(widths)
    level = _check_level(level)
    sds = unit_sd(df)
    heads = criteria_of(df)
    sds = sds.merge(heads, on=list(MEASURE), how="left")
    sds["criterion"] = sds["criterion"].fillna("")
    rows = []
    for _, r in sds.iterrows():
        now = float(t_half(r["sd"], r["units"], level))
        for w in widths:
            n = units_for_width(r["sd"], w, level)
            n_all = units_for_width(r["sd_max"], w, level)
            ipu = r["images_per_unit"]
            rows.append({
                **{c: r[c] for c in ("criterion", *MEASURE)},
                "checkpoints": int(r["checkpoints"]), "pilot_units": float(r["units"]),
                "mean": r["mean"], "sd": r["sd"], "sd_max": r["sd_max"],
                "pilot_half_width": now, "target_half_width": w,
                "units_needed": n, "units_needed_all": n_all, "images_per_unit": ipu,
                "images_needed": n * ipu if math.isfinite(ipu) else math.nan,
                "images_needed_all": n_all * ipu if math.isfinite(ipu) else math.nan,
            })  # fmt: skip
    out = pd.DataFrame(rows)
    # the criteria's headline measurements first, then the rest; wider targets first
    out["_other"] = out["criterion"] == ""
    out = out.sort_values(
        ["_other", "criterion", *MEASURE, "target_half_width"],
        ascending=[True, True, True, True, True, True, False],
    )
    return out.drop(columns="_other").reset_index(drop=True)


def _entity_units(df: pd.DataFrame, measure: dict, by: str) -> pd.DataFrame:
    """entity × unit values of one measurement (a config's checkpoints averaged per unit)."""
    sub = df
    for c in MEASURE:
        sub = sub[sub[c] == measure[c]]
    if by == "config":
        sub = sub.groupby(["config", "leaf"])["value"].mean().reset_index()
        return sub.pivot(index="leaf", columns="config", values="value")
    return sub.pivot_table(index="leaf", columns="checkpoint", values="value", aggfunc="mean")


def _pair_error(d: float, s: float, n) -> np.ndarray:
    from scipy import stats

    n = np.asarray(n, dtype="float64")
    if s == 0.0:
        return np.where(d != 0.0, 0.0, 0.5) * np.ones_like(n)
    return stats.norm.sf(abs(d) * np.sqrt(n) / s)


def _pairs(wide: pd.DataFrame, higher_is_better: bool) -> tuple[list[str], list, list]:
    """Pilot order (best first), its adjacent pairs and the best's pairs as (d, s)."""
    wide = wide.dropna(axis=0, how="any")
    means = wide.mean(axis=0)
    order = list(means.sort_values(ascending=not higher_is_better).index)

    def ds(a, b):
        diff = (wide[a] - wide[b]).to_numpy()
        return float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else math.nan

    adjacent = [ds(order[i], order[i + 1]) for i in range(len(order) - 1)]
    best = [ds(order[0], o) for o in order[1:]]
    return order, adjacent, best


def _units_for_probability(pairs: list, p: float) -> float:
    """Smallest n with 1 − Σ pair errors ≥ p (NaN if a pair is tied or n > MAX_UNITS)."""
    if not pairs:
        return math.nan
    if any(not math.isfinite(s) or (d == 0.0) for d, s in pairs):
        return math.nan

    def ok(n):
        return 1.0 - sum(float(_pair_error(d, s, n)) for d, s in pairs) >= p

    if ok(1):
        return 1.0
    lo, hi = 1, 2
    while not ok(hi):
        lo, hi = hi, hi * 2
        if hi > MAX_UNITS:
            return math.nan
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return float(hi)


def order_probability(pairs: list, n) -> float:
    """Bonferroni lower bound on P(all ``pairs`` ordered as in the pilot) at ``n`` units."""
    if not pairs or any(not math.isfinite(s) for _, s in pairs):
        return math.nan
    return max(0.0, 1.0 - sum(float(_pair_error(d, s, n)) for d, s in pairs))


def ranking_plan(
    df: pd.DataFrame,
    probabilities: Sequence[float] = (0.95,),
    by: str = "checkpoint",
    directions: dict[str, bool] | None = None,
) -> pd.DataFrame:
    """Per criterion headline measurement: the units (and images) at which the pilot's order of the
    checkpoints (``by="config"``: configs) holds with each target probability, for the whole
    order and for the best one alone (see the module docstring)."""
    from t2ibench.analysis.scores import metric_directions

    if by not in ("checkpoint", "config"):
        raise ResultsError(f"plan: --by must be 'checkpoint' or 'config', got {by!r}")
    probabilities = [_check_level(p, "--probability") for p in probabilities]
    df = _usable(df)
    heads = criteria_of(df)
    dirs = metric_directions(df, directions) if not heads.empty else {}
    ipu = images_per_unit(df)
    rows = []
    for _, h in heads.iterrows():
        wide = _entity_units(df, h, by)
        if wide.shape[1] < 2:
            continue
        order, adjacent, best = _pairs(wide, dirs[h["metric"]])
        units = len(wide.dropna(axis=0, how="any"))
        for p in probabilities:
            n_order = _units_for_probability(adjacent, p)
            n_best = _units_for_probability(best, p)
            rows.append({
                "criterion": h["criterion"], **{c: h[c] for c in MEASURE}, "by": by,
                "entities": len(order), "pilot_order": " > ".join(map(str, order)),
                "pilot_units": units, "pilot_p_order": order_probability(adjacent, units),
                "pilot_p_best": order_probability(best, units), "target_probability": p,
                "units_order": n_order, "units_best": n_best, "images_per_unit": ipu,
                "images_order": n_order * ipu if math.isfinite(ipu) else math.nan,
                "images_best": n_best * ipu if math.isfinite(ipu) else math.nan,
            })  # fmt: skip
    return pd.DataFrame(rows)


def gpu_hours(plan: pd.DataFrame, column: str, checkpoints: int, image_s: float) -> pd.DataFrame:
    """GPU-hours of generating ``plan[column]`` images per prompt type and checkpoint for
    ``checkpoints`` checkpoints (the base model's images once more) at ``image_s`` s an image."""
    out = plan.copy()
    out["gpu_hours"] = out[column] * (checkpoints + 1) * image_s / 3600.0
    return out


def width_curve(sd: float, units: np.ndarray, level: float = 0.95) -> np.ndarray:
    """The predicted half-width at each unit count (for the plot)."""
    return t_half(sd, units, level)


def plot_widths(plan: pd.DataFrame, path, level: float = 0.95, max_lines: int = 8):
    """Half-width against images per prompt type and checkpoint, one line per criterion headline
    measurement (else per measurement, the first ``max_lines``), the targets dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    one = plan.drop_duplicates(list(MEASURE))
    heads = one[one["criterion"] != ""]
    lines = (heads if len(heads) else one).head(max_lines)
    ipu = float(plan["images_per_unit"].iloc[0]) if len(plan) else math.nan
    scale = ipu if math.isfinite(ipu) else 1.0
    top = max(float(np.nanmax(plan["units_needed"].to_numpy(dtype=float), initial=2)), 8.0)
    units = np.unique(np.geomspace(2, max(top * 2, 16), 60).round().astype(int))
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for _, r in lines.iterrows():
        crit = f"{r['criterion']}: " if r["criterion"] else ""
        label = f"{crit}{r['metric']} <{r['prompt_type']}> {r['encoder']} {r['resize']}".strip()
        ax.plot(units * scale, width_curve(r["sd"], units, level), label=label)
        ax.scatter([r["pilot_units"] * scale], [r["pilot_half_width"]], marker="o", s=18)
    for w in sorted(set(plan["target_half_width"])):
        ax.axhline(w, ls="--", color="0.5", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    what = "images per prompt type and checkpoint" if math.isfinite(ipu) else "units (rows)"
    ax.set_xlabel(what)
    ax.set_ylabel(f"predicted {level:.0%} half-width")
    ax.set_title("interval half-width against images (dots: the pilot; dashed: targets)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def subsample_half_widths(
    values: np.ndarray, n: int, repeats: int = 200, level: float = 0.95, seed: int = 0
) -> np.ndarray:
    """Half-widths of the t interval over ``n`` units drawn from the pilot's ``values`` (without
    replacement when there are enough, else with): the check of a width prediction."""
    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    rng = np.random.default_rng(seed)
    replace = n > len(v)
    out = np.empty(repeats)
    for i in range(repeats):
        s = rng.choice(v, size=n, replace=replace)
        out[i] = float(t_half(s.std(ddof=1), n, level))
    return out


def find_results(path) -> object:
    """The results table under ``path``: a results folder or file, a run or sweep folder (its
    ``results/``), or a ``run --out`` folder holding one run."""
    from pathlib import Path

    from t2ibench.results import RESULTS_CSV, RESULTS_PARQUET

    p = Path(path)
    if not p.exists():
        raise ResultsError(f"{p}: no such file or folder")
    if p.is_file() or (p / RESULTS_PARQUET).is_file() or (p / RESULTS_CSV).is_file():
        return p
    if (p / "results").is_dir():
        return p / "results"
    found = [c / "results" for c in sorted(p.iterdir()) if (c / "results").is_dir()]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        names = ", ".join(str(f.parent.name) for f in found[:5])
        raise ResultsError(f"{p}: several runs ({names}); give one run's folder or a sweep's")
    raise ResultsError(f"{p}: no results table here (results.parquet / results.csv, or results/)")


def write_plan(
    results,
    out,
    widths: Sequence[float],
    probabilities: Sequence[float] = (0.95,),
    *,
    level: float = 0.95,
    by: str = "checkpoint",
    checkpoints: int | None = None,
    image_s: float,
    image_source: str = "given (--image-seconds)",
    directions: dict[str, bool] | None = None,
    plot: bool = True,
) -> dict:
    """Plan from ``results`` (a folder, file or DataFrame, or a list of them: two pilots at
    different images per leaf add the images-per-leaf plan) with ``image_s`` seconds per generated
    image (``image_source`` says where it comes from) and write ``plan_widths.csv``,
    ``plan_ranking.csv`` (CSV-injection neutralised) and ``plan_widths.png`` into ``out``.
    Returns ``{"widths", "ranking", "files", "notes"}``."""
    from pathlib import Path

    from t2ibench import csvsafe
    from t2ibench.results import read_results

    widths = _check_widths(widths)
    level = _check_level(level)
    probabilities = [_check_level(p, "--probability") for p in probabilities]
    if checkpoints is not None and checkpoints < 1:
        raise ResultsError(f"plan: --checkpoints must be ≥ 1, got {checkpoints}")
    if not (math.isfinite(image_s) and image_s > 0):
        raise ResultsError(f"plan: --image-seconds must be positive, got {image_s}")
    sec, source = float(image_s), image_source
    known = {"metric": list(directions)} if directions else None
    many = list(results) if isinstance(results, (list, tuple)) else [results]
    if not many:
        raise ResultsError("plan: give a pilot's results")
    tables = [
        r if isinstance(r, pd.DataFrame) else read_results(find_results(r), known=known)
        for r in many
    ]
    # The width and ranking plans read the first pilot; all pilots together fit images per leaf,
    # their checkpoints kept apart (two runs both have "loha-e000001"; the base stays excluded).
    df = tables[0]
    both = pd.concat(
        [t.assign(pilot=f"p{i + 1}", checkpoint=t["checkpoint"].astype(str).where(
            t["checkpoint"] == BASE_CHECKPOINT, f"p{i + 1}/" + t["checkpoint"].astype(str)))
         for i, t in enumerate(tables)],
        ignore_index=True,
    )  # fmt: skip
    per_leaf = None
    if "n_images" in both.columns and _usable(both)["n_images"].nunique() >= 2:
        per_leaf = images_per_leaf_plan(both, widths, level=level)
        per_leaf = per_leaf.merge(criteria_of(both), on=list(MEASURE), how="left")
        per_leaf["criterion"] = per_leaf["criterion"].fillna("")
    elif len(tables) > 1:
        raise ResultsError(
            "plan: the pilots were made with the same images per leaf; a second pilot helps only "
            "at another count (--set generate.images_per_leaf=N)"
        )
    wplan = width_plan(df, widths, level)
    rplan = ranking_plan(df, probabilities, by=by, directions=directions)
    n_ckpt = checkpoints or int(_usable(df)["checkpoint"].nunique())
    wplan = gpu_hours(wplan, "images_needed", n_ckpt, sec)
    if not rplan.empty:
        rplan = gpu_hours(rplan, "images_order", n_ckpt, sec)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "plan_widths.csv"]
    csvsafe.to_csv(wplan, files[0], index=False)
    files.append(out / "plan_ranking.csv")
    csvsafe.to_csv(rplan, files[-1], index=False)
    if per_leaf is not None:
        per_leaf = gpu_hours(per_leaf, "images_needed", n_ckpt, sec)
        files.append(out / "plan_images_per_leaf.csv")
        csvsafe.to_csv(per_leaf, files[-1], index=False)
    if plot and len(wplan):
        files.append(plot_widths(wplan, out / "plan_widths.png", level))
    ipu = images_per_unit(_usable(df))
    unit = (
        f"unit = one leaf's mean over its {ipu:g} images (the table holds per-leaf values, not "
        "per-image ones); images = units × that: exact as more leaves of the same kind, and as "
        "more images per leaf only where leaves differ by image noise alone (one table cannot "
        "tell; a pilot at another images-per-leaf count can)"
        if math.isfinite(ipu) and ipu != 1
        else "unit = one row of the table (one image where n_images = 1)"
    )
    notes = [
        unit,
        f"width: {WIDTH_METHOD}, {level:.0%}; assumes new units vary as the pilot's",
        f"ranking ({by}s): {RANK_METHOD}; plug-in, the pilot's differences taken as the truth",
        f"GPU-hours: images × ({n_ckpt} checkpoints + base) × {sec:g} s an image — {source}",
    ]
    if per_leaf is not None:
        notes.append(
            "images per leaf: pilots at "
            + ", ".join(sorted(set(per_leaf["images_per_leaf_seen"])))
            + " images per leaf; leaf variance fitted as between + within/m (least squares), the "
            f"leaves fixed at {int(per_leaf['leaves'].iloc[0])}; 'width floor' is what the "
            "leaf-to-leaf spread alone gives (no number of images goes below it); the width and "
            "ranking tables read the first pilot"
        )
    return {"widths": wplan, "ranking": rplan, "per_leaf": per_leaf, "files": files,
            "notes": notes}  # fmt: skip


# --- Subsampling evidence (benchmarks/budget.py): do fewer units reach the same conclusions? ---

#: A subsample's unit: one training seed's images of one leaf (t2ibench's aggregate unit is seed ×
#: class), every epoch's checkpoint of that seed included.
SUBSAMPLE_UNIT = ("seed", "leaf")


def criterion_scores(scores: pd.DataFrame, heads: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``scores`` (rank-normalised) on the criteria's headline measurements, with their
    ``criterion``."""
    return scores.merge(heads, on=list(MEASURE), how="inner")


def conclusions(rows: pd.DataFrame, group: str = "algorithm") -> dict[str, object]:
    """The study's conclusions from headline rows with ``score``: per criterion the config ranking
    (a Series config → score, the mean over its headline measurements of the mean score), the best
    config, the order of ``group`` (Table 1: the mean over a group's configs, best first) and the
    epoch direction (sign of the last epoch's mean score minus the first's)."""
    out: dict[str, object] = {}
    per_measure = rows.groupby(["criterion", *MEASURE, "config"])["score"].mean()
    crit = per_measure.groupby(["criterion", "config"]).mean()
    for c, s in crit.groupby(level="criterion"):
        s = s.droplevel("criterion")
        out[f"rank:{c}"] = s
        out[f"best:{c}"] = str(s.idxmax())
    if group in rows.columns:
        cfg_group = rows.groupby("config")[group].first()
        for c, s in crit.groupby(level="criterion"):
            s = s.droplevel("criterion")
            g = s.groupby(cfg_group.reindex(s.index)).mean().sort_values(ascending=False)
            out[f"order:{c}"] = " > ".join(map(str, g.index))
    epochs = rows["epoch"].dropna()
    if epochs.nunique() >= 2:
        first, last = epochs.min(), epochs.max()
        pm = rows.groupby(["criterion", *MEASURE, "epoch"])["score"].mean()
        by_epoch = pm.groupby(["criterion", "epoch"]).mean()
        for c, s in by_epoch.groupby(level="criterion"):
            s = s.droplevel("criterion")
            out[f"epoch:{c}"] = "rises" if s.get(last) > s.get(first) else "falls"
    return out


def subsample_agreement(
    df: pd.DataFrame,
    fractions: Sequence[float] = (0.05, 0.10, 0.25, 0.50, 1.0),
    repeats: int = 200,
    seed: int = 0,
    group: str = "algorithm",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """For each fraction of the (seed, leaf) units, ``repeats`` seeded subsamples (the same units
    for every config, at least one), re-ranked (:func:`t2ibench.analysis.rank_normalise` on the
    subsample, as a study with only those images would) and compared with the full data.

    Returns ``(per_repeat, summary)``: per repeat the Kendall τ of each criterion's config ranking
    and whether each conclusion (best config, group order, epoch direction) agrees; the summary has
    per fraction and conclusion the units, the agreement rate with a Wilson 95 % interval (τ: its
    mean and the 2.5–97.5 percentiles over the repeats)."""
    from scipy import stats

    from t2ibench.analysis.scores import rank_normalise

    df = df[df["checkpoint"] != BASE_CHECKPOINT]
    df = df[np.isfinite(pd.to_numeric(df["value"], errors="coerce"))]
    heads = criteria_of(df)
    if heads.empty:
        raise ResultsError("budget: no criterion headline measurement in the table")
    df = df.merge(heads[list(MEASURE)], on=list(MEASURE), how="inner")
    full = conclusions(criterion_scores(rank_normalise(df), heads), group)
    units = df[list(SUBSAMPLE_UNIT)].drop_duplicates().reset_index(drop=True)
    unit_id = pd.MultiIndex.from_frame(df[list(SUBSAMPLE_UNIT)].astype(str))
    all_ids = pd.MultiIndex.from_frame(units.astype(str))
    rng = np.random.default_rng(seed)
    rows = []
    for f in fractions:
        k = max(1, math.ceil(f * len(units) - 1e-9))
        for rep in range(repeats if k < len(units) else 1):
            pick = all_ids[np.sort(rng.choice(len(units), size=k, replace=False))]
            sub = df[unit_id.isin(pick)]
            got = conclusions(criterion_scores(rank_normalise(sub), heads), group)
            row = {"fraction": f, "units": k, "of_units": len(units), "repeat": rep}
            for key, want in full.items():
                have = got.get(key)
                if key.startswith("rank:"):
                    tau = math.nan  # a criterion the subsample cannot score at all
                    if have is not None:
                        both = pd.concat([want, have], axis=1, join="inner").dropna()
                        tau = stats.kendalltau(both.iloc[:, 0], both.iloc[:, 1]).statistic
                    row["tau:" + key[5:]] = float(tau)
                else:
                    row[key] = float(have == want)
            rows.append(row)
    per = pd.DataFrame(rows)
    summary = []
    for (f, k), g in per.groupby(["fraction", "units"]):
        for col in [c for c in per.columns if ":" in c]:
            v = g[col].dropna().to_numpy()
            if col.startswith("tau:"):
                lo, hi = np.percentile(v, [2.5, 97.5]) if len(v) else (math.nan, math.nan)
                summary.append(dict(fraction=f, units=k, conclusion=col, full=None,
                                    value=float(v.mean()), low=float(lo), high=float(hi),
                                    repeats=len(v)))  # fmt: skip
            else:
                lo, hi = wilson(v.sum(), len(v))
                summary.append(dict(fraction=f, units=k, conclusion=col, full=str(full[col]),
                                    value=float(v.mean()), low=lo, high=hi, repeats=len(v)))  # fmt: skip
    return per, pd.DataFrame(summary)


def wilson(successes: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    from scipy import stats

    if n == 0:
        return math.nan, math.nan
    z = stats.norm.ppf(0.5 + level / 2)
    p = successes / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, mid - half), min(1.0, mid + half)


def smallest_agreeing_fraction(summary: pd.DataFrame, rate: float = 0.95) -> float:
    """The smallest fraction from which on every binary conclusion agrees with the full data in at
    least ``rate`` of the subsamples (NaN if none below the full data does)."""
    binary = summary[~summary["conclusion"].str.startswith("tau:")]
    ok = binary.groupby("fraction")["value"].min() >= rate
    fractions = sorted(ok.index)
    for i, f in enumerate(fractions):
        if all(ok[g] for g in fractions[i:]):
            return float(f)
    return math.nan


# --- Images per leaf: two pilots at different images-per-leaf counts separate the variances ---


def variance_components(df: pd.DataFrame) -> pd.DataFrame:
    """Per measurement, from leaf values at ≥ 2 images-per-leaf counts ``m`` (``n_images``; e.g.
    two pilots concatenated, a ``pilot`` column keeping their checkpoints apart): the least-squares
    fit of the pooled between-leaf variance ``V(m) = between + within / m``.

    ``between`` is the leaf-to-leaf variance no number of images removes, ``within`` the variance
    of one image's value around its leaf's mean (both clamped at 0). Measurements seen at a single
    ``m`` are left out."""
    if "n_images" not in df.columns:
        raise ResultsError("plan: the results lack n_images; images per leaf cannot be separated")
    df = _usable(df)
    keys = ["pilot", "checkpoint"] if "pilot" in df.columns else ["checkpoint"]
    per = (
        df.groupby([*keys, *MEASURE, "n_images"], dropna=False)["value"]
        .agg(["count", "var"])
        .reset_index()
    )
    per = per[per["count"] >= 2]
    pooled = per.groupby([*MEASURE, "n_images"], dropna=False)["var"].mean().reset_index()
    rows = []
    for key, g in pooled.groupby(list(MEASURE), dropna=False):
        m = g["n_images"].to_numpy(dtype=float)
        if len(np.unique(m)) < 2:
            continue
        x = np.column_stack([np.ones_like(m), 1.0 / m])
        (between, within), *_ = np.linalg.lstsq(x, g["var"].to_numpy(dtype=float), rcond=None)
        rows.append(dict(zip(MEASURE, key, strict=True), between=max(0.0, float(between)),
                         within=max(0.0, float(within)),
                         images_per_leaf_seen=" ".join(f"{v:g}" for v in sorted(set(m)))))  # fmt: skip
    if not rows:
        raise ResultsError(
            "plan: every measurement was seen at one images-per-leaf count; give two pilots "
            "made with different images per leaf"
        )
    return pd.DataFrame(rows)


def images_per_leaf_for_width(
    between: float, within: float, leaves: int, width: float, level: float = 0.95
) -> float:
    """Smallest images per leaf ``m`` with ``t_{L−1} · √((between + within/m) / L) ≤ width`` at a
    fixed ``leaves`` = L; NaN when the leaf-to-leaf spread alone is wider (no ``m`` reaches it)."""
    from scipy import stats

    if leaves < 2:
        return math.nan
    q = stats.t.ppf(0.5 + level / 2, leaves - 1)
    room = leaves * (width / q) ** 2 - between
    if room <= 0:
        return math.nan
    if within == 0:
        return 1.0
    m = math.ceil(within / room - 1e-12)
    return float(max(1, m)) if m <= MAX_UNITS else math.nan


def images_per_leaf_plan(
    df: pd.DataFrame, widths: Sequence[float], leaves: int | None = None, level: float = 0.95
) -> pd.DataFrame:
    """Per measurement and target: the images per leaf (and per prompt type and checkpoint) at a
    fixed number of leaves (default: the pilots' largest per checkpoint) for the target half-width,
    from :func:`variance_components`."""
    widths = _check_widths(widths)
    level = _check_level(level)
    comp = variance_components(df)
    if leaves is None:
        usable = _usable(df)
        keys = ["pilot", "checkpoint"] if "pilot" in usable.columns else ["checkpoint"]
        leaves = int(usable.groupby([*keys, *MEASURE])["leaf"].nunique().max())
    rows = []
    for _, r in comp.iterrows():
        for w in widths:
            m = images_per_leaf_for_width(r["between"], r["within"], leaves, w, level)
            floor = float(t_half(math.sqrt(r["between"]), leaves, level))
            rows.append({**r.to_dict(), "leaves": leaves, "target_half_width": w,
                         "width_floor": floor, "images_per_leaf_needed": m,
                         "images_needed": m * leaves})  # fmt: skip
    return pd.DataFrame(rows)
