"""The encoder registry: names → :class:`EncoderSpec`, and :func:`create_encoder`.

Its own module, below the built-in families, so an encoder file registers itself by importing this
(never the package ``__init__``, which imports the families).
"""

from __future__ import annotations

from pathlib import Path

import torch

from t2ibench.encoders.base import RESIZE_MODES, Encoder, EncoderSpec, Preprocess
from t2ibench.errors import ConfigError
from t2ibench.registry import Registry

ENCODERS: Registry[EncoderSpec] = Registry("encoder", entry_point_group="t2ibench.encoders")


def register_encoder(spec: EncoderSpec, *, overwrite: bool = False) -> EncoderSpec:
    """Add ``spec`` to the registry under ``spec.name``; returns it."""
    ENCODERS.register(spec.name, spec, overwrite=overwrite)
    return spec


def list_encoders(pattern: str | None = None) -> list[str]:
    """Registered encoder names (optionally filtered by a glob pattern), sorted."""
    return ENCODERS.names(pattern)


def get_encoder_spec(name: str) -> EncoderSpec:
    """The registered spec of ``name`` (raises with close matches when unknown)."""
    return ENCODERS.get(name)


def create_encoder(
    name: str,
    weights: str | Path | None = None,
    tiny: bool = False,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    resize: str | None = None,
    batch_size: int = 32,
    size: int | None = None,
    cache_dir: Path | None = None,
) -> Encoder:
    """Load encoder ``name``.

    weights: ``None`` → the real default (a hub id, see ``t2ibench encoders list``); a hub id or a
    local path (folder or single checkpoint file) also work. ``tiny=True`` builds a tiny random-weight
    model from a config, saves it under ``cache_dir`` (default ``$T2IBENCH_CACHE/tiny-encoders``),
    and loads it back through the same loading code as real weights. ``resize``: one of
    ``RESIZE_MODES``; ``None`` → the encoder's default (letterbox for dinov2-l/clip-l14/convnextv2-l,
    the paper's main setting; scale for vgg19 and the IQA probes). ``size``: target side in pixels
    (default 224; 512 short side for IQA probes). ``dtype``: autocast dtype on CUDA (default bf16,
    fp16 where bf16 is unsupported); CPU always runs float32.
    """
    spec = get_encoder_spec(name)
    mode = resize or spec.default_resize
    if mode not in RESIZE_MODES:
        raise ConfigError(
            f"resize: unknown mode {mode!r}; expected one of {', '.join(RESIZE_MODES)}"
        )
    if spec.square_only and mode == "scale":
        raise ConfigError(
            f"resize: encoder {name} needs a square input (its position embedding has a fixed "
            f"grid), and 'scale' keeps the aspect ratio; use letterbox, center-crop or stretch"
        )
    if tiny and weights is not None:
        raise ConfigError("weights: give either weights or tiny=True, not both")
    preprocess = Preprocess(
        resize=mode,
        size=size or spec.size,
        mean=spec.mean,
        std=spec.std,
        interpolation=spec.interpolation,
        normalize=spec.normalize,
    )
    return spec.load(
        spec,
        weights=None if weights is None else str(weights),
        tiny=tiny,
        preprocess=preprocess,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        cache_dir=cache_dir,
    )
