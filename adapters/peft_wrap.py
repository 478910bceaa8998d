"""An adapter module that *is* a PEFT tuner layer: PEFT builds it (its tuner's own dispatch, init
and config semantics), computes it (the layer's forward), names its saved tensors
(``get_peft_model_state_dict``), loads them (``set_peft_model_state_dict``) and merges it
(``merge``). Nothing of a tuner's math is restated here.

PEFT replaces a model's layers in place; t2ibench routes a layer through its adapter instead and
never edits the model. So each adapted layer gets its own one-layer holder model: a *twin* of the
base layer (a shallow copy sharing the very weight and bias tensors, with the class forward) is
put in the holder, and PEFT's tuner injects its layer there (``target_modules=["layer"]``). The
tuner layer's children other than the base layer (its ``lora_A`` / ``oft_R`` / ... containers)
are registered on this module, so they are its trainable, saved, movable parameters.

Saved tensors: PEFT's keys for the layer, without PEFT's module path, under the kohya stem
(``lora_unet_<path>.lora_A.weight``, ``.lora_magnitude_vector``, ``.oft_R.weight``, ``.boft_R``,
``.hra_u``, ``.ia3_l``, ``.vera_lambda_b``); VeRA also saves the slices of its frozen random
projections the layer uses (``vera_A`` / ``vera_B``), so a file is complete on its own.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, ClassVar

import torch
import torch.nn as nn

from t2ibench.errors import ConfigError

from .algorithms import AdapterModule

HOLDER_PREFIX = "layer."

#: PEFT types read by these modules, and the key suffixes their layers save (with the
#: ``.weight`` of modules); LoHa / LoKr / plain LoRA files PEFT writes are also read by
#: t2ibench's own modules (see ``foreign``), files of the ``peft-*`` trainers by these
PEFT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "LORA": ("lora_A.weight", "lora_B.weight", "lora_magnitude_vector", "lora_B.bias"),
    "LOHA": ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"),
    "LOKR": ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"),
    "OFT": ("oft_R.weight", "oft_R.bias"),
    "BOFT": ("boft_R", "boft_s"),
    "HRA": ("hra_u",),
    "IA3": ("ia3_l",),
    "VERA": ("vera_lambda_b", "vera_lambda_d", "vera_A", "vera_B"),
}
#: the saved layers only a PEFT layer reads (the others read as kohya LoRA / LoHa / LoKr)
PEFT_SIGNATURES: tuple[tuple[str, ...], ...] = (
    ("lora_A.weight",),
    ("oft_R.weight",),
    ("boft_R",),
    ("hra_u",),
    ("ia3_l",),
    ("vera_lambda_b",),
)


def peft_type_of(suffixes: set[str]) -> str | None:
    """The PEFT type whose layers save these key suffixes."""
    for peft_type, known in PEFT_SUFFIXES.items():
        if suffixes and suffixes <= set(known) | {"alpha"} and suffixes & set(known):
            return peft_type
    return None


def twin_of(layer: nn.Module) -> nn.Module:
    """A shallow copy of ``layer`` that shares its parameters (the same tensors: training and
    merging see one weight) and uses the class forward (never a forward t2ibench put on it)."""
    twin = copy.copy(layer)
    twin.__dict__.pop("forward", None)
    return twin


def peft_config_from_dict(data: Mapping[str, Any]) -> Any:
    """A PEFT config object from its JSON form (``adapter_config.json``), through PEFT."""
    from peft import PeftConfig

    data = dict(data)
    if "peft_type" not in data:
        raise ConfigError("a PEFT config without 'peft_type'")
    return PeftConfig.from_peft_type(**data)


def _layer_config(config_json: str, overrides: tuple[tuple[str, Any], ...]) -> Any:
    data = json.loads(config_json)
    for key in ("rank_pattern", "alpha_pattern"):
        data.pop(key, None)
    data.update(dict(overrides))
    data["target_modules"] = ["layer"]
    data.pop("exclude_modules", None)
    data.pop("layers_to_transform", None)
    data.pop("layers_pattern", None)
    data.pop("modules_to_save", None)
    data["inference_mode"] = False
    if data.get("peft_type") == "VERA":
        data["save_projection"] = False  # the layer's slices are saved by PeftModule itself
    if data.get("peft_type") == "IA3":
        # the base layer is a feed-forward output (scale its input) as in the source config
        data["feedforward_modules"] = ["layer"] if data.pop("_feedforward", False) else []
    return peft_config_from_dict(data)


class PeftModule(AdapterModule):
    """One layer's PEFT tuner layer (see the module docstring)."""

    algo: ClassVar[str] = "peft"
    keys: ClassVar[dict[str, str]] = {s: s for suffixes in PEFT_SUFFIXES.values() for s in suffixes}
    signatures: ClassVar[tuple[tuple[str, ...], ...]] = PEFT_SIGNATURES
    #: the PEFT config (JSON) files read with this class were written with; set by :meth:`bind`
    config_json: ClassVar[str] = ""

    def __init__(self, lora_name: str, org: nn.Module, config: Any) -> None:
        from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
        from peft.tuners.tuners_utils import BaseTunerLayer

        super().__init__(lora_name, org)
        holder = nn.Module()
        holder.layer = twin_of(org)
        tuner_cls = PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type]
        try:
            tuner = tuner_cls(holder, config, adapter_name="default")
        except (ValueError, TypeError, RuntimeError) as exc:
            raise ConfigError(f"{lora_name}: PEFT cannot adapt this layer ({exc})") from None
        layer = holder.layer
        if not isinstance(layer, BaseTunerLayer):
            raise ConfigError(f"{lora_name}: PEFT left the layer unadapted")
        self._peft = [tuner, holder, layer]  # a list: not submodules (the base is not ours)
        self.peft_type = str(config.peft_type.value)
        self.algo = "peft-" + self.peft_type.lower()
        for name, child in layer.named_children():
            if name != "base_layer":
                self.add_module(f"peft_{name}", child)

    @property
    def holder(self) -> nn.Module:
        return self._peft[1]

    @property
    def peft_layer(self) -> nn.Module:
        return self._peft[2]

    # -- math ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.peft_layer(x)
        if self.multiplier == 1.0:
            return out
        base = self.peft_layer.get_base_layer()(x)
        return base + self.multiplier * (out - base)  # the multiplier scales the change

    @torch.no_grad()
    def _merged(self) -> nn.Module:
        """PEFT's own merge, on a copy (the base weight and bias cloned)."""
        layer = copy.deepcopy(self.peft_layer)
        layer.merge(adapter_names=["default"])
        return layer.get_base_layer()

    def delta_weight(self) -> torch.Tensor:
        merged = self._merged().weight.float()
        return (merged - self.org.weight.float()).reshape(self.weight_shape)

    def delta_bias(self) -> torch.Tensor | None:
        bias = self._merged().bias  # IA3 scales the bias too; LoRA's lora_bias adds one
        if bias is None:
            return None
        base = self.org.bias
        delta = bias.float() - (0 if base is None else base.float())
        return None if not bool(delta.abs().max() > 0) else delta

    # -- files -------------------------------------------------------------------------------
    def state_items(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(
            self.holder, state_dict=self.holder.state_dict(keep_vars=True)
        )
        out = {k.removeprefix(HOLDER_PREFIX): v for k, v in state.items()}
        if self.peft_type == "VERA":  # the projection slices this layer uses (see docstring)
            layer = self.peft_layer
            out["vera_A"] = layer.vera_A["default"][:, : layer.in_features]
            out["vera_B"] = layer.vera_B["default"][: layer.out_features, :]
        return out

    def load_state_items(self, tensors: Mapping[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        tensors = dict(tensors)
        tensors.pop("alpha", None)
        if self.peft_type == "VERA":
            with torch.no_grad():
                for key in ("vera_A", "vera_B"):
                    if key in tensors:
                        buf = getattr(self.peft_layer, key)["default"]
                        t = tensors.pop(key).to(buf.dtype)
                        if tuple(t.shape) != tuple(buf.shape):
                            raise ValueError(f"{self.lora_name}.{key}: shape {tuple(t.shape)}")
                        buf.copy_(t)
        result = set_peft_model_state_dict(
            self.holder, {HOLDER_PREFIX + k: v.float() for k, v in tensors.items()}
        )
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if unexpected:
            raise ValueError(f"{self.lora_name}: PEFT does not read {unexpected[:3]}")

    @classmethod
    def create(cls, lora_name: str, org: nn.Module, cfg: Any) -> PeftModule | None:
        """A fresh PEFT layer from the trainer config's PEFT config."""
        config = cfg.peft_config(org)
        if config is None:
            return None
        return cls(lora_name, org, config)

    @classmethod
    def bind(cls, config: Mapping[str, Any]) -> type[PeftModule]:
        """This class reading files written with ``config`` (PEFT's config as JSON)."""
        return _bound(json.dumps(dict(config), sort_keys=True, default=str))

    @classmethod
    def from_state(
        cls, lora_name: str, org: nn.Module, tensors: Mapping[str, torch.Tensor]
    ) -> PeftModule:
        if not cls.config_json:
            raise ValueError(
                f"{lora_name}: PEFT tensors {sorted(tensors)} but no PEFT config with the file"
            )
        data = json.loads(cls.config_json)
        overrides: list[tuple[str, Any]] = []
        if "lora_A.weight" in tensors:  # the rank in the file (rank_pattern resolved)
            overrides.append(("r", int(tensors["lora_A.weight"].shape[0])))
        if data.get("peft_type") == "VERA" and "vera_A" in tensors:
            overrides.append(("r", int(tensors["vera_A"].shape[0])))
            tensors = dict(tensors)  # a file's shared projections, sliced to this layer
            tensors["vera_A"] = tensors["vera_A"][:, : org.weight.shape[1]]
            tensors["vera_B"] = tensors["vera_B"][: org.weight.shape[0], :]
        if data.get("peft_type") == "IA3":
            overrides.append(("_feedforward", _ia3_on_input(lora_name, org, tensors, data)))
        if data.get("peft_type") == "LORA" and (data.get("alpha_pattern") or {}):
            raise ValueError(f"{lora_name}: a PEFT alpha_pattern (not read for this tuner)")
        config = _layer_config(cls.config_json, tuple(overrides))
        module = cls(lora_name, org, config)
        module.load_state_items(tensors)
        return module


def _ia3_on_input(
    lora_name: str, org: nn.Module, tensors: Mapping[str, torch.Tensor], config: Mapping
) -> bool:
    """Whether PEFT's IA3 vector scales this layer's input (a ``feedforward_modules`` layer):
    its length says so, or, when in = out, the config's list (matched on the kohya stem)."""
    n_in, n_out = org.weight.shape[1], org.weight.shape[0]
    n = int(tensors["ia3_l"].numel())
    if n_in != n_out:
        return n == n_in
    feed = config.get("feedforward_modules") or []
    if isinstance(feed, str):
        import re

        return bool(re.search(feed.replace(".", "_"), lora_name))
    return any(lora_name.endswith("_" + f.replace(".", "_")) for f in feed)


@lru_cache(maxsize=64)
def _bound(config_json: str) -> type[PeftModule]:
    return type("BoundPeftModule", (PeftModule,), {"config_json": config_json})


# --- PEFT-written files whose layers only PEFT reads ------------------------------------------------

#: PEFT types read through :class:`PeftModule` (LoRA only with DoRA; plain LoRA, LoHa and LoKr
#: convert to t2ibench's kohya modules, see ``foreign``)
PEFT_LAYER_TYPES = ("OFT", "BOFT", "HRA", "IA3", "VERA")


def needs_peft_layers(configs: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether a PEFT file's layers are read by PEFT's own layers (DoRA, OFT, BOFT, HRA, IA3,
    VeRA), not converted to kohya tensors."""
    return any(
        c.get("use_dora") or str(c.get("peft_type", "")).upper() in PEFT_LAYER_TYPES
        for c in configs.values()
    )


def _split_suffix(key: str) -> tuple[str, str] | None:
    """``(module path, PEFT suffix)`` of a PEFT key without its prefix."""
    for suffix in sorted({s for v in PEFT_SUFFIXES.values() for s in v}, key=len, reverse=True):
        if key.endswith("." + suffix):
            return key[: -len(suffix) - 1], suffix
    return None


def peft_tensors_to_kohya(
    tensors: Mapping[str, torch.Tensor],
    configs: Mapping[str, Mapping[str, Any]],
    where: object,
    *,
    default_part: str | None = None,
) -> dict[str, torch.Tensor]:
    """A PEFT state dict (``base_model.model.<path>.<suffix>``, diffusers' ``unet.<path>...``)
    under kohya stems with PEFT's suffixes kept, for :class:`PeftModule`. VeRA's shared
    projections (``base_model.vera_A`` / ``vera_B``) go with every VeRA layer (sliced to the layer
    when it is built)."""
    from .errors import AdapterFileError
    from .peft_keys import DIFFUSERS_PARTS as _DIFFUSERS_PARTS
    from .peft_keys import PEFT_PREFIX as _PEFT_PREFIX
    from .peft_keys import part_of as _part_of
    from .presets import kohya_name

    shared: dict[str, torch.Tensor] = {}
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        part = default_part
        for prefix, p in _DIFFUSERS_PARTS.items():
            if key.startswith(prefix):
                key, part = key[len(prefix) :], p
                break
        else:
            key = key.removeprefix(_PEFT_PREFIX)
        bare = key.removeprefix("base_model.")
        if bare in ("vera_A", "vera_B"):
            shared[bare] = value
            continue
        split = _split_suffix(key)
        if split is None:
            raise AdapterFileError(f"{where}: key {key!r} is no PEFT tensor t2ibench reads")
        path, suffix = split
        out[f"{kohya_name(part or _part_of(path), path)}.{suffix}"] = value
    if shared:
        stems = {k.partition(".")[0] for k in out if k.endswith(".vera_lambda_b")}
        for stem in stems:
            for name, value in shared.items():
                out[f"{stem}.{name}"] = value
    return out
