"""What the report measures, derived from the metric registry and the results table.

A metric says which report sections it feeds (``MetricSpec.report``, see
:class:`t2ibench.metrics.ReportUse`); the analysis reads that here, for the metrics present in the
results, so a new metric (built-in or plug-in) shows up in the rank table, the SHAP models, the epoch
tables and the metric-pair plots without a list to edit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """One measurement; ``encoder``/``resize`` None = the preferred one present."""

    metric: str
    prompt_type: str
    encoder: str | None = None
    resize: str | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        """``metric:prompt_type[:encoder[:resize]]``, e.g. ``image_similarity:train:dinov2-l``."""
        parts = [p.strip() for p in text.split(":")]
        if len(parts) < 2 or len(parts) > 4 or not all(parts[:2]):
            raise ValueError(f"target {text!r}: expected metric:prompt_type[:encoder[:resize]]")
        parts += [None] * (4 - len(parts))
        return cls(parts[0], parts[1], parts[2] or None, parts[3] if parts[3] is not None else None)

    @property
    def label(self) -> str:
        return f"{self.metric} <{self.prompt_type}>"


@dataclass(frozen=True)
class DescribedMetric:
    """What a results file records of a metric whose plug-in is not installed here
    (:func:`t2ibench.results.describe_table`): enough for the report's criteria and sections."""

    name: str
    criterion: str
    encoder: str | None = None
    report: object = field(default=None)

    @classmethod
    def from_description(cls, name: str, d: Mapping) -> DescribedMetric:
        from t2ibench.metrics import ReportUse

        uses = d.get("report") or {}
        report = ReportUse(**{k: tuple(uses.get(k, ())) for k in ("criterion", "shap", "epochs")})
        return cls(name, str(d["criterion"]), d.get("encoder"), report)


#: Metrics the analysis in progress knows only from its results file's description (set by
#: ``analyze`` for its own duration).
DESCRIBED: ContextVar[Mapping[str, DescribedMetric] | None] = ContextVar("described", default=None)


def _spec(name: str):
    from t2ibench.metrics import METRICS

    return METRICS.get(name) if name in METRICS else (DESCRIBED.get() or {}).get(name)


def _specs(metrics: Iterable[str] | None) -> list:
    """Specs of ``metrics`` (None = every registered metric), sorted by name: registered ones, else
    what the results file describes (:data:`DESCRIBED`); other names (a third-party metric analysed
    with a given direction) have no uses."""
    from t2ibench.metrics import METRICS

    names = METRICS.names() if metrics is None else sorted(set(metrics))
    return [s for s in map(_spec, names) if s is not None]


def report_targets(section: str, metrics: Iterable[str] | None = None) -> tuple[Target, ...]:
    """The targets of a report section (``"shap"`` or ``"epochs"``) among ``metrics``."""
    return tuple(Target(s.name, pt) for s in _specs(metrics) for pt in getattr(s.report, section))


def criteria_targets(metrics: Iterable[str] | None = None) -> dict[str, tuple[Target, ...]]:
    """Criterion → the measurements averaged into it in the rank table."""
    out: dict[str, list[Target]] = {}
    for s in _specs(metrics):
        for pt in s.report.criterion:
            out.setdefault(s.criterion, []).append(Target(s.name, pt))
    return {c: tuple(t) for c, t in out.items()}


def pair_targets(metrics: Iterable[str] | None = None) -> tuple[tuple[Target, Target], ...]:
    """(x, y) measurement pairs to plot; y is the metric that declared the pair."""
    present = None if metrics is None else set(metrics)
    pairs = []
    for s in _specs(metrics):
        for pt, other in s.report.pairs:
            x = Target.parse(other)
            if present is None or x.metric in present:
                pairs.append((x, Target(s.name, pt)))
    return tuple(pairs)


def preferred_encoder(metric: str) -> str | None:
    """The encoder a registered (or described) metric names (its headline measurement), else
    None."""
    spec = _spec(metric)
    return spec.encoder if spec is not None else None


def encoder_family(name: str | None) -> str | None:
    """The registered encoder's ``family`` (``dino``, ``clip``, ...; None when unknown or unset)."""
    from t2ibench.encoders import ENCODERS

    if not name or name not in ENCODERS:
        return None
    return ENCODERS.get(name).family or None


def encoder_preference(metric: str, encoder: str) -> int:
    """0 = the encoder ``metric`` names, 1 = an encoder of the same family (a toy DINO for DINOv2),
    2 = any other: the analysis reads a metric on the lowest value present."""
    own = preferred_encoder(metric)
    if own is None:
        return 2
    if encoder == own:
        return 0
    family = encoder_family(own)
    return 1 if family is not None and encoder_family(encoder) == family else 2
