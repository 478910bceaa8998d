"""CatBoost + SHAP: which hyperparameters move each score (paper §5.3, appendix F.1).

One CatBoostRegressor per category and target, trained on one row per checkpoint: the checkpoint's
mean score over the category's classes. Features (PROTOCOL defaults): ``algorithm`` and ``preset``
(categorical), ``epoch``, ``capacity`` and ``lr_level``. Capacity is 1 for an algorithm's default
size, 2 for a raised dimension (same dim/alpha ratio) or a lowered LoKr factor, 3 for native
fine-tuning; configs that change the dim/alpha ratio (alpha 1) or raise the LoKr factor are left out.
Native's capacity is not a real knob, so its SHAP value is folded into ``algorithm``. The learning-
rate level is the rank (1 = smallest) of the config's lr among its algorithm's learning rates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from t2ibench.analysis.aggregate import class_scores
from t2ibench.analysis.targets import Target, preferred_encoder, report_targets

DEFAULT_FEATURES: tuple[str, ...] = ("algorithm", "preset", "epoch", "capacity", "lr_level")
CATEGORICAL_FEATURES: frozenset[str] = frozenset({"algorithm", "preset", "caption"})
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
    # The encoder the metric names first (DINOv2 for fidelity, CLIP for text alignment), then by name.
    own = preferred_encoder(target.metric)

    def pref(pair: tuple[str, str]) -> tuple:
        enc, res = pair
        r = RESIZE_PREFERENCE.index(res) if res in RESIZE_PREFERENCE else len(RESIZE_PREFERENCE)
        return (enc != own, r, enc, res)

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
    scores: pd.DataFrame, defaults: Mapping[str, Mapping[str, float]] = DEFAULT_CAPACITY
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
        lr = pd.to_numeric(out["lr"], errors="coerce")
        out["lr_level"] = lr.groupby(out["algorithm"]).rank(method="dense")
    return out


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
    thread_count: int = -1,
    capacity_defaults: Mapping[str, Mapping[str, float]] = DEFAULT_CAPACITY,
) -> ShapResult | None:
    """Fit CatBoost on one category and target and explain it with SHAP's TreeExplainer.

    Returns None when the data cannot support a model (target absent, < 4 checkpoints, or a
    constant target).
    """
    import shap
    from catboost import CatBoostRegressor

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
    # Learning-rate levels rank the rates present in this model's own checkpoints.
    feats = checkpoint_features(scores[scores["checkpoint"].isin(y.index)], capacity_defaults)
    missing = [f for f in features if f not in feats.columns]
    if missing:
        raise ValueError(f"SHAP feature(s) {missing} are not columns of the results")
    X = feats.loc[y.index, list(features)].copy()
    if "capacity" in X.columns:
        keep = X["capacity"].notna()
        X, y = X[keep], y[keep]
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
    model = CatBoostRegressor(
        iterations=iterations,
        learning_rate=learning_rate,
        random_seed=seed,
        verbose=False,
        allow_writing_files=False,
        thread_count=thread_count,
        cat_features=cat,
    )
    model.fit(X, y.to_numpy())
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
    yv = y.to_numpy()
    ss_tot = float(((yv - yv.mean()) ** 2).sum())
    r2 = 1.0 - float(((yv - pred) ** 2).sum()) / ss_tot
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
        r2=r2,
        epochs=tuple(epochs) if epochs is not None else None,
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
    thread_count: int = -1,
) -> list[ShapResult]:
    """:func:`fit_shap` for every category × target that has data; ``targets`` None = the SHAP
    targets the metrics in ``scores`` declare (``MetricSpec.report.shap``)."""
    if targets is None:
        targets = report_targets("shap", scores["metric"].unique())
    category_epochs = DEFAULT_CATEGORY_EPOCHS if category_epochs is None else category_epochs
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
            )
            if res is not None:
                results.append(res)
    return results


def shap_tables(results: Sequence[ShapResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(SHAP values, one row per model with its fit) as data frames."""
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
                "expected_value": r.expected_value,
                **{f"mean_abs_shap_{f}": float(np.abs(r.shap_values[:, i]).mean())
                   for i, f in enumerate(r.features)},
            }
            for r in results
        ]
    )  # fmt: skip
    return values, fit
