"""Adapter sizes on the real SD1.5 architecture, built on the ``meta`` device (no weights).

``params`` is the number of saved elements (trainable tensors plus one ``alpha`` per module, as in
PROTOCOL's table); ``bytes`` is the exact size of the fp16 safetensors file without metadata
(8-byte length + JSON header padded to 8 + data), the same number ``ls -l`` shows for a file saved
with no ``__metadata__``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

MIB = 1024 * 1024


def safetensors_size(
    shapes: Mapping[str, Sequence[int]],
    *,
    itemsize: int = 2,
    dtype: str = "F16",
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Bytes of the safetensors file holding tensors of these shapes (one dtype).

    Mirrors the library's writer: tensors sorted by name, compact JSON header, header padded with
    spaces to a multiple of 8.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name in sorted(shapes):
        n = 1
        for s in shapes[name]:
            n *= int(s)
        header[name] = {
            "dtype": dtype,
            "shape": [int(s) for s in shapes[name]],
            "data_offsets": [offset, offset + n * itemsize],
        }
        offset += n * itemsize
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return 8 + len(text) + offset


@lru_cache(maxsize=1)
def _sd15_meta() -> tuple[Any, Any]:
    from t2ibench.models.sd15 import build_sd15

    return build_sd15("meta")


# -- other bases, built on the meta device from their published configs ------------------------

#: stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (the keys that shape the weights)
SDXL_UNET = dict(
    sample_size=128,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280),
    layers_per_block=2,
    transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048,
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
    norm_num_groups=32,
)
#: its text_encoder_2/config.json (OpenCLIP ViT-bigG/14 text tower)
SDXL_TE2 = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    projection_dim=1280,
    hidden_act="gelu",
    max_position_embeddings=77,
    vocab_size=49408,
)
#: black-forest-labs/FLUX.1-dev transformer/config.json
FLUX1_TRANSFORMER = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)
#: stabilityai/stable-diffusion-3.5-large transformer/config.json (MMDiT, 38 joint blocks)
SD35_LARGE_TRANSFORMER = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    num_layers=38,
    attention_head_dim=64,
    num_attention_heads=38,
    joint_attention_dim=4096,
    caption_projection_dim=2432,
    pooled_projection_dim=2048,
    out_channels=16,
    pos_embed_max_size=192,
    qk_norm="rms_norm",
)
#: FLUX.2 [klein] 4B's transformer (5 double-stream, 20 single-stream blocks, 24 heads of 128,
#: Qwen3-4B's layers 9/18/27 side by side: 3 × 2560 text width), as independent implementations
#: state it (flux2.c's README: 5 double + 20 single blocks; mflux: 128 latent channels; mlx-flux2:
#: text layers 9, 18, 27); BFL's own transformer/config.json could not be read offline.
FLUX2_KLEIN_4B_TRANSFORMER = dict(
    patch_size=1,
    in_channels=128,
    num_layers=5,
    num_single_layers=20,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=7680,
    timestep_guidance_channels=256,
    mlp_ratio=3.0,
    axes_dims_rope=(32, 32, 32, 32),
    rope_theta=2000,
    guidance_embeds=False,
)
SIZE_BASES = ("sd15", "sdxl", "sd3", "flux", "flux2-klein")


@lru_cache(maxsize=1)
def _sdxl_meta() -> tuple[Any, Any, Any]:
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from t2ibench.models.sd15 import TEXT_ENCODER

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET)
        te1 = CLIPTextModel(CLIPTextConfig.from_dict(TEXT_ENCODER))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**SDXL_TE2))
    return unet, te1, te2


@lru_cache(maxsize=1)
def _flux_meta() -> Any:
    import torch
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        return FluxTransformer2DModel(**FLUX1_TRANSFORMER)


@lru_cache(maxsize=1)
def _sd3_meta() -> tuple[Any, Any, Any]:
    """SD3.5 Large's transformer, CLIP-L and bigG (both with projection, as SD3 loads them)."""
    import torch
    from diffusers import SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from t2ibench.models.sd15 import TEXT_ENCODER

    with torch.device("meta"):
        transformer = SD3Transformer2DModel(**SD35_LARGE_TRANSFORMER)
        te1 = CLIPTextModelWithProjection(CLIPTextConfig.from_dict(TEXT_ENCODER))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**SDXL_TE2))
    return transformer, te1, te2


@lru_cache(maxsize=1)
def _flux2_meta() -> Any:
    import torch
    from diffusers import Flux2Transformer2DModel

    with torch.device("meta"):
        return Flux2Transformer2DModel(**FLUX2_KLEIN_4B_TRANSFORMER)


def _geometry(part: str, layer: Any) -> tuple:
    """What an adapter module's saved shapes can depend on: the part (its own preset and rank
    options) and the layer's class and geometry, never its place in the model."""
    conv = tuple(
        getattr(layer, k, None) for k in ("kernel_size", "stride", "padding", "dilation", "groups")
    )
    return (part, type(layer), tuple(layer.weight.shape), layer.bias is not None, conv)


def layer_shapes(
    spec: Any, cfg: Any, layers: Sequence[tuple[str, Any]], *, memo: bool = True
) -> dict[str, tuple[int, ...]]:
    """Saved-tensor shapes of ``spec``'s module on each ``(kohya stem, layer)``. ``memo``: one
    module built per layer geometry (FLUX.1's 57 blocks are a handful of shapes; a DoRA module
    copies its full-size weight when built, 20 s for FLUX's layers on the meta device's CPU
    stand-in, 1 s this way), the shapes reused under every stem of that geometry."""
    built: dict[tuple, dict[str, tuple[int, ...]] | None] = {}
    out: dict[str, tuple[int, ...]] = {}
    for stem, layer in layers:
        key = _geometry(stem.split("_")[1], layer) if memo else (stem,)
        if key not in built:
            m = spec.create_module(stem, layer, cfg)
            built[key] = (
                None if m is None else {k: tuple(t.shape) for k, t in m.state_items().items()}
            )
        for suffix, shape in (built[key] or {}).items():
            out[f"{stem}.{suffix}"] = shape
    return out


def _base_shapes(
    base: str, trainer: str, values: dict[str, Any], *, memo: bool = True
) -> dict[str, tuple[int, ...]]:
    """Saved-tensor shapes on SDXL (UNet + both text encoders: kohya's ``lora_te1_`` /
    ``lora_te2_``), SD3.5 Large (transformer + CLIP-L and bigG as ``lora_te1_`` / ``lora_te2_``;
    T5 never), FLUX.1-dev and FLUX.2 [klein] 4B (the transformer alone, as their LoRAs train it;
    Qwen3 and T5 never). ``memo``: see :func:`layer_shapes`."""
    import re

    import torch

    from t2ibench.errors import ConfigError

    from .presets import kohya_name, select_modules
    from .registry import get_trainer

    spec = get_trainer(trainer)
    cfg = spec.config([("adapter size", values)])

    def renamed(shapes: dict, prefix: str) -> dict:  # lora_te_ → kohya's lora_te1_ / lora_te2_
        return {k.replace("lora_te_", prefix, 1): v for k, v in shapes.items()}

    def preset_layers(part: str, model: Any) -> list[tuple[str, Any]]:
        """The SD1.5 / UNet rules' layers of ``model`` for ``part`` (SDXL's UNet and CLIPs)."""
        return [
            (kohya_name(part, name), layer)
            for name, layer in select_modules(model, part, cfg.presets()[part])
        ]

    def arch_layers(arch_name: str, model: Any, part: str = "unet") -> list[tuple[str, Any]]:
        """The layers of ``model`` the base plug-in's preset names for ``part``
        (``t2ibench/bases/<base>.py``)."""
        from t2ibench.architectures import get_architecture

        arch = get_architecture(arch_name)
        preset = cfg.presets()["unet" if part == "unet" else "te"]
        if preset not in arch.presets:
            raise ConfigError(f"preset {preset!r} has no {arch.title} layers")
        patterns = arch.preset_patterns(preset, part)
        if not patterns:
            return []
        rx = re.compile("|".join(f"(?:{p})" for p in patterns))
        return [
            (kohya_name("unet" if part == "unet" else "te", name), layer)
            for name, layer in model.named_modules()
            if isinstance(layer, torch.nn.Linear | torch.nn.Conv2d) and rx.fullmatch(name)
        ]

    def shapes(layers: list[tuple[str, Any]]) -> dict:
        return layer_shapes(spec, cfg, layers, memo=memo)

    with torch.device("meta"):  # adapters a library builds with its own factory calls, too
        if base == "sdxl":
            unet, te1, te2 = _sdxl_meta()
            out = shapes(preset_layers("unet", unet))
            if cfg.train_text_encoder:
                out.update(renamed(shapes(preset_layers("te", te1)), "lora_te1_"))
                out.update(renamed(shapes(preset_layers("te", te2)), "lora_te2_"))
            return out
        if base == "sd3":
            transformer, te1, te2 = _sd3_meta()
            out = shapes(arch_layers("sd3", transformer))
            if cfg.train_text_encoder:  # CLIP-L and bigG (T5 is never adapted)
                out.update(renamed(shapes(arch_layers("sd3", te1, "te1")), "lora_te1_"))
                out.update(renamed(shapes(arch_layers("sd3", te2, "te2")), "lora_te2_"))
            return out
        if base in ("flux", "flux2-klein"):  # the transformer alone, as their LoRAs train it
            return shapes(arch_layers(base, _flux_meta() if base == "flux" else _flux2_meta()))
    raise ConfigError(f"base {base!r}: sizes are known for {', '.join(SIZE_BASES)}")


def network_shapes(
    trainer: str,
    *,
    parts: Mapping[str, Any] | None = None,
    preset: str | None = None,
    unet_preset: str | None = None,
    te_preset: str | None = None,
    **params: Any,
) -> dict[str, tuple[int, ...]]:
    """Saved-tensor shapes of ``trainer`` with the given preset and algorithm parameters.

    ``parts`` defaults to SD1.5 (UNet + text encoder) on the meta device.
    """
    from .registry import get_trainer

    values = {k: v for k, v in params.items() if v is not None}
    for key, val in (("preset", preset), ("unet_preset", unet_preset), ("te_preset", te_preset)):
        if val is not None:
            values[key] = val
    spec = get_trainer(trainer)
    cfg = spec.config([("adapter size", values)])
    if parts is None:
        unet, te = _sd15_meta()
        parts = {"unet": unet, "te": te if cfg.train_text_encoder else None}
    net = spec.build_network(parts, cfg)
    return {
        f"{m.lora_name}.{suffix}": tuple(t.shape)
        for m in net
        for suffix, t in m.state_items().items()
    }


def adapter_size(
    trainer: str, preset: str | None = None, *, base: str = "sd15", **params: Any
) -> dict[str, Any]:
    """``{"params", "bytes", "mib", "modules"}`` of an fp16 adapter file for ``base`` (SD1.5;
    ``sdxl``, ``sd3``, ``flux``, ``flux2-klein``: see :data:`SIZE_BASES`).

    ``params`` are config fields (dim, alpha, factor, conv_dim, ...); unset ones keep the
    trainer's paper defaults.
    """
    if base == "sd15":
        shapes = network_shapes(trainer, preset=preset, **params)
    else:
        values = {k: v for k, v in params.items() if v is not None}
        if preset is not None:
            values["preset"] = preset
        shapes = _base_shapes(base, trainer, values)
    n = 0
    for shape in shapes.values():
        c = 1
        for s in shape:
            c *= s
        n += c
    size = safetensors_size(shapes)
    modules = len({k.split(".")[0] for k in shapes})
    return {"params": n, "bytes": size, "mib": size / MIB, "modules": modules}


def checkpoint_columns(path: Any) -> dict[str, int]:
    """``adapter_params`` (saved elements, as in the size table) and ``adapter_bytes`` (the file's
    size) of a checkpoint file, for its results rows; ``{}`` for a folder (a full diffusers
    checkpoint) or an unreadable file. Reads the safetensors header only."""
    from pathlib import Path

    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            n = 0
            for key in f.keys():
                c = 1
                for s in f.get_slice(key).get_shape():
                    c *= int(s)
                n += c
    except (SafetensorError, OSError, ValueError):
        return {}
    return {"adapter_params": n, "adapter_bytes": path.stat().st_size}
