"""A set of adapter modules on a UNet and a text encoder: create, attach, save-keys, merge."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.nn as nn

from .algorithms import AdapterModule
from .presets import KOHYA_PREFIX, kohya_name, select_modules

#: ``(kohya_name, layer, config) -> module or None`` (None: leave the layer alone)
ModuleFactory = Callable[[str, nn.Module, Any], "AdapterModule | None"]
#: a saved layer's key suffixes (and its kohya stem) → the module class that reads them (None:
#: unknown)
Detector = Callable[[set[str], str], "type[AdapterModule] | None"]


class AdapterNetwork(nn.Module):
    """Adapter modules keyed by their kohya name (``lora_unet_...`` / ``lora_te_...``)."""

    def __init__(self, modules: Iterable[AdapterModule]) -> None:
        super().__init__()
        self.adapters: dict[str, AdapterModule] = {}
        for m in modules:
            if m.lora_name in self.adapters:
                raise ValueError(f"duplicate adapter name {m.lora_name}")
            self.adapters[m.lora_name] = m
            # Register under a dot-free name so nn.Module bookkeeping (parameters, .to) works.
            self.add_module(m.lora_name, m)
        self.attached = False

    @classmethod
    def create(
        cls,
        factory: ModuleFactory,
        parts: Mapping[str, nn.Module],
        presets: Mapping[str, str],
        cfg: Any,
    ) -> AdapterNetwork:
        """Fresh adapters on every layer each part's preset selects (``parts``: unet / te);
        ``factory`` is the trainer's module constructor (see ``TrainerSpec.create_module``)."""
        modules = []
        for part, model in parts.items():
            if model is None:
                continue
            for name, layer in select_modules(model, part, presets[part]):
                m = factory(kohya_name(part, name), layer, cfg)
                if m is not None:
                    modules.append(m)
        return cls(modules)

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, torch.Tensor], parts: Mapping[str, nn.Module], detect: Detector
    ) -> AdapterNetwork:
        """Rebuild adapters from kohya keys; every key must find its layer (else ValueError).
        ``detect`` names the module class of each layer's keys (the trainer registry's)."""
        grouped: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in state.items():
            stem, _, suffix = key.partition(".")
            if not suffix:
                raise ValueError(f"key {key!r} is not '<module>.<tensor>'")
            grouped.setdefault(stem, {})[suffix] = value
        layers = layer_index(parts)
        modules = []
        for stem, tensors in grouped.items():
            if stem not in layers:
                raise ValueError(f"{stem}: no such layer in the base model")
            algo_cls = detect(set(tensors), stem)
            if algo_cls is None:
                raise ValueError(f"{stem}: unknown tensors {sorted(tensors)}")
            modules.append(algo_cls.from_state(stem, layers[stem], tensors))
        return cls(modules)

    # ------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[AdapterModule]:
        return iter(self.adapters.values())

    def __len__(self) -> int:
        return len(self.adapters)

    def count(self, part: str) -> int:
        return sum(1 for n in self.adapters if n.startswith(KOHYA_PREFIX[part] + "_"))

    def attach(self) -> None:
        for m in self:
            m.attach()
        self.attached = True

    def detach_(self) -> None:
        for m in self:
            m.detach_()
        self.attached = False

    def set_multiplier(self, multiplier: float) -> None:
        for m in self:
            m.multiplier = float(multiplier)

    def kohya_state_dict(self) -> dict[str, torch.Tensor]:
        """Every saved tensor under ``<lora_name>.<suffix>`` (detached, on CPU)."""
        out = {}
        for m in self:
            for suffix, t in m.state_items().items():
                out[f"{m.lora_name}.{suffix}"] = t.detach().cpu()
        return out

    def load_kohya_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy tensors into existing adapters (resume); shapes and names must match."""
        expected = self.kohya_state_dict()
        missing = sorted(set(expected) - set(state))
        extra = sorted(set(state) - set(expected))
        if missing or extra:
            raise ValueError(f"adapter keys differ: missing {missing[:3]}, unexpected {extra[:3]}")
        with torch.no_grad():
            for m in self:
                m.load_state_items({s: state[f"{m.lora_name}.{s}"] for s in m.state_items()})

    def trainable(self, part: str | None = None) -> list[nn.Parameter]:
        prefix = KOHYA_PREFIX[part] + "_" if part else ""
        return [p for n, m in self.adapters.items() if n.startswith(prefix) for p in m.parameters()]

    def native_pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [pair for m in self for pair in m.base_tensors()]

    @torch.no_grad()
    def merge_into_base(self, multiplier: float = 1.0) -> None:
        """W += m·ΔW (b += m·Δb) in every adapted layer; the scale is inside ΔW, applied once."""
        for m in self:
            org = m.org
            dw = m.delta_weight().to(torch.float32)
            org.weight.copy_((org.weight.float() + multiplier * dw).to(org.weight.dtype))
            db = m.delta_bias()
            if db is not None:
                if org.bias is None:
                    org.bias = nn.Parameter((multiplier * db).to(org.weight.dtype))
                else:
                    org.bias.copy_((org.bias.float() + multiplier * db).to(org.bias.dtype))


def layer_index(parts: Mapping[str, nn.Module]) -> dict[str, nn.Module]:
    """kohya name → Linear/Conv2d layer, for every such layer of every part."""
    index = {}
    for part, model in parts.items():
        if model is None:
            continue
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Linear | nn.Conv2d):
                index[kohya_name(part, name)] = mod
    return index
