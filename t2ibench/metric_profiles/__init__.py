"""Metric profiles: named bundles that fix how a published paper computes its numbers.

A metric profile lists *measures* (a paper's column, e.g. DreamBooth's "DINO"): each names the
registered metric it is, the encoder and weights id, the preprocessing (resize mode, size,
interpolation; the normalisation is the encoder's own), the pairing (``all-pairs`` = every generated
image against every reference; ``paired`` = image i against reference i; ``base-paired`` = against
the base model's image of the same prompt and seed; ``prompt`` = image i against its prompt), the
text cleaning (``remove-identifier`` or ``keep``), ``resize_size`` (the short side before a centre
crop of ``size``: DINO's evaluation transform resizes to 256, then crops 224), ``crop_offset``
(where an odd margin puts the centre crop: ``round`` = torchvision's ``CenterCrop``, ``floor`` =
Hugging Face transformers' image processors; see :mod:`t2ibench.metric_profiles.preprocess`), the
scaling (``scale``, e.g. 100) and the clamp (``none``, ``pair`` = max(cos, 0) per pair, ``mean`` =
max(mean, 0)). ``label`` is the paper's name for the number ("DINO", "CLIP-I"); results keep the
metric's name in ``metric`` and carry the label in their ``measure`` column.

Each built-in profile is one TOML file in this folder (a new one needs no code); third parties
register a :class:`MetricProfile` (or a path to a TOML file) through the entry-point group
``t2ibench.metric_profiles``. "Metric profile", not "profile": a run profile (toy/tiny/paper) is
something else. Light: no torch.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from t2ibench.errors import ConfigError
from t2ibench.registry import Registry

PAIRINGS = ("all-pairs", "paired", "base-paired", "prompt")
TEXT_CLEANING = ("remove-identifier", "keep")
CLAMPS = ("none", "pair", "mean")
CROP_OFFSETS = ("round", "floor")  # torchvision's CenterCrop; transformers' image processors
DEFAULT_METRIC_PROFILE = "lycoris2024"


@dataclass(frozen=True)
class Measure:
    """One number a paper reports: ``metric`` on ``encoder``'s features, paired and scaled so."""

    label: str
    metric: str
    encoder: str
    weights: str | None = None
    resize: str | None = None
    size: int | None = None
    resize_size: int | None = None
    crop_offset: str = "round"
    pairing: str = "all-pairs"
    text: str = "remove-identifier"
    scale: float = 1.0
    clamp: str = "none"
    source: str = ""

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("pairing", self.pairing, PAIRINGS),
            ("text", self.text, TEXT_CLEANING),
            ("clamp", self.clamp, CLAMPS),
            ("crop_offset", self.crop_offset, CROP_OFFSETS),
        ):
            if value not in allowed:
                raise ConfigError(
                    f"measure {self.label!r}: {name} {value!r} is not one of {', '.join(allowed)}"
                )
        if self.resize_size is not None and (
            self.resize != "center-crop" or self.resize_size < (self.size or 224)
        ):
            raise ConfigError(
                f"measure {self.label!r}: resize_size {self.resize_size} needs resize = "
                f"'center-crop' and resize_size ≥ size (resize, then crop the centre)"
            )
        if self.crop_offset != "round" and self.resize != "center-crop":
            raise ConfigError(
                f"measure {self.label!r}: crop_offset {self.crop_offset!r} needs resize = "
                "'center-crop' (only a centre crop has an offset)"
            )

    @property
    def encoder_key(self) -> tuple:
        """What makes two measures share one encoder: model, weights and preprocessing."""
        return (self.encoder, self.weights, self.resize, self.size, self.resize_size,
                self.crop_offset)  # fmt: skip


@dataclass(frozen=True)
class MetricProfile:
    name: str
    description: str
    reference: str
    measures: tuple[Measure, ...] = ()
    # lycoris2024 only: no measures = every registered metric on the default encoders, unchanged.
    defaults: bool = False
    path: Path | None = field(default=None, compare=False)

    def encoder_settings(self) -> list[Measure]:
        """One measure per distinct (encoder, weights, resize, size, resize_size, crop_offset),
        in order: what to build each encoder with (``create_encoder(m.encoder, weights=m.weights,
        resize=m.resize, size=m.size)``, then
        :func:`t2ibench.metric_profiles.preprocess.set_measure_preprocess`)."""
        seen: dict[tuple, Measure] = {}
        for m in self.measures:
            seen.setdefault(m.encoder_key, m)
        return list(seen.values())

    def metrics(self) -> list[str]:
        return list(dict.fromkeys(m.metric for m in self.measures))


_MEASURE_KEYS = {f for f in Measure.__dataclass_fields__}


def parse_metric_profile(data: dict[str, Any], where: str) -> MetricProfile:
    """A :class:`MetricProfile` from a TOML table; errors name ``where`` and the bad key."""
    try:
        measures = []
        for i, m in enumerate(data.get("measure", [])):
            unknown = sorted(set(m) - _MEASURE_KEYS)
            if unknown:
                raise ConfigError(f"measure {i + 1}: unknown key(s) {unknown}")
            measures.append(Measure(**m))
        unknown = sorted(set(data) - {"name", "description", "reference", "measure", "defaults"})
        if unknown:
            raise ConfigError(f"unknown key(s) {unknown}")
        profile = MetricProfile(
            name=data["name"],
            description=data.get("description", ""),
            reference=data.get("reference", ""),
            measures=tuple(measures),
            defaults=bool(data.get("defaults", False)),
        )
    except KeyError as exc:
        raise ConfigError(f"metric profile {where}: missing key {exc}") from None
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"metric profile {where}: {exc}") from None
    if not profile.measures and not profile.defaults:
        raise ConfigError(f"metric profile {where}: no [[measure]] tables")
    return profile


def load_metric_profile_file(path: str | Path) -> MetricProfile:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"metric profile {path}: {exc}") from None
    profile = parse_metric_profile(data, str(path))
    return MetricProfile(**{**profile.__dict__, "path": path})


METRIC_PROFILES: Registry[MetricProfile] = Registry(
    "metric profile", entry_point_group="t2ibench.metric_profiles"
)


def register_metric_profile(
    profile: MetricProfile | str | Path, *, overwrite: bool = False
) -> MetricProfile:
    if not isinstance(profile, MetricProfile):
        profile = load_metric_profile_file(profile)
    METRIC_PROFILES.register(profile.name, profile, overwrite=overwrite)
    return profile


def get_metric_profile(name: str | MetricProfile) -> MetricProfile:
    """A registered profile by name (an existing ``.toml`` path also works)."""
    if isinstance(name, MetricProfile):
        return name
    if str(name).endswith(".toml") and Path(name).is_file():
        return load_metric_profile_file(name)
    item = METRIC_PROFILES.get(name)
    # A plug-in's entry point may name a TOML file instead of a MetricProfile object.
    return item if isinstance(item, MetricProfile) else load_metric_profile_file(item)


def list_metric_profiles() -> list[str]:
    return METRIC_PROFILES.names()


# The built-in profiles: every TOML file in this folder.
for _file in sorted(Path(__file__).parent.glob("*.toml")):
    register_metric_profile(_file)

__all__ = [
    "CLAMPS",
    "CROP_OFFSETS",
    "DEFAULT_METRIC_PROFILE",
    "METRIC_PROFILES",
    "PAIRINGS",
    "TEXT_CLEANING",
    "Measure",
    "MetricProfile",
    "get_metric_profile",
    "list_metric_profiles",
    "load_metric_profile_file",
    "parse_metric_profile",
    "register_metric_profile",
]
