"""A metric profile applied to the evaluate stage (``t2ibench evaluate --metric-profile NAME``).

The evaluate stage computes each metric against the leaf's dataset images (all pairs), each image's
cleaned prompt, and the base model's image of the same prompt and seed: measures paired that way
run there unchanged, on the profile's encoders and preprocessing, then get the profile's scale.
Measures the stage cannot pair (``paired`` with per-image references, a clamp, uncleaned text) are
refused with one line pointing at :func:`t2ibench.evaluate`, which computes every profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from t2ibench.errors import ConfigError
from t2ibench.metric_profiles import MetricProfile


def check_pipeline_supports(profile: MetricProfile) -> None:
    for m in profile.measures:
        why = (
            "pairs each image with its own reference"
            if m.pairing == "paired"
            else f"clamps ({m.clamp})"
            if m.clamp != "none"
            else "keeps the identifier in the prompt"
            if m.text == "keep"
            else None
        )
        if why:
            raise ConfigError(
                f"metric profile {profile.name}: measure {m.label} {why}, which the evaluate "
                "stage does not do; score these images with t2ibench.evaluate(...) instead"
            )


def profile_encoders(
    profile: MetricProfile, overrides: Sequence[str] | None, device: str
) -> list[Any]:
    """The profile's encoders with its preprocessing; ``overrides`` (``name@tiny``,
    ``name@WEIGHTS``) replace the weights of the profile's encoder of that name."""
    from t2ibench.encoders import create_encoder
    from t2ibench.pipeline.run import parse_encoder

    wanted = profile.encoders()
    over = {}
    for item in overrides or ():
        name, weights, tiny = parse_encoder(item)
        if name not in {e[0] for e in wanted}:
            raise ConfigError(
                f"--encoders {item}: metric profile {profile.name} uses "
                f"{', '.join(dict.fromkeys(e[0] for e in wanted))}, not {name}"
            )
        over[name] = (weights, tiny)
    out = []
    for name, weights, resize, size in wanted:
        w, tiny = over.get(name, (weights, False))
        out.append(
            create_encoder(
                name,
                weights=None if tiny else w,
                tiny=tiny,
                resize=resize,
                size=size,
                device=device,
            )
        )
    return out


def apply_metric_profile(df, profile: MetricProfile):
    """Keep the profile's (metric, encoder) rows, scale them, add ``measure`` and
    ``metric_profile`` columns."""
    df = df.copy()
    if profile.defaults:
        df["metric_profile"] = profile.name
        return df
    labels = {(m.metric, m.encoder): m for m in profile.measures}
    keep = [(r.metric, r.encoder) in labels for r in df.itertuples()]
    df = df[keep].copy()
    measures = [labels[(r.metric, r.encoder)] for r in df.itertuples()]
    df["value"] = [v * m.scale for v, m in zip(df["value"], measures, strict=True)]
    df["measure"] = [m.label for m in measures]
    df["metric_profile"] = profile.name
    return df.reset_index(drop=True)
