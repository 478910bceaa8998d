"""The typed trainer config: paper defaults, TOML files and ``key=value`` overrides.

One dataclass serves every built-in trainer; each trainer overrides a few defaults (PROTOCOL
"Training": LoRA dim 8 / alpha 4, LoHa 4 / 2, LoKr factor 8 with a full second block (dim 10000,
alpha 1), lr 5e-4; native lr 1e-6). Fields an algorithm does not use (``dim`` for native) are
ignored by it. A TOML file holds the same keys at top level (or under a ``[trainer]`` table);
unknown keys are a :class:`ConfigError` naming them.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from t2ibench.errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .algorithms import AlgoParams
from .presets import PRESETS

OPTIMIZERS = ("adamw", "adamw8bit")
PRECISIONS = ("no", "fp16", "bf16")
NATIVE_SAVE = ("diff", "diffusers")


@dataclass
class TrainerConfig:
    """Everything a training run needs besides the dataset and the base model."""

    trainer: str = "lora"
    name: str = ""  # checkpoint name prefix; "" → the trainer name
    # -- algorithm (LyCORIS conventions) --
    dim: int = 8
    alpha: float = 4.0
    conv_dim: int | None = None  # None: = dim; 0: do not adapt k×k convolutions
    conv_alpha: float | None = None  # None: = alpha
    factor: int = -1  # LoKr
    decompose_both: bool = False  # LoKr: also decompose the first block
    use_tucker: bool = False  # Tucker decomposition of k×k convolutions
    full_matrix: bool = False  # LoKr: never decompose
    # -- which layers --
    preset: str = "attn-mlp"
    unet_preset: str | None = None  # None: = preset
    te_preset: str | None = None  # None: = preset
    train_text_encoder: bool = True
    # -- optimisation --
    lr: float = 5e-4
    unet_lr: float | None = None  # None: = lr
    te_lr: float | None = None  # None: = lr
    optimizer: str = "adamw8bit"  # 8-bit only on CUDA with bitsandbytes; otherwise AdamW
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    max_grad_norm: float = 1.0  # 0 disables clipping
    warmup_steps: int = 3500
    # Warm-up is clamped to this fraction of the run's total steps, so short runs still reach the
    # target lr. The paper's runs (tens of thousands of steps) are far from the clamp.
    warmup_max_fraction: float = 0.25
    # -- data --
    batch_size: int = 8
    resolution: int = 512
    min_bucket_reso: int = 320
    max_bucket_reso: int = 960
    bucket_step: int = 64
    caption_dropout: float = 0.1
    # -- schedule --
    epochs: int = 50
    save_epochs: tuple[int, ...] = (10, 30, 50)  # the last epoch is always saved too
    seed: int = 23
    # -- compute --
    mixed_precision: str = "bf16"  # used on CUDA only; CPU always trains in fp32
    gradient_checkpointing: bool = False
    native_save: str = "diff"  # native: "diff" tensors or a full "diffusers" folder

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

    def algo_params(self) -> AlgoParams:
        return AlgoParams(
            dim=self.dim,
            alpha=self.alpha,
            conv_dim=self.conv_dim,
            conv_alpha=self.conv_alpha,
            factor=self.factor,
            decompose_both=self.decompose_both,
            use_tucker=self.use_tucker,
            full_matrix=self.full_matrix,
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> TrainerConfig:
        return validate(dataclasses.replace(self, **changes))


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


FIELD_TYPES: dict[str, Any] = typing.get_type_hints(TrainerConfig)


def _coerce(key: str, value: Any, where: str) -> Any:
    """Check / convert one value to the field's type; errors name the file and field."""
    tp = FIELD_TYPES[key]
    optional = False
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional, tp = True, args[0]
    if optional and (value is None or (isinstance(value, str) and value.lower() in ("none", ""))):
        return None

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}: field {key!r} must be {expected}, got {value!r}")

    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad("true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise bad("an integer")
        try:
            f = float(value)
        except ValueError:
            raise bad("an integer") from None
        if f != int(f):
            raise bad("an integer")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise bad("a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad("a number") from None
    if tp is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    origin = typing.get_origin(tp)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
        if not isinstance(value, list | tuple):
            raise bad("a list")
        args = typing.get_args(tp)
        item = args[0]
        if len(args) == 2 and args[1] is not Ellipsis and len(value) != 2:
            raise bad("a list of two numbers")
        try:
            return tuple(item(float(v)) if item is int else item(v) for v in value)
        except (TypeError, ValueError):
            raise bad(f"a list of {item.__name__}") from None
    raise AssertionError(f"unhandled field type {tp}")  # a new field without a coercion rule


def validate(cfg: TrainerConfig, where: str = "trainer config") -> TrainerConfig:
    """Range checks; raises ConfigError naming the field."""

    def err(key: str, msg: str) -> ConfigError:
        return ConfigError(f"{where}: field {key!r} {msg} (got {getattr(cfg, key)!r})")

    for key in ("preset", "unet_preset", "te_preset"):
        v = getattr(cfg, key)
        if v is not None and v not in PRESETS:
            raise err(key, f"must be one of {', '.join(sorted(PRESETS))}")
    if cfg.dim <= 0:
        raise err("dim", "must be positive")
    if cfg.conv_dim is not None and cfg.conv_dim < 0:
        raise err("conv_dim", "must be >= 0")
    for key in ("lr", "unet_lr", "te_lr"):
        v = getattr(cfg, key)
        if v is not None and not v >= 0:
            raise err(key, "must be >= 0")
    if cfg.optimizer not in OPTIMIZERS:
        raise err("optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
    if cfg.mixed_precision not in PRECISIONS:
        raise err("mixed_precision", f"must be one of {', '.join(PRECISIONS)}")
    if cfg.native_save not in NATIVE_SAVE:
        raise err("native_save", f"must be one of {', '.join(NATIVE_SAVE)}")
    if cfg.batch_size < 1:
        raise err("batch_size", "must be >= 1")
    if cfg.epochs < 1:
        raise err("epochs", "must be >= 1")
    if any(e < 1 for e in cfg.save_epochs):
        raise err("save_epochs", "must hold positive epochs")
    if not 0 <= cfg.caption_dropout <= 1:
        raise err("caption_dropout", "must be in [0, 1]")
    if cfg.warmup_steps < 0:
        raise err("warmup_steps", "must be >= 0")
    if not 0 < cfg.warmup_max_fraction <= 1:
        raise err("warmup_max_fraction", "must be in (0, 1]")
    if cfg.weight_decay < 0:
        raise err("weight_decay", "must be >= 0")
    step = cfg.bucket_step
    if step < 8 or step % 8:
        raise err("bucket_step", "must be a positive multiple of 8 (the VAE factor)")
    if cfg.resolution < step or cfg.resolution % step:
        raise err("resolution", f"must be a positive multiple of bucket_step ({step})")
    return cfg


def parse_override(item: str) -> tuple[str, Any]:
    """``"key=value"`` → (key, value); the value is read as TOML (``5e-4``, ``true``, ``[1, 2]``),
    else kept as a bare string."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def load_trainer_config(
    trainer: str,
    path: Path | str | None = None,
    overrides: Sequence[str] = (),
) -> TrainerConfig:
    """The trainer's default config, updated from a TOML file and then ``key=value`` overrides."""
    from .registry import get_trainer

    spec = get_trainer(trainer)
    values: dict[str, Any] = dict(spec.defaults)
    values["trainer"] = trainer
    if path is not None:
        values.update(_read_toml(Path(path), trainer))
    for item in overrides:
        key, value = parse_override(item)
        _check_keys([key], f"--set {item}")
        values[key] = _coerce(key, value, f"--set {item}")
    return validate(spec.config_class(**values), str(path) if path else "trainer config")


def config_from_dict(data: Mapping[str, Any], where: str = "trainer config") -> TrainerConfig:
    """A config from a plain dict (e.g. a checkpoint's metadata), checked like a file."""
    from .registry import get_trainer

    data = dict(data)
    trainer = data.get("trainer", "lora")
    spec = get_trainer(trainer)
    _check_keys(list(data), where)
    values = dict(spec.defaults)
    values.update({k: _coerce(k, v, where) for k, v in data.items()})
    return validate(spec.config_class(**values), where)


def _check_keys(keys: Sequence[str], where: str) -> None:
    unknown = [k for k in keys if k not in FIELD_TYPES]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
            f" (known: {', '.join(FIELD_TYPES)})"
        )


def _read_toml(path: Path, trainer: str) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    if "trainer" in data and isinstance(data["trainer"], dict):
        data = data["trainer"]
    _check_keys(list(data), str(path))
    if "trainer" in data and data["trainer"] != trainer:
        raise ConfigError(
            f"{path}: field 'trainer' is {data['trainer']!r} but the trainer asked for is {trainer!r}"
        )
    return {k: _coerce(k, v, str(path)) for k, v in data.items()}
