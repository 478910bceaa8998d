"""DINO (v1) ViT-S/8 (``facebook/dino-vits8``): the DINOv1 encoder of DreamBench++ (Peng et al.
2025). Same family and loader as ``dino-vits16`` (:mod:`t2ibench.encoders.dino_vits16`)."""

from __future__ import annotations

from t2ibench.encoders.dino_vits16 import dino_spec
from t2ibench.encoders.registry import register_encoder

register_encoder(dino_spec("dino-vits8", 8, "facebook/dino-vits8"))
