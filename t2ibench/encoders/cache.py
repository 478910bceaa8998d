"""Content-addressed on-disk feature cache.

Key = sha256(image bytes, or UTF-8 text) + encoder name + weights id + preprocessing id + compute dtype
(``float32``, or the CUDA autocast dtype), so a renamed or copied image hits the cache and any change
of weights, preprocessing or precision misses it. Layout::

    root/<encoder name>/<config digest>/meta.json
    root/<encoder name>/<config digest>/<hash[:2]>/<hash>.safetensors

One safetensors file per image (Gram encoders: one tensor per layer), written atomically (temp file
in the same folder, then ``os.replace``), and stored as soon as its batch is encoded, so an
interrupted run keeps everything finished.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from t2ibench.encoders.base import Encoder, Features, stack_rows
from t2ibench.errors import DatasetError, T2IBenchError
from t2ibench.fsutil import atomic_write, atomic_write_with


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FeatureCache:
    """Features on disk, addressed by content hash and encoder configuration."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    @staticmethod
    def compute_dtype(encoder: Encoder) -> str:
        """``float32``, or ``autocast-bfloat16`` / ``autocast-float16``: bf16 rows differ from float32
        rows, so CPU and GPU runs must not share entries."""
        dtype = getattr(encoder, "autocast_dtype", None)
        return "float32" if dtype is None else f"autocast-{str(dtype).removeprefix('torch.')}"

    @classmethod
    def config_digest(cls, encoder: Encoder, modality: str = "image") -> str:
        """Digest of everything about the encoder that changes its output."""
        parts = [
            encoder.name,
            encoder.weights_id,
            encoder.preprocess_id if modality == "image" else "text",
        ]
        dtype = cls.compute_dtype(encoder)
        if dtype != "float32":  # float32 keys stay as they were before the dtype became a part
            parts.append(dtype)
        return sha256_bytes("\0".join(parts).encode())[:20]

    def key(self, encoder: Encoder, content_hash: str, modality: str = "image") -> str:
        """The cache key of one item: ``<encoder>/<config digest>/<content hash>``."""
        return f"{encoder.name}/{self.config_digest(encoder, modality)}/{content_hash}"

    def _path(self, encoder: Encoder, content_hash: str, modality: str) -> Path:
        folder = self.root / encoder.name / self.config_digest(encoder, modality)
        return folder / content_hash[:2] / f"{content_hash}.safetensors"

    def get(self, encoder: Encoder, content_hash: str, modality: str = "image") -> Features | None:
        """The cached row of one item (a 1-D tensor, or per-layer tensors), or ``None``."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self._path(encoder, content_hash, modality)
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError):
            return None  # a damaged entry is recomputed, not trusted
        if "f" in tensors:
            return tensors["f"]
        return [tensors[f"l{i}"] for i in range(len(tensors))]

    def put(
        self, encoder: Encoder, content_hash: str, row: Features, modality: str = "image"
    ) -> None:
        """Store one item's row atomically."""
        from safetensors.torch import save_file

        path = self._path(encoder, content_hash, modality)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = path.parent.parent / "meta.json"
        if not meta.is_file():
            atomic_write(
                meta,
                json.dumps(
                    {
                        "encoder": encoder.name,
                        "weights_id": encoder.weights_id,
                        "preprocess_id": encoder.preprocess_id if modality == "image" else "text",
                        "compute_dtype": self.compute_dtype(encoder),
                        "modality": modality,
                    },
                    indent=2,
                ).encode(),
            )
        tensors = (
            {"f": row.contiguous()}
            if isinstance(row, torch.Tensor)
            else {f"l{i}": t.contiguous() for i, t in enumerate(row)}
        )
        atomic_write_with(path, lambda tmp: save_file(tensors, tmp))


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read image file ({exc.strerror or exc})") from exc


def _decode(path: Path, data: bytes) -> Image.Image:
    from t2ibench.images import decode_image

    return decode_image(data, path)  # EXIF orientation, 16-bit, transparency on white


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def encode_images_cached(
    encoder: Encoder, paths: Sequence[Path | str], cache: FeatureCache | None
) -> Features:
    """Features of the image files ``paths`` (rows in input order), same type as ``encode_images``.

    Cached rows are read back; the rest are decoded and encoded ``batch_size`` at a time and each
    batch is stored before the next starts. Identical files are encoded once. A file that cannot be
    read or decoded raises :class:`DatasetError` naming it.
    """
    paths = [Path(p) for p in paths]
    hashes = [sha256_bytes(_read_bytes(p)) for p in paths]
    rows: dict[str, Features] = {}
    todo: dict[str, Path] = {}
    for p, h in zip(paths, hashes, strict=True):
        if h in rows or h in todo:
            continue
        cached = cache.get(encoder, h) if cache is not None else None
        if cached is not None:
            rows[h] = cached
        else:
            todo[h] = p
    for chunk in _chunks(list(todo.items()), encoder.batch_size):
        images = [_decode(p, _read_bytes(p)) for _, p in chunk]
        out = encoder.encode_images(images)
        for j, (h, _) in enumerate(chunk):
            row = out[j] if isinstance(out, torch.Tensor) else [t[j] for t in out]
            rows[h] = row
            if cache is not None:
                cache.put(encoder, h, row)
    return stack_rows([rows[h] for h in hashes], encoder.kind)


def encode_texts_cached(
    encoder: Encoder, texts: Sequence[str], cache: FeatureCache | None
) -> torch.Tensor:
    """Text features (n, d) in input order, cached by sha256 of the UTF-8 text."""
    if encoder.kind != "image-text":
        raise T2IBenchError(f"encoder {encoder.name} ({encoder.kind}) has no text tower")
    texts = list(texts)
    hashes = [sha256_bytes(t.encode("utf-8")) for t in texts]
    rows: dict[str, torch.Tensor] = {}
    todo: dict[str, str] = {}
    for t, h in zip(texts, hashes, strict=True):
        if h in rows or h in todo:
            continue
        cached = cache.get(encoder, h, "text") if cache is not None else None
        if cached is not None:
            rows[h] = cached  # type: ignore[assignment]
        else:
            todo[h] = t
    for chunk in _chunks(list(todo.items()), encoder.batch_size):
        out = encoder.encode_texts([t for _, t in chunk])
        for j, (h, _) in enumerate(chunk):
            rows[h] = out[j]
            if cache is not None:
                cache.put(encoder, h, out[j], "text")
    return stack_rows([rows[h] for h in hashes], "image")  # type: ignore[return-value]
