"""The metric registry: one entry per metric, with the metadata the pipeline and analysis need."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from t2ibench.registry import Registry

CRITERIA = ("fidelity", "controllability", "diversity", "preservation", "quality")
REFERENCES = ("dataset_images", "prompts", "base_images")
PROMPT_TYPES = ("train", "trigger", "alter", "style", "concept-agnostic")


@dataclass(frozen=True)
class MetricSpec:
    """What a metric measures and what it needs.

    ``inputs`` names the keyword arguments of ``stream().update(...)`` and of ``function``:
    ``gen``/``ref`` (image features of generated and reference images), ``feats``, ``image_feats``/
    ``text_feats`` (paired rows), ``grams_a``/``grams_b`` (seed-paired Gram matrices), ``scores``.
    ``group_by`` = "prompt" means the value is computed per prompt and then averaged (Vendi on
    ``alter``: 10 images per prompt). ``prompt_types`` = None means every prompt type.
    """

    name: str
    criterion: str
    encoder: str | None
    references: tuple[str, ...]
    higher_is_better: bool
    range: tuple[float, float]
    function: Callable[..., float]
    stream: Callable[[], object]
    inputs: tuple[str, ...]
    description: str = ""
    prompt_types: tuple[str, ...] | None = None
    group_by: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise ValueError(f"metric {self.name!r}: criterion must be one of {CRITERIA}")
        bad = set(self.references) - set(REFERENCES)
        if bad:
            raise ValueError(f"metric {self.name!r}: unknown references {sorted(bad)}")
        if self.prompt_types is not None and set(self.prompt_types) - set(PROMPT_TYPES):
            raise ValueError(f"metric {self.name!r}: unknown prompt types in {self.prompt_types}")

    def applies_to(self, prompt_type: str) -> bool:
        return self.prompt_types is None or prompt_type in self.prompt_types


METRICS: Registry[MetricSpec] = Registry("metric", entry_point_group="t2ibench.metrics")


def register_metric(spec: MetricSpec, *, overwrite: bool = False) -> MetricSpec:
    """Register a metric. Third parties call this from a module named in the entry-point group
    ``t2ibench.metrics`` (or point the entry point at a :class:`MetricSpec` directly)."""
    return METRICS.register(spec.name, spec, overwrite=overwrite)


def get_metric(name: str) -> MetricSpec:
    return METRICS.get(name)


def list_metrics(pattern: str | None = None) -> list[str]:
    return METRICS.names(pattern)


INF = math.inf
