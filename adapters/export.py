"""Export a t2ibench adapter for other loaders: a PEFT adapter (LoRA, LoHa, LoKr, DoRA, and
every ``peft-*`` trainer's checkpoint but VeRA's).

diffusers' ``load_lora_weights`` reads plain kohya LoRA files only (LoHa, LoKr, native and
LoRA-Tucker raise); peft has LoHa / LoKr layers with the same tensors as LyCORIS, so
``t2ibench export --format peft`` writes one PEFT adapter folder per model part::

    OUT/unet/{adapter_config.json, adapter_model.safetensors}
    OUT/text_encoder/{adapter_config.json, adapter_model.safetensors}   # if the file adapts it

loaded with ``PeftModel.from_pretrained(pipe.unet, "OUT/unet")``. The export builds the peft
adapter on the real base (so peft itself checks every shape), copies the tensors in and lets peft
save it. Each layer's rank and alpha go into ``rank_pattern`` / ``alpha_pattern`` (exact module
names), so peft's scale ``alpha / r`` equals LyCORIS's (LoKr with no low-rank block: 1).

A ``peft-*`` checkpoint already holds PEFT's own tensors and config (in its metadata): the export
builds the PEFT model from that config on the adapted layers, loads the tensors with PEFT's
``set_peft_model_state_dict`` and lets PEFT's ``save_pretrained`` write the folder. ``peft-vera``
is refused: it draws one projection per layer, PEFT's VeRA shares one across the model.
``dora`` / ``lycoris-dora`` (LoCon with weight decomposition, norm per output channel) become
PEFT's DoRA (``use_dora``); other lycoris algorithms are refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from t2ibench.fsutil import atomic_folder

from .algorithms import AdapterModule
from .files import AdapterFileError, apply_umask, network_for
from .lycoris_wrap import LycorisModule
from .peft_wrap import PeftModule, peft_config_from_dict
from .trainers.loha import LoHaModule
from .trainers.lokr import LoKrModule
from .trainers.lora import LoRAModule
from .trainers.native import NativeModule

FORMATS = ("peft",)
PART_FOLDERS = {"unet": "unet", "te": "text_encoder"}
_PART_OF_PREFIX = {"lora_unet_": "unet", "lora_te_": "te"}


def _part(module: AdapterModule) -> str:
    for prefix, part in _PART_OF_PREFIX.items():
        if module.lora_name.startswith(prefix):
            return part
    raise AdapterFileError(f"{module.lora_name}: neither a UNet nor a text-encoder module")


def _rank_alpha(m: AdapterModule) -> tuple[int, float]:
    """peft's (r, alpha) giving this module's layout and scale (``scale = alpha / r``)."""
    if isinstance(m, LoKrModule):
        if m.lokr_t2 is not None:
            r = m.lokr_t2.shape[0]
        elif m.lokr_w1_a is not None:
            r = m.lokr_w1_a.shape[1]
        elif m.lokr_w2_a is not None:
            r = m.lokr_w2_a.shape[1]
        else:  # both blocks full: any r at least half of every side keeps them full in peft
            r = max(max(m.lokr_w1.shape), max(m.lokr_w2.shape[:2]))
        return int(r), float(m.scale) * int(r)
    return int(m.dim), float(m.scale) * int(m.dim)


def _peft_config(kind: type[AdapterModule], modules: dict[str, AdapterModule], factor: int) -> Any:
    from peft import LoHaConfig, LoKrConfig, LoraConfig

    names = sorted(modules)
    ranks = {n: _rank_alpha(m) for n, m in modules.items()}
    # full module names, escaped: peft matches a pattern key as a regex on a dotted name suffix
    rank_pattern = {re.escape(n): r for n, (r, _) in ranks.items()}
    alpha_pattern = {re.escape(n): a for n, (_, a) in ranks.items()}
    r0, a0 = ranks[names[0]]
    tucker = any(getattr(m, "tucker", False) for m in modules.values())
    common = {
        "target_modules": names,
        "r": r0,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
    }
    if kind is LoRAModule:
        return LoraConfig(lora_alpha=a0, init_lora_weights=False, **common)
    if kind is LoHaModule:
        return LoHaConfig(alpha=a0, use_effective_conv2d=tucker, init_weights=False, **common)
    decompose_both = any(m.lokr_w1_a is not None for m in modules.values())
    return LoKrConfig(
        alpha=a0,
        decompose_both=decompose_both,
        decompose_factor=factor,
        use_effective_conv2d=tucker,
        init_weights=False,
        **common,
    )


def _factor(meta: dict[str, str]) -> int:
    """LoKr's ``factor`` from the file's metadata (t2ibench's config, else sd-scripts' args)."""
    for key in ("t2ibench_trainer_config", "ss_network_args"):
        try:
            return int(json.loads(meta[key])["factor"])
        except (KeyError, ValueError, TypeError):
            continue
    return -1


def _copy_into_peft(model: torch.nn.Module, modules: dict[str, AdapterModule]) -> None:
    layers = dict(model.named_modules())
    with torch.no_grad():
        for name, m in modules.items():
            layer = layers[name]
            if isinstance(m, LoRAModule):
                pairs = {
                    "lora_A": m.lora_down,
                    "lora_B": m.lora_up,
                }
                for attr, src in pairs.items():
                    dst = getattr(layer, attr)["default"].weight
                    _set(dst, src, f"{m.lora_name}.{attr}")
            else:
                for suffix, attr in m.keys.items():
                    src = getattr(m, attr)
                    table = getattr(layer, attr, None)
                    has = table is not None and "default" in table
                    if (src is None) != (not has):
                        raise AdapterFileError(
                            f"{m.lora_name}: peft lays out the layer differently ({suffix})"
                        )
                    if src is not None:
                        _set(table["default"], src, f"{m.lora_name}.{suffix}")


def _set(dst: torch.Tensor, src: torch.Tensor, what: str) -> None:
    if tuple(dst.shape) != tuple(src.shape):
        raise AdapterFileError(
            f"{what}: shape {tuple(src.shape)} but peft expects {tuple(dst.shape)}"
        )
    dst.copy_(src.to(dst.dtype))


def _peft_model_of(
    model: torch.nn.Module,
    kind: type[PeftModule],
    modules: dict[str, AdapterModule],
    checkpoint: Path,
) -> Any:
    """The PEFT model of a ``peft-*`` checkpoint's layers in ``model`` (module name → its
    :class:`PeftModule`): the file's PEFT config on those layers, the tensors loaded by PEFT."""
    from peft import get_peft_model, set_peft_model_state_dict

    data = json.loads(kind.config_json)
    data["target_modules"] = sorted(modules)
    if data.get("peft_type") == "IA3":  # each layer as it was built: input- or output-scaling
        data["feedforward_modules"] = sorted(
            n for n, m in modules.items() if m.peft_layer.is_feedforward
        )
    peft_model = get_peft_model(model, peft_config_from_dict(data))
    state = {
        f"base_model.model.{name}.{key}": value.detach()
        for name, m in modules.items()
        for key, value in m.state_items().items()
    }
    result = set_peft_model_state_dict(peft_model, state)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [k for k in getattr(result, "missing_keys", []) or [] if "default" in k]
    if unexpected or missing:
        raise AdapterFileError(
            f"{checkpoint}: PEFT lays out these layers differently "
            f"({(unexpected or missing)[0]} {'unread' if unexpected else 'missing'})"
        )
    return peft_model


def _is_dora(m: AdapterModule) -> bool:
    """A lycoris LoCon with weight decomposition PEFT's DoRA computes the same way: the norm per
    output channel (``wd_on_out``), no Tucker core."""
    lyco = getattr(m, "lyco", None)
    return (
        type(lyco).__name__ == "LoConModule"
        and bool(getattr(lyco, "wd", False))
        and bool(getattr(lyco, "wd_on_out", False))
        and not getattr(lyco, "tucker", False)
    )


def _peft_dora_of(model: torch.nn.Module, modules: dict[str, AdapterModule]) -> Any:
    """PEFT's DoRA (``LoraConfig(use_dora=True)``) holding lycoris' DoRA: ``lora_A`` / ``lora_B``
    = lycoris' down / up, the magnitude = ``dora_scale``, ``lora_alpha / r`` = lycoris' scale."""
    from peft import LoraConfig, get_peft_model

    ranks = {n: (int(m.lyco.lora_dim), float(m.lyco.scale) * int(m.lyco.lora_dim))
             for n, m in modules.items()}  # fmt: skip
    names = sorted(modules)
    r0, a0 = ranks[names[0]]
    patterns = {}  # only where layers differ (t2ibench's reader takes no DoRA alpha_pattern)
    if len(set(ranks.values())) > 1:
        patterns = {
            "rank_pattern": {re.escape(n): r for n, (r, _) in ranks.items()},
            "alpha_pattern": {re.escape(n): a for n, (_, a) in ranks.items()},
        }
    config = LoraConfig(
        r=r0,
        lora_alpha=a0,
        use_dora=True,
        init_lora_weights=False,
        target_modules=names,
        **patterns,
    )
    peft_model = get_peft_model(model, config)
    layers = dict(peft_model.base_model.model.named_modules())
    with torch.no_grad():
        for name, m in modules.items():
            layer, saved = layers[name], m.lyco.custom_state_dict()
            _set(layer.lora_A["default"].weight, saved["lora_down.weight"], f"{name}.lora_A")
            _set(layer.lora_B["default"].weight, saved["lora_up.weight"], f"{name}.lora_B")
            magnitude = layer.lora_magnitude_vector["default"].weight
            _set(magnitude, saved["dora_scale"].reshape(magnitude.shape), f"{name}.magnitude")
    return peft_model


def export_peft(pipe: Any, checkpoint: Path | str, out_dir: Path | str) -> list[Path]:
    """Write ``checkpoint`` as PEFT adapter folders under ``out_dir`` (one per adapted part).

    ``pipe`` is the base the adapter was trained on; it is modified (peft layers are injected), so
    pass a copy you no longer need. Returns the folders written.
    """
    from peft import get_peft_model

    checkpoint = Path(checkpoint)
    out_dir = Path(out_dir)
    net, meta = network_for(pipe, checkpoint)
    kinds = {type(m) for m in net}
    if NativeModule in kinds:
        raise AdapterFileError(
            f"{checkpoint}: native fine-tuning has no peft adapter type; merge it into the base "
            "instead (t2ibench.adapters.merge_adapter, or train with native_save='diffusers')"
        )
    if any(isinstance(m, LoRAModule) and m.lora_mid is not None for m in net):
        raise AdapterFileError(
            f"{checkpoint}: LoRA with Tucker convolutions (lora_mid) has no peft equivalent; "
            "merge it into the base instead (t2ibench.adapters.merge_adapter)"
        )
    if len(kinds) != 1:
        raise AdapterFileError(f"{checkpoint}: mixes algorithms {sorted(k.algo for k in kinds)}")
    kind = kinds.pop()
    lycoris_dora = issubclass(kind, LycorisModule)
    if lycoris_dora and not all(_is_dora(m) for m in net):
        algos = sorted({m.algo for m in net if not _is_dora(m)})
        raise AdapterFileError(
            f"{checkpoint}: lycoris' {', '.join(algos)} has no PEFT adapter t2ibench writes "
            "(DoRA on LoCon with the norm per output channel, no Tucker, does); apply it with "
            "t2ibench or lycoris-lora"
        )
    peft_layers = issubclass(kind, PeftModule)
    if peft_layers and json.loads(kind.config_json or "{}").get("peft_type") == "VERA":
        raise AdapterFileError(
            f"{checkpoint}: peft-vera draws one random projection per layer, PEFT's VeRA shares "
            "one across the model, so PEFT cannot hold this adapter; apply it with t2ibench"
        )
    parts = {"unet": pipe.unet, "te": pipe.text_encoder}
    by_part: dict[str, dict[str, AdapterModule]] = {}
    for part, model in parts.items():
        names = {id(layer): name for name, layer in model.named_modules()}
        for m in net:
            if _part(m) == part:
                by_part.setdefault(part, {})[names[id(m.org)]] = m

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for part, modules in by_part.items():
        if peft_layers:
            peft_model = _peft_model_of(parts[part], kind, modules, checkpoint)
        elif lycoris_dora:
            peft_model = _peft_dora_of(parts[part], modules)
        else:
            peft_model = get_peft_model(parts[part], _peft_config(kind, modules, _factor(meta)))
            try:
                _copy_into_peft(peft_model.base_model.model, modules)
            except AdapterFileError as exc:
                if kind is LoKrModule:
                    raise AdapterFileError(
                        f"{checkpoint}: cannot be exported exactly: peft splits a small LoKr "
                        f"layer differently (its factorization lacks LyCORIS's rule dimension ≥ "
                        f"factor², which only matters for layers narrower than factor²): {exc}"
                    ) from None
                raise
        folder = out_dir / PART_FOLDERS[part]
        with atomic_folder(folder, lambda _: False) as tmp:  # replaces an older export
            peft_model.save_pretrained(str(tmp), safe_serialization=True)
            (tmp / "t2ibench_metadata.json").write_text(
                json.dumps({**meta, "t2ibench_source": checkpoint.name}, indent=1, sort_keys=True)
            )
            apply_umask(tmp)  # safetensors writes 0600 files
        written.append(folder)
    return written


def export_adapter(
    checkpoint: Path | str, out_dir: Path | str, *, base: str | Path = "tiny", fmt: str = "peft"
) -> list[Path]:
    """Load ``base`` and export ``checkpoint`` in ``fmt`` (only ``"peft"``)."""
    from t2ibench.errors import ConfigError
    from t2ibench.models import load_base

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: known formats are {', '.join(FORMATS)}")
    pipe = load_base(base)
    return export_peft(pipe, checkpoint, out_dir)


__all__ = ["FORMATS", "export_adapter", "export_peft"]
