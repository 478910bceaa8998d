"""A metric profile compiled for the evaluation engine (:mod:`t2ibench.evaluation`): its encoders
(weights and preprocessing), and each measure as a :class:`~t2ibench.evaluation.MetricPlan` — the
registered metric, bound to the measure's encoder, fed by the providers its pairing and text
cleaning choose (:data:`t2ibench.evaluation.PAIRINGS`), with the clamp the metric itself declares
(``MetricSpec.clamps``) and the measure's scale. Every entry point (``t2ibench run``, ``t2ibench
evaluate``, ``evaluate-checkpoints``, ``t2ibench.evaluate()``) computes a profile through these
plans, so a measure is computed the same way everywhere or refused in one line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from t2ibench.errors import ConfigError
from t2ibench.metric_profiles import Measure, MetricProfile


def parse_encoder(item: str) -> tuple[str, str | None, bool]:
    """``name`` | ``name@tiny`` | ``name@WEIGHTS`` → (name, weights, tiny): the ``--encoders``
    grammar of ``t2ibench run`` (kept here so profiles need nothing from the pipeline package)."""
    name, _, weights = item.partition("@")
    if weights == "tiny":
        return name, None, True
    return name, weights or None, False


def _measure_plan(profile: MetricProfile, m: Measure, encoder: Any | None):
    from t2ibench.evaluation import MetricPlan, pairing_sources
    from t2ibench.metrics import get_metric

    def refuse(why: str):
        return ConfigError(f"metric profile {profile.name}: measure {m.label} {why}")

    spec = get_metric(m.metric)
    try:
        sources, per_pair = pairing_sources(spec, m.pairing, m.text)
    except ConfigError as exc:
        raise refuse(f"cannot be computed: {exc}") from None
    options, divide = dict(spec.options), 1.0
    if m.clamp != "none":
        if m.clamp not in spec.clamps:
            raise refuse(
                f"clamps ({m.clamp}), which metric {m.metric} has no convention for "
                f"(it declares: {', '.join(spec.clamps) or 'none'})"
            )
        extra, divide = spec.clamps[m.clamp]
        options.update(extra)
    return MetricPlan(
        spec, options, sources, per_pair=per_pair, encoder=encoder, scale=m.scale,
        divide=divide, required=True,
        columns={"measure": m.label, "metric_profile": profile.name},
    )  # fmt: skip


def check_profile(profile: MetricProfile, *, single_reference: bool = True) -> None:
    """Refuse (one line) a measure that cannot be computed as the profile defines it, before any
    work. ``single_reference``: every leaf of a folder has one reference image, so ``paired``
    (each image with its own reference) pairs each image with it; a folder whose leaves hold
    several references names no image's own, so ``paired`` is refused there."""
    for m in profile.measures:
        _measure_plan(profile, m, None)
        if m.pairing == "paired" and not single_reference:
            raise ConfigError(
                f"metric profile {profile.name}: measure {m.label} pairs each image with its own "
                "reference, but these leaves hold several references and no image names its "
                "own; give one reference per image (t2ibench.evaluate(..., references=...))"
            )


def profile_plans(
    profile: MetricProfile,
    encoders: Sequence[Any] | None = None,
    selected: Sequence[str] | None = None,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Any]:
    """The engine's plans for ``profile``. ``encoders``: as :func:`profile_encoders` returns them
    (one per distinct encoder of the measures, in order), each measure bound to its own;
    ``selected``: only these metrics (None: all). The default profile (no measures) is every
    selected registered metric on every encoder, with ``metric_options``."""
    from t2ibench.evaluation import plan_metrics

    if profile.defaults:
        plans = plan_metrics(selected, metric_options)
        return [_with_columns(p, {"metric_profile": profile.name}) for p in plans]
    keys = [m.encoder_key for m in profile.encoder_settings()]
    if encoders is not None and len(encoders) != len(keys):
        raise ConfigError(
            f"metric profile {profile.name}: {len(encoders)} encoders for {len(keys)} needed"
        )
    return [
        _measure_plan(profile, m, None if encoders is None else encoders[keys.index(m.encoder_key)])
        for m in profile.measures
        if selected is None or m.metric in selected
    ]


def _with_columns(plan, columns: Mapping[str, Any]):
    from dataclasses import replace

    return replace(plan, columns={**plan.columns, **columns})


def profile_encoders(
    profile: MetricProfile, overrides: Sequence[str] | None, device: str, *, all_tiny: bool = False
) -> list[Any]:
    """The profile's encoders with its preprocessing; ``overrides`` (``name@tiny``,
    ``name@WEIGHTS``) replace the weights of the profile's encoder of that name; ``all_tiny``:
    every encoder not overridden is its tiny random-weight variant (toy runs, tests)."""
    from t2ibench.encoders import create_encoder
    from t2ibench.metric_profiles.preprocess import set_measure_preprocess

    wanted = profile.encoder_settings()  # one measure per distinct encoder + preprocessing
    over = {}
    for item in overrides or ():
        name, weights, tiny = parse_encoder(item)
        if name not in {m.encoder for m in wanted}:
            raise ConfigError(
                f"--encoders {item}: metric profile {profile.name} uses "
                f"{', '.join(dict.fromkeys(m.encoder for m in wanted))}, not {name}"
            )
        over[name] = (weights, tiny)
    out = []
    for m in wanted:
        w, tiny = over.get(m.encoder, (m.weights, all_tiny))
        enc = create_encoder(
            m.encoder, weights=None if tiny else w, tiny=tiny, resize=m.resize, size=m.size,
            device=device,
        )  # fmt: skip
        out.append(set_measure_preprocess(enc, m))
    return out


def run_encoders(profile: MetricProfile, selected: Sequence[str], device: str) -> list[Any]:
    """The profile's encoders for ``t2ibench run``: the run's encoder list (``evaluate.encoders``)
    only says which weights to use — ``NAME@tiny`` / ``NAME@WEIGHTS`` for an encoder the profile
    uses replaces its weights, and a list of only tiny encoders (the toy and tiny run profiles)
    makes every profile encoder tiny."""
    used = {m.encoder for m in profile.encoder_settings()}
    parsed = [(item, *parse_encoder(item)) for item in selected]
    overrides = [item for item, name, weights, tiny in parsed if name in used and (weights or tiny)]
    all_tiny = bool(parsed) and all(tiny for *_, tiny in parsed)
    return profile_encoders(profile, overrides, device, all_tiny=all_tiny)
