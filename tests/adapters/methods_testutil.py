"""Tiny denoisers of three architecture classes (random weights, built from configs) and helpers
for the method-parity tests: SD1.5-class and SDXL-class UNets, a FLUX-class transformer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import torch
import torch.nn as nn


def sd15_unet() -> nn.Module:
    from diffusers import UNet2DConditionModel

    from t2ibench.models.tiny import _unet_config

    return UNet2DConditionModel(**_unet_config(64))


def sdxl_unet() -> nn.Module:
    """SDXL's UNet class at tiny width: no attention in the first block, linear projections,
    more transformer layers deeper, and the ``text_time`` addition embedding (pooled text +
    size/crop ids) that SD1.5 lacks."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4),
        cross_attention_dim=24,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=4 * 6 + 16,
        norm_num_groups=8,
    )


def flux_transformer() -> nn.Module:
    """FLUX.1's transformer class at tiny width: one double-stream (joint text-image attention)
    and one single-stream block; every adaptable layer is a Linear."""
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        pooled_projection_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(2, 2, 4),
    )


ARCHS = {"sd15": sd15_unet, "sdxl": sdxl_unet, "flux": flux_transformer}
_T = "down_blocks.0.attentions.0.transformer_blocks.0."
_X = "down_blocks.1.attentions.0.transformer_blocks.1."
#: the layers the parity tests adapt in each class: every layer kind (self / cross attention,
#: feed-forward, 1×1 and k×k convolutions, strided, time and addition embeddings, FLUX's joint
#: attention context projections and modulation), a few of each, so a case stays fast
TEST_LAYERS = {
    "sd15": [
        _T + "attn1.to_q",
        _T + "attn2.to_k",
        _T + "attn1.to_out.0",
        _T + "ff.net.0.proj",
        "down_blocks.0.attentions.0.proj_in",
        "down_blocks.0.resnets.0.conv1",
        "down_blocks.0.resnets.0.time_emb_proj",
        "down_blocks.0.downsamplers.0.conv",
        "up_blocks.1.resnets.0.conv_shortcut",
    ],
    "sdxl": [
        _X + "attn1.to_k",
        _X + "attn2.to_v",
        _X + "ff.net.2",
        "down_blocks.1.attentions.0.proj_in",
        "add_embedding.linear_1",
        "down_blocks.0.resnets.0.conv2",
        "up_blocks.1.resnets.0.conv_shortcut",
    ],
    "flux": [
        "transformer_blocks.0.attn.to_q",
        "transformer_blocks.0.attn.add_k_proj",
        "transformer_blocks.0.attn.to_add_out",
        "transformer_blocks.0.ff.net.2",
        "transformer_blocks.0.norm1.linear",
        "single_transformer_blocks.0.proj_mlp",
        "single_transformer_blocks.0.proj_out",
        "context_embedder",
    ],
}


#: the attributes of each class's diffusers pipeline: the denoiser's, then its text encoders'
PIPE_PARTS = {
    "sd15": ("unet", "text_encoder"),
    "sdxl": ("unet", "text_encoder", "text_encoder_2"),
    "flux": ("transformer", "text_encoder", "text_encoder_2"),
}


def pipe_of(denoiser: nn.Module, arch: str = "sd15") -> SimpleNamespace:
    """What ``apply_adapter`` needs: a look-alike of ``arch``'s pipeline (its denoiser under the
    pipeline's name, no text encoders), so the base a file's keys name is the base it meets."""
    unet, *encoders = PIPE_PARTS[arch]
    return SimpleNamespace(**{unet: denoiser}, **dict.fromkeys(encoders))


def layer_input(layer: nn.Module, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if isinstance(layer, nn.Linear):
        return torch.randn(2, 3, layer.in_features, generator=g)
    return torch.randn(1, layer.in_channels, 6, 6, generator=g)


def named_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)}


@torch.no_grad()
def perturb(module: nn.Module, seed: int = 7, std: float = 0.05) -> None:
    """Move every trainable tensor off its (often zero) initial value, reproducibly."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        if not p.requires_grad:
            continue  # a frozen base weight (PEFT models hold them)
        p.add_(torch.randn(p.shape, generator=g) * std)


@contextmanager
def lycoris_preset(preset: dict) -> Iterator[None]:
    """lycoris-lora keeps its preset in class attributes: set one, restore them after."""
    from lycoris import LycorisNetwork

    keys = (
        "ENABLE_CONV",
        "TARGET_REPLACE_MODULE",
        "TARGET_REPLACE_NAME",
        "MODULE_ALGO_MAP",
        "NAME_ALGO_MAP",
        "LORA_PREFIX",
        "USE_FNMATCH",
        "TARGET_EXCLUDE_NAME",
    )
    saved = {k: getattr(LycorisNetwork, k) for k in keys}
    try:
        LycorisNetwork.apply_preset(preset)
        yield
    finally:
        for k, v in saved.items():
            setattr(LycorisNetwork, k, v)
