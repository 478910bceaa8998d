"""PEFT's and diffusers' key conventions that the foreign-file reader, the registry's file
detection and the PEFT-layer wrapper all read: the state-dict prefixes, which model part a module
path belongs to, and the LoRA config diffusers writes into a file's metadata. A leaf module, so
those three import it and not each other."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

PEFT_PREFIX = "base_model.model."
# diffusers' per-model prefixes: SDXL's second encoder, and the transformer of SD3 / FLUX (its
# adapters are kohya ``lora_unet_`` keys: the denoiser, as kohya names it).
DIFFUSERS_PARTS = {
    "unet.": "unet",
    "text_encoder.": "te",
    "text_encoder_2.": "te2",
    "transformer.": "unet",
    # ai-toolkit's and ComfyUI's FLUX files: BFL's dotted module names under the original
    # model's prefix (``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight``; the base
    # maps the names, as diffusers' ``_convert_non_diffusers_flux2_lora_to_diffusers`` does)
    "diffusion_model.": "unet",
}
_TE_PATH = re.compile(r"^(text_model[._])?(encoder[._]layers|embeddings|final_layer_norm)")


def part_of(path: str) -> str:
    """``te`` for a text-encoder module path (``text_model.encoder.layers...``), else ``unet``."""
    return "te" if _TE_PATH.match(path) else "unet"


def configs_from_metadata(meta: Mapping[str, str]) -> dict[str, dict]:
    """model part (``*``: every part) → the LoRA config diffusers (≥ 0.33) writes into
    ``lora_adapter_metadata``: the config itself (``save_lora_adapter``) or its keys prefixed
    ``unet.`` / ``text_encoder.`` (a pipeline's ``save_lora_weights``)."""
    raw = meta.get("lora_adapter_metadata")
    try:
        data = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    if "r" in data or "lora_alpha" in data:
        return {"*": data}
    out: dict[str, dict] = {}
    for key, value in data.items():
        for prefix, part in DIFFUSERS_PARTS.items():
            if key.startswith(prefix):
                out.setdefault(part, {})[key[len(prefix) :]] = value
    return out
