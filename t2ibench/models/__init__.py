"""Base models: the tiny random SD1.5 look-alike, loading by hub id / folder / single file, and
fingerprints. Importing this package does not import torch or diffusers; the functions do."""

from t2ibench.models.loading import (
    BaseModelError,
    base_fingerprint,
    load_base,
    resolve_spec,
)
from t2ibench.models.tiny import make_tiny_base

__all__ = [
    "BaseModelError",
    "base_fingerprint",
    "load_base",
    "make_tiny_base",
    "resolve_spec",
]
