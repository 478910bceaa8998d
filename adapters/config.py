"""The typed trainer config: the keys every trainer shares, TOML files and ``key=value`` overrides.

:class:`TrainerConfig` holds what the training loop reads (layers, optimisation, data, schedule,
compute). A trainer's own keys (LoRA's ``dim``/``alpha``, LoKr's ``factor``, native's
``native_save``, a plug-in's ``scale``) live in its config class, a subclass declared in the
trainer's file. Values are checked by pydantic; errors name the source (file or ``--set`` item),
the key and the expected type. A TOML file holds the keys at top level (or under ``[trainer]``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from t2ibench.errors import ConfigError
from t2ibench.validation import parse_assignment, read_toml, validation_message

from .presets import PRESETS


class TrainerConfig(BaseModel):
    """Everything a training run needs besides the dataset and the base model."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    trainer: str = "lora"
    name: str = ""  # checkpoint name prefix; "" → the trainer name
    # -- which layers --
    preset: str = "attn-mlp"
    unet_preset: str | None = None  # None: = preset
    te_preset: str | None = None  # None: = preset
    train_text_encoder: bool = True
    # -- optimisation --
    lr: float = Field(5e-4, ge=0)
    unet_lr: float | None = Field(None, ge=0)  # None: = lr
    te_lr: float | None = Field(None, ge=0)  # None: = lr
    optimizer: Literal["adamw", "adamw8bit"] = "adamw8bit"  # 8-bit only on CUDA + bitsandbytes
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    max_grad_norm: float = 1.0  # 0 disables clipping
    warmup_steps: int = Field(3500, ge=0)
    # Warm-up is clamped to this fraction of the run's total steps, so short runs still reach the
    # target lr. The paper's runs (tens of thousands of steps) are far from the clamp.
    warmup_max_fraction: float = Field(0.25, gt=0, le=1)
    # -- data --
    batch_size: int = Field(8, ge=1)
    resolution: int = 512
    min_bucket_reso: int = 320
    max_bucket_reso: int = 960
    bucket_step: int = 64
    caption_dropout: float = Field(0.1, ge=0, le=1)
    # -- schedule --
    epochs: int = Field(50, ge=1)
    save_epochs: tuple[int, ...] = (10, 30, 50)  # the last epoch is always saved too
    seed: int = 23
    # -- compute --
    mixed_precision: Literal["no", "fp16", "bf16"] = "bf16"  # CUDA only; CPU trains in fp32
    gradient_checkpointing: bool = False

    # -- checks pydantic's types do not express ------------------------------------------------
    @field_validator("preset", "unet_preset", "te_preset")
    @classmethod
    def _known_preset(cls, v: str | None) -> str | None:
        if v is not None and v not in PRESETS:
            raise ValueError(f"must be one of {', '.join(sorted(PRESETS))}")
        return v

    @field_validator("save_epochs", "betas", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        # ``--set save_epochs=10,30,50``: a bare comma list on the command line
        return [s for s in v.replace(" ", "").split(",") if s] if isinstance(v, str) else v

    @field_validator("save_epochs")
    @classmethod
    def _positive_epochs(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(e < 1 for e in v):
            raise ValueError("must hold positive epochs")
        return v

    @field_validator("bucket_step")
    @classmethod
    def _vae_multiple(cls, v: int) -> int:
        if v < 8 or v % 8:
            raise ValueError("must be a positive multiple of 8 (the VAE factor)")
        return v

    @model_validator(mode="after")
    def _resolution_fits_buckets(self) -> TrainerConfig:
        if self.resolution < self.bucket_step or self.resolution % self.bucket_step:
            raise ValueError(
                f"field 'resolution' must be a positive multiple of bucket_step "
                f"({self.bucket_step}) (got {self.resolution})"
            )
        return self

    # ------------------------------------------------------------------------------------------
    @property
    def output_name(self) -> str:
        return self.name or self.trainer

    def presets(self) -> dict[str, str]:
        return {
            "unet": self.unet_preset or self.preset,
            "te": (self.te_preset or self.preset) if self.train_text_encoder else "none",
        }

    def lrs(self) -> dict[str, float]:
        return {
            "unet": self.lr if self.unet_lr is None else self.unet_lr,
            "te": self.lr if self.te_lr is None else self.te_lr,
        }

    @classmethod
    def own_keys(cls) -> list[str]:
        """The keys this config class adds to the shared ones (the trainer's own settings)."""
        return [k for k in cls.model_fields if k not in TrainerConfig.model_fields]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> TrainerConfig:
        return build_config(type(self), [("trainer config", {**self.to_dict(), **changes})])


# --------------------------------------------------------------------------------------------------
# Building a config from sources (defaults, a file, overrides), with errors that name the source
# --------------------------------------------------------------------------------------------------


def build_config(
    config_class: type[TrainerConfig],
    sources: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    prefix: str = "",
) -> TrainerConfig:
    """``config_class`` from ``(where, values)`` sources, later ones winning; an unknown key or a
    bad value is a :class:`ConfigError` naming its source and key (``prefix`` + key)."""
    known = config_class.model_fields
    values: dict[str, Any] = {}
    where_of: dict[str, str] = {}
    last = "trainer config"
    for where, data in sources:
        unknown = [k for k in data if k not in known]
        if unknown:
            s = "s" if len(unknown) > 1 else ""
            raise ConfigError(
                f"{where}: unknown key{s} {', '.join(repr(prefix + k) for k in unknown)} "
                f"for trainer {data.get('trainer', values.get('trainer', '?'))!r} "
                f"(known: {', '.join(known)})"
            )
        values.update(data)
        where_of.update(dict.fromkeys(data, where))
        last = where
    try:
        return config_class.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, where_of, last, prefix)) from None


parse_override = parse_assignment  # ``--set key=value`` for trainer keys


def read_trainer_toml(path: Path) -> dict[str, Any]:
    """The trainer keys of a TOML file (top level, or its ``[trainer]`` table)."""
    data = read_toml(path)
    if isinstance(data.get("trainer"), dict):
        data = data["trainer"]
    return data
