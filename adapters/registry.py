"""The trainer registry: built-ins ``lora``, ``loha``, ``lokr``, ``native``; third parties plug in
through the ``t2ibench.trainers`` entry-point group (an entry point names a :class:`TrainerSpec`
or a module that calls :func:`register_trainer` on import)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from t2ibench.registry import Registry

from .algorithms import AdapterModule
from .config import TrainerConfig
from .network import AdapterNetwork

ModuleFactory = Callable[[str, nn.Module, TrainerConfig], "AdapterModule | None"]


@dataclass(frozen=True)
class TrainerSpec:
    """A trainer: its config defaults and how it puts trainable modules on a layer.

    ``algo`` names a built-in algorithm (lora / loha / lokr / native); a third-party trainer
    gives ``module_factory`` instead: ``(kohya_name, layer, config) -> AdapterModule | None``.
    """

    name: str
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    algo: str | None = None
    module_factory: ModuleFactory | None = None
    config_class: type[TrainerConfig] = TrainerConfig

    def build_network(self, parts: Mapping[str, nn.Module], cfg: TrainerConfig) -> AdapterNetwork:
        """Fresh adapters on the layers the config's presets select."""
        if self.module_factory is None:
            return AdapterNetwork.create(
                self.algo or self.name, parts, cfg.presets(), cfg.algo_params()
            )
        from .presets import kohya_name, select_modules

        modules = []
        presets = cfg.presets()
        for part, model in parts.items():
            if model is None:
                continue
            for name, layer in select_modules(model, part, presets[part]):
                m = self.module_factory(kohya_name(part, name), layer, cfg)
                if m is not None:
                    modules.append(m)
        return AdapterNetwork(modules)


TRAINERS: Registry[TrainerSpec] = Registry("trainer", "t2ibench.trainers")


def register_trainer(spec: TrainerSpec, *, overwrite: bool = False) -> TrainerSpec:
    """Add a trainer under ``spec.name``."""
    if not isinstance(spec, TrainerSpec):
        raise TypeError("register_trainer expects a TrainerSpec")
    TRAINERS.register(spec.name, spec, overwrite=overwrite)
    return spec


def get_trainer(name: str) -> TrainerSpec:
    """The trainer called ``name``; unknown names raise ConfigError listing the known ones."""
    from t2ibench.errors import ConfigError
    from t2ibench.registry import UnknownNameError

    try:
        return TRAINERS.get(name)
    except UnknownNameError as exc:
        raise ConfigError(str(exc)) from None


def list_trainers() -> list[str]:
    return TRAINERS.names()


# PROTOCOL "Training": the paper's defaults per algorithm.
register_trainer(
    TrainerSpec(
        "lora",
        "LoRA (LoCon on convolutions), dim 8 alpha 4",
        algo="lora",
        defaults={"dim": 8, "alpha": 4.0, "lr": 5e-4},
    )
)
register_trainer(
    TrainerSpec(
        "loha",
        "LoHa (Hadamard product of two low-rank pairs), dim 4 alpha 2",
        algo="loha",
        defaults={"dim": 4, "alpha": 2.0, "lr": 5e-4},
    )
)
register_trainer(
    TrainerSpec(
        "lokr",
        "LoKr (Kronecker product), factor 8 with a full second block",
        algo="lokr",
        defaults={"dim": 10000, "alpha": 1.0, "factor": 8, "lr": 5e-4},
    )
)
register_trainer(
    TrainerSpec(
        "native",
        "native fine-tuning of the selected layers (weights and biases)",
        algo="native",
        defaults={"lr": 1e-6},
    )
)
