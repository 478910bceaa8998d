"""The trainer registry. A trainer is one file that registers a :class:`TrainerSpec`: the built-ins
in ``t2ibench.adapters.trainers`` (imported by ``t2ibench.adapters``), third parties through the
``t2ibench.trainers`` entry-point group (an entry point names a :class:`TrainerSpec` or a module
that calls :func:`register_trainer` on import).

A spec owns its algorithm end to end: its config class (its own keys, settable through ``--set``
and TOML), its module class (construction, the saved keys, how its files are recognised), the
metadata written with its checkpoints and the columns it adds to the results table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

from t2ibench.errors import ConfigError
from t2ibench.registry import Registry, UnknownNameError

from .algorithms import AdapterModule
from .config import TrainerConfig, build_config, parse_override, read_trainer_toml
from .network import AdapterNetwork, ModuleFactory


@dataclass(frozen=True)
class TrainerSpec:
    """A trainer: its config class and defaults, its adapter module, its metadata and columns.

    ``module_class`` builds a layer's adapter (``module_class.create(kohya_name, layer, cfg)``)
    and reads it back from a file (its ``signatures`` and ``from_state``); ``module_factory``
    replaces ``create`` when given. ``result_columns`` are config keys copied into every results
    row of the trainer's checkpoints (``algorithm``, ``preset`` and ``lr`` always are).
    ``full_weights`` marks a trainer that trains the base weights themselves (native fine-tuning:
    weight decay on ``W + diff``; may save a full diffusers folder).

    ``before_step(network, cfg, timesteps, max_timestep)``, when given, is called by the training
    loop before each step's denoiser forward with the noise levels drawn for the step (DDPM
    timesteps with ``max_timestep`` = the schedule's length, or flow matching's σ with 1; see
    :mod:`t2ibench.bases.objectives`); ``after_training()`` once when training ends (success or
    not), to leave nothing of the step's state behind for generation.
    """

    name: str
    description: str
    config_class: type[TrainerConfig] = TrainerConfig
    module_class: type[AdapterModule] | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    module_factory: ModuleFactory | None = None
    result_columns: tuple[str, ...] = ()
    lycoris_algo: str = ""  # ``algo`` in the sd-scripts metadata ("" → name)
    full_weights: bool = False
    before_step: Callable[[AdapterNetwork, Any, Any, float], None] | None = None
    after_training: Callable[[], None] | None = None

    def create_module(self, lora_name: str, layer: nn.Module, cfg: Any) -> AdapterModule | None:
        if self.module_factory is not None:
            return self.module_factory(lora_name, layer, cfg)
        if self.module_class is None:
            raise ConfigError(f"trainer {self.name!r}: has neither a module class nor a factory")
        return self.module_class.create(lora_name, layer, cfg)

    def build_network(
        self,
        parts: Mapping[str, nn.Module],
        cfg: TrainerConfig,
        presets: Mapping[str, Any] | None = None,
    ) -> AdapterNetwork:
        """Fresh adapters on the layers the config's presets select (``presets``: part → preset
        name or :class:`~t2ibench.adapters.presets.Preset`, a base's own; default: the config's
        names on the SD1.5 / UNet rules)."""
        return AdapterNetwork.create(self.create_module, parts, presets or cfg.presets(), cfg)

    def config(
        self, sources: Iterable[tuple[str, Mapping[str, Any]]] = (), *, prefix: str = ""
    ) -> TrainerConfig:
        """This trainer's config: its defaults updated by ``(where, values)`` sources."""
        return build_config(
            self.config_class,
            [("trainer defaults", {**self.defaults, "trainer": self.name}), *sources],
            prefix=prefix,
        )

    def columns(self, cfg: TrainerConfig) -> dict[str, Any]:
        """What a checkpoint of this trainer adds to each results row."""
        return {
            "algorithm": self.name,
            "preset": cfg.preset,
            "lr": cfg.lr,
            **{k: getattr(cfg, k) for k in self.result_columns},
        }

    def metadata(self, cfg: TrainerConfig) -> dict[str, str]:
        """The sd-scripts ``ss_network_*`` fields, so other tools recognise the file."""
        own = {k: getattr(cfg, k) for k in cfg.own_keys()}
        dim, alpha = own.get("dim"), own.get("alpha")
        args = {"algo": self.lycoris_algo or self.name, "preset": cfg.preset}
        if dim is not None:  # LyCORIS writes the resolved convolution rank
            own["conv_dim"] = dim if own.get("conv_dim") is None else own["conv_dim"]
            own["conv_alpha"] = alpha if own.get("conv_alpha") is None else own["conv_alpha"]
        args.update({k: str(v) for k, v in own.items() if k not in ("dim", "alpha")})
        meta = {"ss_network_module": "lycoris.kohya", "ss_network_args": json.dumps(args)}
        if dim is not None:
            meta["ss_network_dim"] = str(dim)
        if alpha is not None:
            meta["ss_network_alpha"] = str(alpha)
        return meta


TRAINERS: Registry[TrainerSpec] = Registry("trainer", "t2ibench.trainers")


def register_trainer(spec: TrainerSpec, *, overwrite: bool = False) -> TrainerSpec:
    """Add a trainer under ``spec.name``."""
    if not isinstance(spec, TrainerSpec):
        raise TypeError("register_trainer expects a TrainerSpec")
    TRAINERS.register(spec.name, spec, overwrite=overwrite)
    return spec


def get_trainer(name: str) -> TrainerSpec:
    """The trainer called ``name``; unknown names raise ConfigError listing the known ones."""
    try:
        return TRAINERS.get(name)
    except UnknownNameError as exc:
        raise ConfigError(str(exc)) from None


def list_trainers() -> list[str]:
    return TRAINERS.names()


def load_trainer_config(
    trainer: str,
    path: Path | str | None = None,
    overrides: Sequence[str] = (),
) -> TrainerConfig:
    """The trainer's default config, updated from a TOML file and then ``key=value`` overrides
    (the trainer's own keys included)."""
    spec = get_trainer(trainer)
    sources: list[tuple[str, Mapping[str, Any]]] = []
    if path is not None:
        data = read_trainer_toml(Path(path))
        if data.get("trainer", trainer) != trainer:
            raise ConfigError(
                f"{path}: field 'trainer' is {data['trainer']!r} but the trainer asked for is "
                f"{trainer!r}"
            )
        sources.append((str(path), data))
    for item in overrides:
        key, value = parse_override(item)
        sources.append((f"--set {item}", {key: value}))
    return spec.config(sources)


def config_from_dict(data: Mapping[str, Any], where: str = "trainer config") -> TrainerConfig:
    """A config from a plain dict (e.g. a checkpoint's metadata), checked like a file."""
    return get_trainer(data.get("trainer", "lora")).config([(where, data)])


def module_class_for(suffixes: set[str], stem: str = "") -> type[AdapterModule] | None:
    """The registered module class a saved layer's key suffixes belong to: the longest signature
    that the layer holds entirely, over every registered trainer (``stem``: unused here, see
    :func:`module_class_for_file`)."""
    best: tuple[int, type[AdapterModule] | None] = (0, None)
    for name in TRAINERS.names():
        cls = TRAINERS.get(name).module_class
        for signature in getattr(cls, "signatures", ()):
            if len(signature) > best[0] and set(signature) <= suffixes:
                best = (len(signature), cls)
    return best[1]


def peft_configs_of(meta: Mapping[str, str]) -> dict[str, dict]:
    """model part (``unet`` / ``te``; ``*``: every part) → the PEFT config a file was written
    with: a PEFT folder's ``adapter_config.json`` (``peft_config_<part>``), diffusers'
    ``lora_adapter_metadata``, or the config of the t2ibench ``peft-*`` trainer that wrote it."""
    out: dict[str, dict] = {}
    for part in ("unet", "te"):
        raw = meta.get(f"peft_config_{part}")
        if raw:
            try:
                out[part] = json.loads(raw)
            except json.JSONDecodeError:
                pass
    if not out and meta.get("lora_adapter_metadata"):
        from .peft_keys import configs_from_metadata as _configs_from_metadata

        out.update(_configs_from_metadata(meta))
    raw = meta.get("t2ibench_trainer_config")
    if not out and raw:
        try:
            data = json.loads(raw)
            cfg = get_trainer(data.get("trainer", "")).config([("file metadata", data)])
        except (json.JSONDecodeError, ConfigError, AttributeError):
            return out
        if hasattr(cfg, "peft_config_json"):
            out["*"] = json.loads(cfg.peft_config_json())
    return out


def module_class_for_file(meta: Mapping[str, str]):
    """:func:`module_class_for` for one file: layers of a PEFT-written file (a PEFT config in its
    metadata, see :func:`peft_configs_of`) whose tensors PEFT's layers hold are read by PEFT's
    own layer (``PeftModule`` bound to the config); every other layer as before."""
    configs = peft_configs_of(meta)
    if not configs:
        return module_class_for
    from .peft_wrap import PeftModule, peft_type_of

    def detect(suffixes: set[str], stem: str = "") -> type[AdapterModule] | None:  # noqa: C901
        part = "te" if stem.startswith("lora_te") else "unet"  # lora_te_, lora_te1_, lora_te2_
        config = configs.get(part) or configs.get("*")
        own = module_class_for(suffixes)
        kind = peft_type_of(set(suffixes))
        if config is None or kind is None or kind != str(config.get("peft_type", "")).upper():
            return own
        if kind in ("LOHA", "LOKR", "LORA") and "alpha" in suffixes and own is not PeftModule:
            return own  # converted to kohya tensors with alpha (foreign): t2ibench's module
        if kind == "LORA" and not config.get("use_dora") and own is not PeftModule:
            return own
        return PeftModule.bind(config)

    return detect
