"""DINO (v1) ViT-S/16 (``facebook/dino-vits16``) through transformers' ``ViTModel``; also the loader
of ``dino-vits8``.

Feature = the CLS token of ``last_hidden_state`` (after the final layernorm), the vector DINO's own
``VisionTransformer.forward`` returns (``x = self.norm(x); return x[:, 0]``) and the DreamBooth
paper's DINO metric (Ruiz et al. 2023, §4.1: "ViT-S/16 DINO embeddings") compares. No pooler: the
hub checkpoints have none (``add_pooling_layer=False``, so nothing random is created). The position
grid is fixed (224 px), so inputs are square. Preprocessing default: ImageNet mean/std, bicubic,
centre crop of the short side resized to 224. DINO's own evaluation transform, short side 256 →
crop 224 (facebookresearch/dino eval_knn.py), is what the metric profiles that use DINO set
(``resize_size = 256`` in dreambooth.toml, customconcept101.toml, dreambench-pp.toml).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch

from t2ibench.encoders.base import (
    Encoder,
    EncoderSpec,
    load_pretrained,
    weights_source,
)


def tiny_config(patch_size: int) -> dict[str, Any]:
    """Real geometry (224 px, the model's patch size), tiny widths."""
    return dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=patch_size,
        image_size=224,
        qkv_bias=True,
    )


class DinoEncoder(Encoder):
    kind = "image"

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixels).last_hidden_state[:, 0]


def load_model(source: str, name: str = "dino-vits16") -> tuple[torch.nn.Module, str]:
    """Load a ``ViTModel`` (no pooler) from a hub id or a local ``save_pretrained`` folder."""
    from transformers import ViTModel

    return load_pretrained(ViTModel, name, source, add_pooling_layer=False)


def build_tiny(folder: Path, config: dict[str, Any]) -> None:
    """Write a tiny random-weight ``ViTModel`` (no pooler, safetensors) into ``folder``."""
    from transformers import ViTConfig, ViTModel

    model = ViTModel(ViTConfig(**config), add_pooling_layer=False)
    model.save_pretrained(folder, safe_serialization=True)


def make_load(patch_size: int):
    """The ``EncoderSpec.load`` of a DINO ViT-S with this patch size."""
    config = tiny_config(patch_size)

    def load(
        spec: EncoderSpec,
        weights: str | None,
        tiny: bool,
        preprocess: Any,
        device: Any,
        dtype: Any,
        batch_size: int,
        cache_dir: Path | None,
    ) -> DinoEncoder:
        build = partial(build_tiny, config=config)
        source = weights_source(spec, weights, tiny, config, build, cache_dir)
        model, wid = load_model(source, spec.name)
        return DinoEncoder(spec.name, model, wid, preprocess, device, dtype, batch_size, source)

    return load


def dino_spec(name: str, patch_size: int, weights: str) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        kind="image",
        default_weights=weights,
        feature_desc="(n, 384) CLS",
        description=f"DINO v1 ViT-S/{patch_size} (transformers ViTModel), CLS after the final norm",
        family="dino",
        load=make_load(patch_size),
        interpolation="bicubic",
        default_resize="center-crop",
        square_only=True,
    )


def _register() -> None:
    from t2ibench.encoders.registry import register_encoder

    register_encoder(dino_spec("dino-vits16", 16, "facebook/dino-vits16"))


_register()
