"""Module selections (``attn-only``, ``attn-mlp``, ``full``) written on diffusers / transformers names.

lycoris-lora 4.1.3 selects modules by class name and keeps the selection in class attributes; its
built-in ``attn-only`` matches no diffusers module and ``full`` wraps ``time_embedding.linear_1``
twice. Here a preset is an explicit, stateless list of rules per model part: a module is selected
when its qualified name matches one of the part's patterns *and* it is a ``Linear`` or ``Conv2d``
(norms and embeddings never are). On SD1.5 this gives PROTOCOL's counts: attn-only UNet 128 +
TE 48, attn-mlp 192 + 72, full 282 + 72.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch.nn as nn

from t2ibench.bases.sd15 import (
    TE_ATTN,
    TE_MLP,
    UNET_ATTN,
    UNET_ATTN_MLP,
    UNET_ENDS,
    UNET_RESNET,
    UNET_SAMPLERS,
)
from t2ibench.errors import ConfigError

# ``unet`` is the denoiser of any base (a FLUX transformer too, as kohya names it); a base with
# two or three text encoders (SDXL, SD3) adapts ``te1`` / ``te2`` (/ ``te3``), kohya's
# ``lora_te1_`` / ``lora_te2_`` / ``lora_te3_``.
PARTS = ("unet", "te", "te1", "te2", "te3")
KOHYA_PREFIX = {p: "lora_" + p for p in PARTS}

# The rules are the SD-family UNet's and CLIP's module names, declared by the sd15 base plug-in
# (t2ibench/bases/sd15.py); PRESETS below are the defaults when no base passes its own.


@dataclass(frozen=True)
class Preset:
    """A named selection: regular expressions (full match) on module names, per part."""

    name: str
    unet: tuple[str, ...]
    te: tuple[str, ...]
    description: str

    def patterns(self, part: str) -> tuple[str, ...]:
        return self.unet if part == "unet" else self.te


PRESETS: dict[str, Preset] = {
    "attn-only": Preset(
        "attn-only",
        unet=(UNET_ATTN,),
        te=(TE_ATTN,),
        description="UNet self/cross attention to_q/k/v/out.0 + text-encoder self-attention",
    ),
    "attn-mlp": Preset(
        "attn-mlp",
        unet=(UNET_ATTN_MLP,),
        te=(TE_ATTN, TE_MLP),
        description="everything inside UNet Transformer2DModel (attention, GEGLU feed-forward, "
        "proj_in/out) + text-encoder attention and MLP",
    ),
    "full": Preset(
        "full",
        unet=(UNET_ATTN_MLP, UNET_RESNET, UNET_SAMPLERS, UNET_ENDS),
        te=(TE_ATTN, TE_MLP),
        description="attn-mlp + ResnetBlock2D convs and time_emb_proj, down/upsample convs, "
        "conv_in/conv_out and the time-embedding linears",
    ),
    "none": Preset("none", unet=(), te=(), description="train nothing in this part"),
}

_COMPILED: dict[tuple[str, ...], re.Pattern[str] | None] = {}


def get_preset(name: str, *, field: str = "preset") -> Preset:
    """The preset called ``name``; unknown names raise ConfigError naming the field."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"{field}: unknown preset {name!r} (known: {', '.join(sorted(PRESETS))})"
        ) from None


def _regex(preset: Preset, part: str) -> re.Pattern[str] | None:
    pats = preset.patterns(part)  # keyed by the patterns: two bases' presets share names
    if pats not in _COMPILED:
        _COMPILED[pats] = re.compile("|".join(f"(?:{p})" for p in pats)) if pats else None
    return _COMPILED[pats]


def select_modules(
    model: nn.Module, part: str, preset: str | Preset
) -> list[tuple[str, nn.Module]]:
    """The ``(qualified name, module)`` pairs of ``model`` the preset trains, in model order."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, not {part!r}")
    p = preset if isinstance(preset, Preset) else get_preset(preset)
    rx = _regex(p, part)
    if rx is None:
        return []
    return [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear | nn.Conv2d) and rx.fullmatch(name)
    ]


def kohya_name(part: str, module_name: str) -> str:
    """kohya / LyCORIS key stem: ``lora_unet_down_blocks_0_..._to_q``, ``lora_te_text_model_...``."""
    if part != "unet" and not module_name.startswith("text_model."):
        # transformers >= 5 names CLIPTextModel's layers without ``text_model.``; A1111, ComfyUI
        # and sd-scripts all expect the transformers-4 path, so the key always carries it.
        module_name = "text_model." + module_name
    return f"{KOHYA_PREFIX[part]}_{module_name}".replace(".", "_")
