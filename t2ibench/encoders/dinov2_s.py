"""DINOv2 ViT-S/14 (``facebook/dinov2-small``) through transformers' ``Dinov2Model``.

Same family and loader as ``dinov2-l`` (:mod:`t2ibench.encoders.dinov2`): feature = the CLS token
after the final layernorm (``pooler_output``), ImageNet mean/std, bicubic, any input size.
Used by the ``dreambench-pp`` metric profile (DreamBench++, Peng et al. 2025, DINOv2-S).
"""

from __future__ import annotations

from t2ibench.encoders import dinov2
from t2ibench.encoders.base import EncoderSpec
from t2ibench.encoders.registry import register_encoder

register_encoder(
    EncoderSpec(
        name="dinov2-s",
        kind="image",
        default_weights="facebook/dinov2-small",
        feature_desc="(n, 384) CLS",
        description="DINOv2 ViT-S/14 (transformers), CLS token after the final layernorm",
        family="dino",
        load=dinov2.load,
        interpolation="bicubic",
        default_resize="center-crop",
    )
)
