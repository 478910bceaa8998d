"""Encoder registry: image (and text) feature extractors used by the metrics.

Built-ins: ``dinov2-l``, ``clip-l14``, ``convnextv2-l``, ``vgg19``, ``dinov2-s``/``-b``,
``dino-vits16``/``-vits8``, ``clip-b32`` and the IQA probes ``liqe`` and
``maniqa`` (``iqa`` extra). Third parties register an :class:`EncoderSpec` through the entry-point
group ``t2ibench.encoders``. Importing this package never imports transformers, open_clip, timm or
pyiqa: each family imports its library inside its load function.
"""

from __future__ import annotations

import importlib
import pkgutil

from t2ibench.encoders.base import (
    ENCODER_KINDS,
    RESIZE_MODES,
    Encoder,
    EncoderSpec,
    Preprocess,
    resize_image,
)
from t2ibench.encoders.cache import FeatureCache, encode_images_cached, encode_texts_cached
from t2ibench.encoders.registry import (
    ENCODERS,
    create_encoder,
    get_encoder_spec,
    list_encoders,
    register_encoder,
)

# Built-in encoders register themselves on import (each is light: heavy imports are inside loaders);
# import every module here, so a new built-in is one new file.
for _mod in pkgutil.iter_modules(__path__):
    if not _mod.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "ENCODERS",
    "ENCODER_KINDS",
    "RESIZE_MODES",
    "Encoder",
    "EncoderSpec",
    "FeatureCache",
    "Preprocess",
    "create_encoder",
    "encode_images_cached",
    "encode_texts_cached",
    "get_encoder_spec",
    "list_encoders",
    "register_encoder",
    "resize_image",
]
