"""The metric registry: one entry per metric, with the metadata the pipeline and analysis need.

Names are open: a metric's criterion, its reference kinds and the prompt types it names are plain
slugs, not members of a closed list. The criteria the report ranks are whatever the registered
metrics declare; prompt types are checked against the prompt-type registry when the metric is used
(:meth:`MetricSpec.check_prompt_types`), so a metric can name a type a plug-in registers later.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from t2ibench.registry import Registry

INF = math.inf
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


@dataclass(frozen=True)
class ReportUse:
    """Where the analysis report shows a metric: the prompt types whose scores feed each section.

    ``criterion``: averaged into the metric's criterion in the rank table (Table 1 style).
    ``shap``: explained by CatBoost + SHAP. ``epochs``: tabulated over epochs.
    ``pairs``: ``(prompt type, "other_metric:other_prompt_type")`` scatter plots, this metric on the
    y axis. A metric with no use still gets scores, aggregates and the overview.
    """

    criterion: tuple[str, ...] = ()
    shap: tuple[str, ...] = ()
    epochs: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str], ...] = ()

    def prompt_types(self) -> set[str]:
        return {*self.criterion, *self.shap, *self.epochs, *(pt for pt, _ in self.pairs)}


@dataclass(frozen=True)
class MetricSpec:
    """What a metric measures and what it needs.

    ``inputs`` names the keyword arguments of ``function`` and of ``stream().update(...)``; each
    name is supplied by the input provider registered under it (:mod:`t2ibench.metrics.inputs`):
    ``gen``/``ref`` (features of generated and dataset images), ``feats``, ``image_feats``/
    ``text_feats`` (paired rows), ``grams_a``/``grams_b`` (seed-paired Gram matrices), ``scores``,
    or any name a plug-in registers a provider for. ``options`` are keyword arguments passed to both
    ``function`` and ``stream`` (e.g. text alignment's ``convention``); ``evaluate_images`` can
    override them per metric. ``group_by`` = "prompt" means the value is computed per prompt and then
    averaged (Vendi on ``alter``: 10 images per prompt). ``prompt_types`` = None means every type.
    ``report`` says which report sections the metric feeds. ``clamps``: how the metric computes a
    metric profile's clamp (``"pair"`` = max(value, 0) per pair, ``"mean"`` = of the mean) — the
    options that do it and the scale those options already apply (text alignment's CLIPScore
    conventions); a profile that clamps a metric without one is refused. ``per_image`` = False:
    the value describes a set (diversity, distribution distances) and one image has none.
    """

    name: str
    criterion: str
    encoder: str | None
    references: tuple[str, ...]
    higher_is_better: bool
    range: tuple[float, float]
    function: Callable[..., float]
    stream: Callable[..., object]
    inputs: tuple[str, ...]
    description: str = ""
    prompt_types: tuple[str, ...] | None = None
    group_by: dict[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    report: ReportUse = field(default_factory=ReportUse)
    clamps: Mapping[str, tuple[Mapping[str, Any], float]] = field(default_factory=dict)
    # False: the value describes a set of images (Vendi, FID, KID), never one image, so per-image
    # scoring (agreement with human ratings) has no value of it.
    per_image: bool = True

    def __post_init__(self) -> None:
        if not _SLUG.match(self.name):
            raise ValueError(f"metric {self.name!r}: the name must be a lower-case slug")
        if not isinstance(self.criterion, str) or not _SLUG.match(self.criterion):
            raise ValueError(
                f"metric {self.name!r}: criterion must be a lower-case slug such as 'fidelity', "
                f"got {self.criterion!r}"
            )
        bad = [r for r in self.references if not _SLUG.match(str(r))]
        if bad:
            raise ValueError(f"metric {self.name!r}: malformed reference kind(s) {bad}")
        if not self.inputs:
            raise ValueError(f"metric {self.name!r}: declares no inputs")

    def applies_to(self, prompt_type: str) -> bool:
        return self.prompt_types is None or prompt_type in self.prompt_types

    def check_prompt_types(self) -> None:
        """Raise naming the metric when a prompt type it names is not registered."""
        from t2ibench.prompts import PROMPT_TYPES

        named = {*(self.prompt_types or ()), *self.group_by, *self.report.prompt_types()}
        unknown = sorted(p for p in named if p not in PROMPT_TYPES)
        if unknown:
            from t2ibench.errors import ConfigError

            raise ConfigError(
                f"metric {self.name!r} names unknown prompt type(s) {unknown}; registered: "
                f"{', '.join(PROMPT_TYPES.names())}"
            )

    def create_stream(self, **options: Any) -> object:
        """A fresh streaming instance with the spec's options (``options`` override them)."""
        return self.stream(**{**self.options, **options})


METRICS: Registry[MetricSpec] = Registry("metric", entry_point_group="t2ibench.metrics")


def register_metric(spec: MetricSpec, *, overwrite: bool = False) -> MetricSpec:
    """Register a metric: call it at the bottom of the metric's file. Third parties call it from a
    module named in the entry-point group ``t2ibench.metrics`` (or point the entry point at a
    :class:`MetricSpec` directly)."""
    METRICS.register(spec.name, spec, overwrite=overwrite)
    return spec


def get_metric(name: str) -> MetricSpec:
    return METRICS.get(name)


def list_metrics(pattern: str | None = None) -> list[str]:
    return METRICS.names(pattern)


def list_criteria() -> list[str]:
    """The criteria the registered metrics declare (open: a plug-in may add one)."""
    return sorted({get_metric(n).criterion for n in list_metrics()})
