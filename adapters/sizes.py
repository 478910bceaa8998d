"""Adapter sizes on the real SD1.5 architecture, built on the ``meta`` device (no weights).

``params`` is the number of saved elements (trainable tensors plus one ``alpha`` per module, as in
PROTOCOL's table); ``bytes`` is the exact size of the fp16 safetensors file without metadata
(8-byte length + JSON header padded to 8 + data), the same number ``ls -l`` shows for a file saved
with no ``__metadata__``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

MIB = 1024 * 1024


def safetensors_size(
    shapes: Mapping[str, Sequence[int]],
    *,
    itemsize: int = 2,
    dtype: str = "F16",
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Bytes of the safetensors file holding tensors of these shapes (one dtype).

    Mirrors the library's writer: tensors sorted by name, compact JSON header, header padded with
    spaces to a multiple of 8.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name in sorted(shapes):
        n = 1
        for s in shapes[name]:
            n *= int(s)
        header[name] = {
            "dtype": dtype,
            "shape": [int(s) for s in shapes[name]],
            "data_offsets": [offset, offset + n * itemsize],
        }
        offset += n * itemsize
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return 8 + len(text) + offset


@lru_cache(maxsize=1)
def _sd15_meta() -> tuple[Any, Any]:
    from t2ibench.models.sd15 import build_sd15

    return build_sd15("meta")


def network_shapes(
    trainer: str,
    *,
    parts: Mapping[str, Any] | None = None,
    preset: str | None = None,
    unet_preset: str | None = None,
    te_preset: str | None = None,
    **params: Any,
) -> dict[str, tuple[int, ...]]:
    """Saved-tensor shapes of ``trainer`` with the given preset and algorithm parameters.

    ``parts`` defaults to SD1.5 (UNet + text encoder) on the meta device.
    """
    from .registry import get_trainer

    values = {k: v for k, v in params.items() if v is not None}
    for key, val in (("preset", preset), ("unet_preset", unet_preset), ("te_preset", te_preset)):
        if val is not None:
            values[key] = val
    spec = get_trainer(trainer)
    cfg = spec.config([("adapter size", values)])
    if parts is None:
        unet, te = _sd15_meta()
        parts = {"unet": unet, "te": te if cfg.train_text_encoder else None}
    net = spec.build_network(parts, cfg)
    return {
        f"{m.lora_name}.{suffix}": tuple(t.shape)
        for m in net
        for suffix, t in m.state_items().items()
    }


def adapter_size(trainer: str, preset: str | None = None, **params: Any) -> dict[str, Any]:
    """``{"params", "bytes", "mib", "modules"}`` of an fp16 adapter file for SD1.5.

    ``params`` are config fields (dim, alpha, factor, conv_dim, ...); unset ones keep the
    trainer's paper defaults.
    """
    shapes = network_shapes(trainer, preset=preset, **params)
    n = 0
    for shape in shapes.values():
        c = 1
        for s in shape:
            c *= s
        n += c
    size = safetensors_size(shapes)
    modules = len({k.split(".")[0] for k in shapes})
    return {"params": n, "bytes": size, "mib": size / MIB, "modules": modules}
