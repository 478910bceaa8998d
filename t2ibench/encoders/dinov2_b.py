"""DINOv2 ViT-B/14 (``facebook/dinov2-base``) through transformers' ``Dinov2Model``.

Same family and loader as ``dinov2-l`` (:mod:`t2ibench.encoders.dinov2`): feature = the CLS token
after the final layernorm (``pooler_output``), ImageNet mean/std, bicubic, any input size.
Used by the ``peft-drift`` metric profile (drift of a fine-tuned model from its base).
"""

from __future__ import annotations

from t2ibench.encoders import dinov2
from t2ibench.encoders.base import EncoderSpec
from t2ibench.encoders.registry import register_encoder

register_encoder(
    EncoderSpec(
        name="dinov2-b",
        kind="image",
        default_weights="facebook/dinov2-base",
        feature_desc="(n, 768) CLS",
        description="DINOv2 ViT-B/14 (transformers), CLS token after the final layernorm",
        family="dino",
        load=dinov2.load,
        interpolation="bicubic",
        default_resize="center-crop",
    )
)
