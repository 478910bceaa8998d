"""diffusers → original Stable Diffusion (LDM / A1111) single-file layout.

diffusers ships this direction only as a script outside the wheel; this is the same key mapping,
written for any ``layers_per_block`` and block count so it also converts the tiny base. It is the
exact inverse of diffusers' own ``convert_ldm_*_checkpoint`` used by ``from_single_file`` (tested by
a round trip), and lets users hand a fine-tuned native checkpoint to tools that want one file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from t2ibench.fsutil import atomic_write_with

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

_UNET_RESNET = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
]
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTN = [
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
]


def _unet_prefix_map(config: Any) -> list[tuple[str, str]]:
    """(diffusers module prefix, LDM module prefix) pairs, longest first."""
    n_blocks = len(config.block_out_channels)
    per = config.layers_per_block
    pairs: list[tuple[str, str]] = list(_UNET_TOP.items())
    for i in range(n_blocks):
        for j in range(per):
            ldm = f"input_blocks.{(per + 1) * i + j + 1}"
            pairs += [
                (f"down_blocks.{i}.resnets.{j}.", f"{ldm}.0."),
                (f"down_blocks.{i}.attentions.{j}.", f"{ldm}.1."),
            ]
        if i < n_blocks - 1:
            pairs.append(
                (
                    f"down_blocks.{i}.downsamplers.0.conv.",
                    f"input_blocks.{(per + 1) * (i + 1)}.0.op.",
                )
            )
    for i in range(n_blocks):
        has_attn = "CrossAttn" in config.up_block_types[i]
        for j in range(per + 1):
            ldm = f"output_blocks.{(per + 1) * i + j}"
            pairs += [
                (f"up_blocks.{i}.resnets.{j}.", f"{ldm}.0."),
                (f"up_blocks.{i}.attentions.{j}.", f"{ldm}.1."),
            ]
        if i < n_blocks - 1:
            ldm = f"output_blocks.{(per + 1) * i + per}.{2 if has_attn else 1}.conv."
            pairs.append((f"up_blocks.{i}.upsamplers.0.conv.", ldm))
    pairs += [
        ("mid_block.resnets.0.", "middle_block.0."),
        ("mid_block.attentions.0.", "middle_block.1."),
        ("mid_block.resnets.1.", "middle_block.2."),
    ]
    return sorted(pairs, key=lambda p: -len(p[0]))


def _convert_unet(state: dict, config: Any) -> dict:
    prefixes = _unet_prefix_map(config)
    out = {}
    for key, value in state.items():
        for old, new in prefixes:
            if key.startswith(old):
                rest = key[len(old) :]
                if ".resnets." in old:
                    for d, ldm in _UNET_RESNET:
                        if rest.startswith(d + "."):
                            rest = ldm + rest[len(d) :]
                            break
                out[UNET_PREFIX + new + rest] = value
                break
        else:
            raise KeyError(f"UNet key {key!r} has no original-SD equivalent")
    return out


def _convert_vae(state: dict, config: Any) -> dict:
    n_blocks = len(config.block_out_channels)
    out = {}
    for key, value in state.items():
        new = key
        for side in ("encoder", "decoder"):
            for i in range(n_blocks):
                src = f"{side}.down_blocks.{i}." if side == "encoder" else f"{side}.up_blocks.{i}."
                dst_block = i if side == "encoder" else n_blocks - 1 - i
                dst = (
                    f"{side}.down.{dst_block}." if side == "encoder" else f"{side}.up.{dst_block}."
                )
                if new.startswith(src):
                    rest = new[len(src) :]
                    rest = rest.replace("resnets.", "block.", 1)
                    rest = rest.replace("downsamplers.0.", "downsample.").replace(
                        "upsamplers.0.", "upsample."
                    )
                    new = dst + rest
            for j in (0, 1):
                new = new.replace(f"{side}.mid_block.resnets.{j}.", f"{side}.mid.block_{j + 1}.")
            if new.startswith(f"{side}.mid_block.attentions.0."):
                rest = new[len(f"{side}.mid_block.attentions.0.") :]
                for d, ldm in _VAE_ATTN:
                    if rest.startswith(d + "."):
                        rest = ldm + rest[len(d) :]
                        break
                new = f"{side}.mid.attn_1.{rest}"
                if value.ndim == 2:  # LDM keeps the attention projections as 1×1 convs
                    value = value[:, :, None, None]
            new = new.replace(f"{side}.conv_norm_out.", f"{side}.norm_out.")
        new = new.replace("conv_shortcut.", "nin_shortcut.")
        out[VAE_PREFIX + new] = value
    return out


def to_original_sd(pipe: Any) -> dict:
    """A ``StableDiffusionPipeline``'s weights as one original-SD state dict (tensors are shared)."""
    state = _convert_unet(pipe.unet.state_dict(), pipe.unet.config)
    state.update(_convert_vae(pipe.vae.state_dict(), pipe.vae.config))
    for key, value in pipe.text_encoder.state_dict().items():
        # transformers 5 dropped the ``text_model.`` level from CLIPTextModel; SD files keep it.
        key = key if key.startswith("text_model.") else "text_model." + key
        state[CLIP_PREFIX + key] = value
    return state


def save_single_file(pipe: Any, path: Path, *, dtype: Any = None) -> Path:
    """Write ``pipe`` as one original-layout ``.safetensors`` file (atomically)."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {
        k: (v if dtype is None else v.to(dtype)).contiguous()
        for k, v in to_original_sd(pipe).items()
    }
    return atomic_write_with(path, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
