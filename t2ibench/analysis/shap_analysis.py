"""CatBoost + SHAP: which hyperparameters move each score (paper §5.3, appendix F.1).

One CatBoostRegressor per category and target, trained on one row per checkpoint: the checkpoint's
mean score over the category's classes. Features (PROTOCOL defaults): ``algorithm`` and ``preset``
(categorical), ``epoch``, ``capacity`` and ``lr_level``. Capacity is 1 for an algorithm's default
size, 2 for a raised dimension (same dim/alpha ratio) or a lowered LoKr factor, 3 for native
fine-tuning; configs that change the dim/alpha ratio (alpha 1) or raise the LoKr factor are left out.
Native's capacity is not a real knob, so its SHAP value is folded into ``algorithm``. The learning-
rate level is the position (1-3) of the config's lr among its algorithm's fixed levels
(:data:`LR_LEVELS`: the paper's {1e-4, 5e-4, 1e-3}, native {5e-7, 1e-6, 5e-6}), the same whichever
rates a table or a category holds; a rate outside them (5e-5, 5e-3, native 1e-5) has no level and
its config is left out, as the authors' notebooks leave it out. An algorithm without fixed levels (a
plug-in trainer) ranks the rates the whole results table holds for it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from t2ibench.analysis.aggregate import class_scores
from t2ibench.analysis.targets import Target, encoder_preference, report_targets

DEFAULT_FEATURES: tuple[str, ...] = ("algorithm", "preset", "epoch", "capacity", "lr_level")
CATEGORICAL_FEATURES: frozenset[str] = frozenset({"algorithm", "preset", "caption", "base"})
#: Default sizes (PROTOCOL "Defaults"): LoRA dim 8 / alpha 4, LoHa 4 / 2, LoKr factor 8.
DEFAULT_CAPACITY: dict[str, dict[str, float]] = {
    "lora": {"dim": 8, "alpha": 4},
    "loha": {"dim": 4, "alpha": 2},
    "lokr": {"factor": 8},
}
NATIVE = "native"
#: PROTOCOL: scenes and stuffed toys use epoch-10 checkpoints only (later ones are overtrained).
DEFAULT_CATEGORY_EPOCHS: dict[str, tuple[int, ...]] = {"scene": (10,), "stuffed_toy": (10,)}
RESIZE_PREFERENCE = ("letterbox", "stretch", "center-crop", "scale", "")
#: PROTOCOL "Varied one at a time": the three learning rates of each algorithm, level 1-3.
LR_LEVELS: dict[str, tuple[float, ...]] = {
    "lora": (1e-4, 5e-4, 1e-3),
    "loha": (1e-4, 5e-4, 1e-3),
    "lokr": (1e-4, 5e-4, 1e-3),
    NATIVE: (5e-7, 1e-6, 5e-6),
}


def resolve_measure(scores: pd.DataFrame, target: Target) -> tuple[str, str, str, str] | None:
    """(metric, encoder, resize, prompt_type) of ``target`` present in ``scores``, or None."""
    rows = scores[
        (scores["metric"] == target.metric) & (scores["prompt_type"] == target.prompt_type)
    ]
    if target.encoder is not None:
        rows = rows[rows["encoder"] == target.encoder]
    if target.resize is not None:
        rows = rows[rows["resize"] == target.resize]
    if rows.empty:
        return None
    pairs = set(zip(rows["encoder"], rows["resize"], strict=True))
    # The encoder the metric names (DINOv2 for fidelity and diversity, CLIP for text alignment),
    # else one of its family (toy-dino in the toy world: not toy-clip by name), then by name.
    rank = {enc: encoder_preference(target.metric, enc) for enc, _ in pairs}

    def pref(pair: tuple[str, str]) -> tuple:
        enc, res = pair
        r = RESIZE_PREFERENCE.index(res) if res in RESIZE_PREFERENCE else len(RESIZE_PREFERENCE)
        return (rank[enc], r, enc, res)

    enc, res = min(pairs, key=pref)
    return target.metric, enc, res, target.prompt_type


def _num(v: object) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def capacity_of(row: Mapping[str, object], defaults: Mapping[str, Mapping[str, float]]) -> float:
    """Capacity level of one config (NaN = excluded from the SHAP analysis)."""
    algo = str(row.get("algorithm", "")).lower()
    if algo == NATIVE:
        return 3.0
    spec = defaults.get(algo)
    if spec is None:
        return 1.0  # an algorithm without a size knob we know of: one level
    if "factor" in spec:
        f = _num(row.get("factor"))
        if math.isnan(f) or f == spec["factor"]:
            return 1.0
        return 2.0 if f < spec["factor"] else math.nan
    dim, alpha = _num(row.get("dim")), _num(row.get("alpha"))
    if math.isnan(dim) or (dim == spec["dim"] and (math.isnan(alpha) or alpha == spec["alpha"])):
        return 1.0
    if not math.isnan(alpha) and dim > spec["dim"] and dim / alpha == spec["dim"] / spec["alpha"]:
        return 2.0
    return math.nan


def checkpoint_features(
    scores: pd.DataFrame,
    defaults: Mapping[str, Mapping[str, float]] = DEFAULT_CAPACITY,
    levels: Mapping[str, Sequence[float]] = LR_LEVELS,
) -> pd.DataFrame:
    """One row per checkpoint: its config columns plus derived ``capacity`` and ``lr_level``."""
    cols = [c for c in scores.columns if c not in {"value", "score", "higher_is_better"}]
    per_ckpt = scores[cols].drop_duplicates("checkpoint").set_index("checkpoint")
    out = per_ckpt.drop(
        columns=[
            c
            for c in ("category", "class", "leaf", "prompt_type", "metric", "encoder", "resize")
            if c in per_ckpt.columns
        ]  # fmt: skip
    ).copy()
    if "algorithm" not in out.columns:
        out["algorithm"] = "unknown"
    if "capacity" not in out.columns:
        out["capacity"] = [capacity_of(r, defaults) for r in out.to_dict("records")]
    if "lr" in out.columns and "lr_level" not in out.columns:
        out["lr_level"] = lr_levels(out["algorithm"], out["lr"], levels)
    return out


def lr_levels(
    algorithm: pd.Series,
    lr: pd.Series,
    levels: Mapping[str, Sequence[float]] = LR_LEVELS,
) -> pd.Series:
    """Learning-rate level (1 = lowest) of each row: the lr's position in its algorithm's fixed
    ``levels`` (NaN when it is not one of them); an algorithm ``levels`` lacks ranks the rates
    present in ``lr`` for it."""
    rate = pd.to_numeric(lr, errors="coerce")
    algo = algorithm.astype(str).str.lower()
    out = pd.Series(np.nan, index=lr.index, dtype="float64")
    for a, idx in algo.groupby(algo).groups.items():
        r = rate.loc[idx]
        if a in levels:
            fixed = np.asarray(levels[a], dtype="float64")
            out.loc[idx] = [
                float(np.flatnonzero(np.isclose(fixed, v, rtol=1e-6, atol=0))[0] + 1)
                if np.isfinite(v) and np.isclose(fixed, v, rtol=1e-6, atol=0).any()
                else np.nan
                for v in r.to_numpy(dtype="float64")
            ]
        else:
            out.loc[idx] = r.rank(method="dense")
    return out


#: A SHAP plot is a finding only when its model predicts held-out data better than a constant by
#: more than this out-of-sample R² under both schemes: leave one seed out (another training run of
#: the same configs) and leave one config out (a config it has not seen; a model that explains
#: only the configs it saw says nothing about a hyperparameter's effect).
MIN_OUT_OF_SAMPLE_R2 = 0.05
#: Out-of-sample schemes: name → the feature column whose values are held out one at a time.
CV_GROUPS: dict[str, str] = {"seed": "seed", "config": "config"}


@dataclass
class ShapResult:
    """SHAP values of one (category, target) model."""

    category: str
    target: Target
    measure: tuple[str, str, str, str]
    features: list[str]
    data: pd.DataFrame  # feature values, index = checkpoint
    y: np.ndarray
    shap_values: np.ndarray  # (n, n_features), native capacity folded into algorithm
    expected_value: float
    prediction: np.ndarray
    r2: float
    epochs: tuple[int, ...] | None = None
    notes: list[str] = field(default_factory=list)
    #: Out-of-sample R² per scheme (``seed``: leave one seed out; ``config``: leave one config
    #: out), from the pooled held-out predictions; NaN when the scheme has < 2 groups.
    r2_out: dict[str, float] = field(default_factory=dict)

    @property
    def r2_seed(self) -> float:
        return self.r2_out.get("seed", math.nan)

    @property
    def r2_config(self) -> float:
        return self.r2_out.get("config", math.nan)

    @property
    def is_finding(self) -> bool:
        """Whether the model beats a constant out of sample: leave-one-seed-out and
        leave-one-config-out R² both above :data:`MIN_OUT_OF_SAMPLE_R2`; without both held-out
        scores it is not a finding either."""
        rs = (self.r2_seed, self.r2_config)
        return bool(all(np.isfinite(r) and r > MIN_OUT_OF_SAMPLE_R2 for r in rs))

    @property
    def warning(self) -> str:
        """Empty for a finding; else why its SHAP plot is not one."""
        if self.is_finding:
            return ""
        if not np.isfinite(self.r2_seed) and not np.isfinite(self.r2_config):
            return "no out-of-sample R² (one seed, or not computed): not a finding"
        failed = [
            f"leave-one-{name}-out R² {r:.2f}" if np.isfinite(r) else f"no leave-one-{name}-out R²"
            for name, r in (("seed", self.r2_seed), ("config", self.r2_config))
            if not (np.isfinite(r) and r > MIN_OUT_OF_SAMPLE_R2)
        ]
        return (
            f"does not beat a constant out of sample ({', '.join(failed)}; both must exceed "
            f"{MIN_OUT_OF_SAMPLE_R2:g}): not a finding"
        )

    def table(self) -> pd.DataFrame:
        """Wide table: one row per checkpoint with feature values, SHAP values, prediction."""
        t = self.data.copy()
        for i, f in enumerate(self.features):
            t[f"shap_{f}"] = self.shap_values[:, i]
        t["expected_value"] = self.expected_value
        t["prediction"] = self.prediction
        t["target_value"] = self.y
        t.insert(0, "target", self.target.label)
        t.insert(0, "category", self.category)
        return t.reset_index()


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """1 − SSE/SST (SST about the mean of ``y``); NaN for a constant ``y``."""
    y, pred = np.asarray(y, dtype="float64"), np.asarray(pred, dtype="float64")
    ss_tot = float(((y - y.mean()) ** 2).sum())
    if ss_tot == 0.0:
        return math.nan
    return 1.0 - float(((y - pred) ** 2).sum()) / ss_tot


def out_of_sample_r2(fit_predict, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> float:
    """Leave-one-group-out R²: each group is predicted by a model fitted on the others
    (``fit_predict(X_train, y_train, X_test)``), and R² is taken over the pooled held-out
    predictions. NaN with fewer than two groups."""
    groups = np.asarray(groups)
    levels = pd.unique(groups)
    if len(levels) < 2:
        return math.nan
    pred = np.full(len(y), np.nan)
    for g in levels:
        test = groups == g
        train_y = y[~test]
        if np.ptp(train_y) == 0.0:
            pred[test] = train_y[0]
            continue
        pred[test] = fit_predict(X[~test], train_y, X[test])
    return r2_score(y, pred)


def catboost_threads(thread_count: int | None = None) -> int:
    """CatBoost's ``thread_count``: ``thread_count`` when given, else ``OMP_NUM_THREADS`` when it
    is set to a positive integer (a shared machine's or a scheduler's limit, which CatBoost itself
    ignores), else -1 (every core). Same fits either way; on 2 cores a second thread shortened the
    reference fits 13 % for 60 % more CPU time (``benchmarks/results/shap_threads_*.md``)."""
    if thread_count is not None:
        return thread_count
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(limit) if limit.isdigit() and int(limit) > 0 else -1


def _model(
    cat: list[str], iterations: int, learning_rate: float, seed: int, thread_count: int | None
):
    from catboost import CatBoostRegressor

    return CatBoostRegressor(
        iterations=iterations,
        learning_rate=learning_rate,
        random_seed=seed,
        verbose=False,
        allow_writing_files=False,
        thread_count=catboost_threads(thread_count),
        cat_features=cat,
    )


def fit_shap(
    scores: pd.DataFrame,
    category: str,
    target: Target,
    *,
    features: Sequence[str] = DEFAULT_FEATURES,
    epochs: Sequence[int] | None = None,
    iterations: int = 300,
    learning_rate: float = 0.1,
    seed: int = 0,
    thread_count: int | None = None,
    capacity_defaults: Mapping[str, Mapping[str, float]] = DEFAULT_CAPACITY,
    lr_level_table: Mapping[str, Sequence[float]] = LR_LEVELS,
    cv: Sequence[str] = tuple(CV_GROUPS),
    checkpoint_table: pd.DataFrame | None = None,
) -> ShapResult | None:
    """Fit CatBoost on one category and target, explain it with SHAP's TreeExplainer and score it
    out of sample (``cv``: leave one seed out, leave one config out; see :data:`CV_GROUPS`).

    Returns None when the data cannot support a model (target absent, < 4 checkpoints, or a
    constant target). ``checkpoint_table`` is :func:`checkpoint_features` of ``scores`` (computed
    when None). ``thread_count``: CatBoost's, None for :func:`catboost_threads`' choice.
    """
    import shap

    measure = resolve_measure(scores, target)
    if measure is None:
        return None
    metric, encoder, resize, prompt_type = measure
    sel = scores[
        (scores["category"] == category)
        & (scores["metric"] == metric)
        & (scores["encoder"] == encoder)
        & (scores["resize"] == resize)
        & (scores["prompt_type"] == prompt_type)
    ]
    if epochs is not None:
        sel = sel[sel["epoch"].isin(list(epochs))]
    if sel.empty:
        return None
    per_class = class_scores(sel)
    y = per_class.groupby("checkpoint")["score"].mean().dropna()
    feats = (
        checkpoint_features(scores, capacity_defaults, lr_level_table)
        if checkpoint_table is None
        else checkpoint_table
    )
    missing = [f for f in features if f not in feats.columns]
    if missing:
        raise ValueError(f"SHAP feature(s) {missing} are not columns of the results")
    info = feats.loc[y.index]
    X = info[list(features)].copy()
    notes = []
    for f, why in (("capacity", "capacity outside the levels"), ("lr_level", "lr not a level")):
        if f in X.columns:
            keep = X[f].notna()
            if not keep.all() and "config" in info.columns:
                dropped = sorted(info.loc[~keep, "config"].astype(str).unique())
                notes.append(f"left out ({why}): {', '.join(dropped)}")
            X, y, info = X[keep], y[keep], info[keep]
    if len(y) < 4 or float(y.std()) == 0.0:
        return None
    cat = [
        f for f in features if f in CATEGORICAL_FEATURES or not pd.api.types.is_numeric_dtype(X[f])
    ]
    for f in cat:
        X[f] = X[f].astype(str)
    for f in features:
        if f not in cat:
            X[f] = pd.to_numeric(X[f], errors="coerce").astype("float64")
    yv = y.to_numpy(dtype="float64")

    def fit_predict(X_train, y_train, X_test):
        m = _model(cat, iterations, learning_rate, seed, thread_count)
        m.fit(X_train, y_train)
        return m.predict(X_test)

    r2_out = {
        name: out_of_sample_r2(fit_predict, X, yv, info[CV_GROUPS[name]].astype(str).to_numpy())
        for name in cv
        if CV_GROUPS[name] in info.columns
    }
    model = _model(cat, iterations, learning_rate, seed, thread_count)
    model.fit(X, yv)
    pred = model.predict(X)
    expl = shap.TreeExplainer(model)
    values = np.asarray(expl.shap_values(X), dtype="float64")
    expected = float(np.ravel(expl.expected_value)[0])
    if "algorithm" in features and "capacity" in features:
        # Native's capacity is a constant stand-in, not a knob: credit it to the algorithm.
        a, c = list(features).index("algorithm"), list(features).index("capacity")
        native = (X["algorithm"] == NATIVE).to_numpy()
        values[native, a] += values[native, c]
        values[native, c] = 0.0
    return ShapResult(
        category=category,
        target=target,
        measure=measure,
        features=list(features),
        data=X,
        y=yv,
        shap_values=values,
        expected_value=expected,
        prediction=np.asarray(pred, dtype="float64"),
        r2=r2_score(yv, pred),
        epochs=tuple(epochs) if epochs is not None else None,
        notes=notes,
        r2_out=r2_out,
    )


def run_shap(
    scores: pd.DataFrame,
    *,
    targets: Sequence[Target] | None = None,
    features: Sequence[str] = DEFAULT_FEATURES,
    category_epochs: Mapping[str, Sequence[int]] | None = None,
    iterations: int = 300,
    learning_rate: float = 0.1,
    seed: int = 0,
    thread_count: int | None = None,
    cv: Sequence[str] = tuple(CV_GROUPS),
) -> list[ShapResult]:
    """:func:`fit_shap` for every category × target that has data; ``targets`` None = the SHAP
    targets the metrics in ``scores`` declare (``MetricSpec.report.shap``)."""
    if targets is None:
        targets = report_targets("shap", scores["metric"].unique())
    category_epochs = DEFAULT_CATEGORY_EPOCHS if category_epochs is None else category_epochs
    table = checkpoint_features(scores)
    results = []
    for category in sorted(scores["category"].unique()):
        epochs = category_epochs.get(category)
        if (
            epochs is not None
            and not scores.loc[scores["category"] == category, "epoch"].isin(list(epochs)).any()
        ):
            epochs = None  # e.g. a toy run without epoch 10: use what there is
        for target in targets:
            res = fit_shap(
                scores,
                category,
                target,
                features=features,
                epochs=epochs,
                iterations=iterations,
                learning_rate=learning_rate,
                seed=seed,
                thread_count=thread_count,
                cv=cv,
                checkpoint_table=table,
            )
            if res is not None:
                results.append(res)
    return results


def shap_tables(results: Sequence[ShapResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(SHAP values, one row per model with its fit) as data frames. The fit table holds the
    in-sample R² (``r2_train``) beside the out-of-sample ones (``r2_leave_one_seed_out``,
    ``r2_leave_one_config_out``) and whether the model is a finding."""
    values = (
        pd.concat([r.table() for r in results], ignore_index=True) if results else pd.DataFrame()
    )
    fit = pd.DataFrame(
        [
            {
                "category": r.category,
                "target": r.target.label,
                "metric": r.measure[0],
                "encoder": r.measure[1],
                "resize": r.measure[2],
                "prompt_type": r.measure[3],
                "epochs": "all" if r.epochs is None else " ".join(map(str, r.epochs)),
                "n_checkpoints": len(r.y),
                "r2_train": r.r2,
                "r2_leave_one_seed_out": r.r2_seed,
                "r2_leave_one_config_out": r.r2_config,
                "finding": r.is_finding,
                "expected_value": r.expected_value,
                **{f"mean_abs_shap_{f}": float(np.abs(r.shap_values[:, i]).mean())
                   for i, f in enumerate(r.features)},
                "notes": "; ".join(r.notes),
            }
            for r in results
        ]
    )  # fmt: skip
    return values, fit


#: Categorical levels in their natural order (paper figures: LoRA, LoHa, LoKr, native; presets by
#: how much they train); levels not listed follow, sorted.
LEVEL_ORDER: dict[str, tuple[str, ...]] = {
    "algorithm": ("lora", "loha", "lokr", NATIVE),
    "preset": ("attn-only", "attn-mlp", "full"),
}


def level_codes(feature: str, values: pd.Series) -> tuple[pd.Series, list[str]]:
    """Codes 0..k-1 of a categorical feature's values in :data:`LEVEL_ORDER` (then sorted), over
    the levels present only: the colour scale spans the data and names no absent level."""
    present = [str(v) for v in pd.unique(values.astype(str))]
    order = [lv for lv in LEVEL_ORDER.get(feature, ()) if lv in present]
    order += sorted(lv for lv in present if lv not in order)
    return values.astype(str).map({lv: i for i, lv in enumerate(order)}).astype(float), order
