"""The paper's analysis: rank-normalised scores, aggregates with error bars, CatBoost + SHAP,
metric-pair plots, a Table-1-style rank table and an HTML/Markdown report.

Entry point: :func:`analyze` (``t2ibench analyze RESULTS_DIR --out REPORT_DIR``). Heavy libraries
(catboost, shap, matplotlib) are imported only when a model is fitted or a figure drawn.
"""

from t2ibench.analysis.aggregate import aggregate, class_scores
from t2ibench.analysis.analyze_results import AnalysisResult, analyze
from t2ibench.analysis.scores import RANK_GROUP, metric_directions, rank_normalise
from t2ibench.analysis.shap_analysis import (
    DEFAULT_FEATURES,
    ShapResult,
    capacity_of,
    checkpoint_features,
    fit_shap,
    run_shap,
)
from t2ibench.analysis.tables import rank_table, varied_hyperparameter
from t2ibench.analysis.targets import (
    Target,
    criteria_targets,
    pair_targets,
    report_targets,
)

__all__ = [
    "DEFAULT_FEATURES",
    "RANK_GROUP",
    "AnalysisResult",
    "ShapResult",
    "Target",
    "aggregate",
    "analyze",
    "capacity_of",
    "checkpoint_features",
    "class_scores",
    "criteria_targets",
    "fit_shap",
    "metric_directions",
    "pair_targets",
    "rank_normalise",
    "rank_table",
    "report_targets",
    "run_shap",
    "varied_hyperparameter",
]
