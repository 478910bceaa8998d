"""The evaluation engine (:mod:`t2ibench.evaluation.engine`): the one place images become metric
values. Every entry point calls it — ``t2ibench run``'s evaluate stage and ``t2ibench evaluate``
(:mod:`t2ibench.pipeline.evaluate` reads the folder, then calls :func:`evaluate_records`),
``evaluate-checkpoints`` (run's stages), metric profiles (:mod:`t2ibench.metric_profiles.compile`
turns a profile into :class:`MetricPlan` objects) and ``t2ibench.evaluate()``
(:func:`evaluate_in_memory`).
"""

from t2ibench.evaluation.engine import (
    PAIRINGS,
    MetricError,
    MetricPlan,
    evaluate_records,
    pairing_sources,
    plan_metrics,
)
from t2ibench.evaluation.in_memory import evaluate_in_memory

__all__ = [
    "PAIRINGS",
    "MetricError",
    "MetricPlan",
    "evaluate_in_memory",
    "evaluate_records",
    "pairing_sources",
    "plan_metrics",
]
