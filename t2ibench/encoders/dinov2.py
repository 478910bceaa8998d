"""DINOv2 ViT-L/14 through transformers' ``Dinov2Model``.

Feature = the CLS token after the final layernorm (``pooler_output``), the same vector as
``x_norm_clstoken`` of the PyTorch-Hub model the paper used. Preprocessing: ImageNet mean/std,
bicubic (the model's own image processor); any input size works because the position embedding is
interpolated, so all four resize modes apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from t2ibench.encoders.base import (
    Encoder,
    EncoderSpec,
    load_pretrained,
    weights_source,
)

DEFAULT_WEIGHTS = "facebook/dinov2-large"
# Real geometry (patch 14, 518 px position grid), tiny widths: exercises the same interpolation path.
TINY_CONFIG: dict[str, Any] = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    mlp_ratio=2,
    patch_size=14,
    image_size=518,
)


class Dinov2Encoder(Encoder):
    kind = "image"

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixels).pooler_output


def load_model(source: str, name: str = "dinov2-l") -> tuple[torch.nn.Module, str]:
    """Load a ``Dinov2Model`` (any size) from a hub id or a local folder (``save_pretrained``
    layout); ``name`` is the encoder named in errors.

    Returns the model and its weights id (``repo@commit`` or a content hash of the local files).
    """
    from transformers import Dinov2Model

    return load_pretrained(Dinov2Model, name, source)


def build_tiny(folder: Path) -> None:
    """Write a tiny random-weight ``Dinov2Model`` (``save_pretrained``, safetensors) into ``folder``."""
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(Dinov2Config(**TINY_CONFIG)).save_pretrained(folder, safe_serialization=True)


def load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> Dinov2Encoder:
    source = weights_source(spec, weights, tiny, TINY_CONFIG, build_tiny, cache_dir)
    model, wid = load_model(source, spec.name)
    return Dinov2Encoder(spec.name, model, wid, preprocess, device, dtype, batch_size, source)


def _register() -> None:
    from t2ibench.encoders.registry import register_encoder

    register_encoder(
        EncoderSpec(
            name="dinov2-l",
            kind="image",
            default_weights=DEFAULT_WEIGHTS,
            feature_desc="(n, 1024) CLS",
            description="DINOv2 ViT-L/14 (transformers), CLS token after the final layernorm",
            family="dino",
            load=load,
            interpolation="bicubic",
            default_resize="letterbox",
        )
    )


_register()
