"""A metric profile applied to the evaluate stage (``t2ibench evaluate --metric-profile NAME``).

The evaluate stage computes each metric against the leaf's dataset images (all pairs), each image's
cleaned prompt, and the base model's image of the same prompt and seed: measures paired that way
run there unchanged, on the profile's encoders and preprocessing, then get the profile's scale.
A clamped text measure runs as text alignment's CLIPScore convention (clamp per pair: Hessel's
2.5·max(cos, 0); clamp of the mean: torchmetrics'). ``paired`` runs where each leaf has one reference
image, ``text = "keep"`` where the prompts carry no identifier (peer layouts say so); anything else
the stage cannot compute is refused with one line pointing at :func:`t2ibench.evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from t2ibench.errors import ConfigError
from t2ibench.metric_profiles import MetricProfile


def parse_encoder(item: str) -> tuple[str, str | None, bool]:
    """``name`` | ``name@tiny`` | ``name@WEIGHTS`` → (name, weights, tiny): the ``--encoders``
    grammar of ``t2ibench run`` (kept here so profiles need nothing from the pipeline package)."""
    name, _, weights = item.partition("@")
    if weights == "tiny":
        return name, None, True
    return name, weights or None, False


# A clamped, scaled text measure is text_alignment in one of its CLIPScore conventions:
# clamp → (convention, the scale that convention already applies).
_TEXT_CONVENTIONS = {
    "none": ("cosine", 1.0),
    "pair": ("clipscore-hessel", 2.5),  # mean of 2.5·max(cos, 0)
    "mean": ("clipscore-torchmetrics", 100.0),  # max(100·mean cos, 0)
}


def check_pipeline_supports(
    profile: MetricProfile, *, single_reference: bool = False, identifier_free: bool = False
) -> None:
    """Refuse (one line) a measure the evaluate stage cannot compute as the profile defines it.

    ``single_reference``: every leaf has exactly one reference image, so ``paired`` (each image
    with its own reference) is the stage's all-pairs mean. ``identifier_free``: the prompts carry
    no identifier, so the stage's cleaning keeps them as they are (``text = "keep"``).
    """
    texts: dict[str, str] = {}
    for m in profile.measures:
        why = None
        if m.pairing == "paired" and not single_reference:
            why = "pairs each image with its own reference"
        elif m.clamp != "none" and m.metric != "text_alignment":
            why = f"clamps ({m.clamp})"
        elif m.text == "keep" and m.metric == "text_alignment" and not identifier_free:
            why = "keeps the identifier in the prompt"
        elif m.metric == "text_alignment" and texts.setdefault(m.metric, m.clamp) != m.clamp:
            why = "clamps its text alignment unlike another measure of the profile"
        if why:
            raise ConfigError(
                f"metric profile {profile.name}: measure {m.label} {why}, which the evaluate "
                "stage does not do; score these images with t2ibench.evaluate(...) instead"
            )


def metric_options(
    profile: MetricProfile, selected: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """The metric options that make the stage compute the profile's clamp (text alignment), for
    the ``selected`` metrics (None: all)."""
    for m in profile.measures:
        if (
            m.metric == "text_alignment"
            and m.clamp != "none"
            and (selected is None or m.metric in selected)
        ):
            return {"text_alignment": {"convention": _TEXT_CONVENTIONS[m.clamp][0]}}
    return {}


def profile_encoders(
    profile: MetricProfile, overrides: Sequence[str] | None, device: str, *, all_tiny: bool = False
) -> list[Any]:
    """The profile's encoders with its preprocessing; ``overrides`` (``name@tiny``,
    ``name@WEIGHTS``) replace the weights of the profile's encoder of that name; ``all_tiny``:
    every encoder not overridden is its tiny random-weight variant (toy runs, tests)."""
    from t2ibench.encoders import create_encoder
    from t2ibench.metric_profiles.preprocess import set_resize_size

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
    for name, weights, resize, size, resize_size in wanted:
        w, tiny = over.get(name, (weights, all_tiny))
        enc = create_encoder(
            name, weights=None if tiny else w, tiny=tiny, resize=resize, size=size, device=device
        )
        out.append(set_resize_size(enc, resize_size))
    return out


def run_encoders(profile: MetricProfile, selected: Sequence[str], device: str) -> list[Any]:
    """The profile's encoders for ``t2ibench run``: the run's encoder list (``evaluate.encoders``)
    only says which weights to use — ``NAME@tiny`` / ``NAME@WEIGHTS`` for an encoder the profile
    uses replaces its weights, and a list of only tiny encoders (the toy and tiny run profiles)
    makes every profile encoder tiny."""
    used = {e[0] for e in profile.encoders()}
    parsed = [(item, *parse_encoder(item)) for item in selected]
    overrides = [item for item, name, weights, tiny in parsed if name in used and (weights or tiny)]
    all_tiny = bool(parsed) and all(tiny for *_, tiny in parsed)
    return profile_encoders(profile, overrides, device, all_tiny=all_tiny)


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
    # A clamped text measure ran in a CLIPScore convention that already applied its own scale.
    done = [_TEXT_CONVENTIONS[m.clamp][1] if m.metric == "text_alignment" else 1.0
            for m in measures]  # fmt: skip
    df["value"] = [v * m.scale / d for v, m, d in zip(df["value"], measures, done, strict=True)]
    df["measure"] = [m.label for m in measures]
    df["metric_profile"] = profile.name
    return df.reset_index(drop=True)
