"""The run's encoders from their ``--encoders`` items: ``name`` (real default weights),
``name@tiny`` (tiny random variant) or ``name@WEIGHTS``."""

from __future__ import annotations

import pickle
from collections.abc import Sequence

from t2ibench.errors import ConfigError
from t2ibench.pipeline.devices import check_device


def parse_encoder(item: str) -> tuple[str, str | None, bool]:
    """``name`` (real default weights), ``name@tiny`` (tiny random variant), ``name@WEIGHTS``."""
    name, _, weights = item.partition("@")
    if weights == "tiny":
        return name, None, True
    return name, weights or None, False


def check_encoders(items: Sequence[str]) -> None:
    """Every item names a registered encoder (one line with the known names otherwise)."""
    from t2ibench.encoders import get_encoder_spec

    for item in items:
        get_encoder_spec(parse_encoder(item)[0])


def create_encoders(items: Sequence[str], resize: Sequence[str] | None, device: str) -> list:
    """Load the selected encoders; ``resize`` modes multiply image encoders (not gram / score)."""
    from t2ibench.encoders import create_encoder, get_encoder_spec

    check_device(device)
    out = []
    for item in items:
        name, weights, tiny = parse_encoder(item)
        kind = get_encoder_spec(name).kind
        modes = resize if (resize and kind in ("image", "image-text")) else [None]
        for mode in modes:
            try:
                enc = create_encoder(name, weights=weights, tiny=tiny, device=device, resize=mode)
            except pickle.UnpicklingError:
                # torch.load(weights_only=True) refused objects other than tensors: say which file.
                raise ConfigError(
                    f"encoder {item}: {weights}: refused: the file holds pickled objects other "
                    "than tensors (torch.load weights_only=True blocked them); use a .safetensors file"
                ) from None
            out.append(enc)
    return out
