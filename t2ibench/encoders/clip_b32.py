"""OpenAI CLIP ViT-B/32 through open_clip (``ViT-B-32-quickgelu`` / ``openai``: the original weights
need QuickGELU), image and text features after the projection.

The CLIP the DreamBooth paper (Ruiz et al. 2023, §4.1) and DreamBench++ use for CLIP-I / CLIP-T.
Same loader as ``clip-l14`` (:func:`t2ibench.encoders.clip.load_model`, parametrised by
architecture and tag); local folders, single files and hub ids work the same way.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from t2ibench.encoders import clip
from t2ibench.encoders.base import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, EncoderSpec, weights_source

ARCH = "ViT-B-32-quickgelu"
TAG = "openai"
HUB_REPO = "timm/vit_base_patch32_clip_224.openai"
DEFAULT_WEIGHTS = f"{ARCH}/{TAG}"
# Real patch 32 / 224 px geometry and the real vocabulary, tiny widths.
TINY_MODEL_CFG: dict[str, Any] = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "head_width": 16, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def load(
    spec: EncoderSpec,
    weights: str | None,
    tiny: bool,
    preprocess: Any,
    device: Any,
    dtype: Any,
    batch_size: int,
    cache_dir: Path | None,
) -> clip.ClipEncoder:
    build = partial(clip.build_tiny, model_cfg=TINY_MODEL_CFG)
    source = weights_source(spec, weights, tiny, TINY_MODEL_CFG, build, cache_dir)
    model, tokenizer, wid = clip.load_model(source, spec.name, ARCH, TAG, HUB_REPO)
    return clip.ClipEncoder(
        spec.name, model, wid, preprocess, device, dtype, batch_size, source, tokenizer=tokenizer
    )


def _register() -> None:
    from t2ibench.encoders.registry import register_encoder

    register_encoder(
        EncoderSpec(
            name="clip-b32",
            kind="image-text",
            default_weights=DEFAULT_WEIGHTS,
            feature_desc="(n, 512) after projection; texts (n, 512)",
            description="OpenAI CLIP ViT-B/32 (open_clip), image and text features after the projection",
            family="clip",
            load=load,
            mean=OPENAI_CLIP_MEAN,
            std=OPENAI_CLIP_STD,
            interpolation="bicubic",
            default_resize="center-crop",  # CLIP's own preprocessing: short side 224, centre crop
            square_only=True,
        )
    )


_register()
