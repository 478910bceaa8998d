"""Recording the encoder batches an evaluation would run, for sharded encoding
(:mod:`t2ibench.pipeline.shard`): within :func:`recording`, :func:`~t2ibench.evaluation.engine.
evaluate_records` computes no metric and encodes nothing through the built-in providers; it lists
the encoder batches it would run, the workers store those rows in the feature cache, and the
evaluation then reads them — the same values as encoding locally.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EncodeBatch:
    """One encoder batch exactly as the local evaluation would run it: encoder number (in the
    encoder list), the images' (content sha256, path) in batch order, the feature cache's folder."""

    encoder: int
    items: tuple[tuple[str, str], ...]
    cache_root: str


@dataclass
class EncodingRecorder:
    """The encoder batches an evaluation would run, in order. ``encode_images_cached`` encodes the
    images of a call that the cache does not hold, ``encoder.batch_size`` at a time in order of
    first appearance; this repeats that on the content hashes, with the rows of earlier batches
    counting as cached, so each recorded batch is one the local run would encode."""

    encoders: Sequence[Any]
    batches: list[EncodeBatch] = field(default_factory=list)
    stored: set[tuple[str, str]] = field(default_factory=set)

    def record(self, encoder: Any, paths: Sequence[Path], cache: Any | None) -> None:
        from t2ibench.fsutil import file_sha256

        if cache is None:
            return  # never cached (a checkpoint's own Gram matrices): the evaluation encodes them
        number = next(i for i, e in enumerate(self.encoders) if e is encoder)
        todo: dict[str, str] = {}
        for path in paths:
            h = file_sha256(path)
            key = (str(cache.root), cache.key(encoder, h))
            if h in todo or key in self.stored:
                continue
            if cache.get(encoder, h) is None:
                todo[h] = str(path)
            self.stored.add(key)
        items = list(todo.items())
        for first in range(0, len(items), encoder.batch_size):
            chunk = tuple(items[first : first + encoder.batch_size])
            self.batches.append(EncodeBatch(number, chunk, str(cache.root)))


_RECORDER: contextvars.ContextVar[EncodingRecorder | None] = contextvars.ContextVar(
    "t2ibench_encoding_recorder", default=None
)


def current_recorder() -> EncodingRecorder | None:
    return _RECORDER.get()


def is_recording() -> bool:
    return _RECORDER.get() is not None


@contextlib.contextmanager
def recording(encoders: Sequence[Any]) -> Iterator[EncodingRecorder]:
    """Within it, the engine computes no metric and encodes nothing through the built-in
    providers: it lists the encoder batches it would run (``recorder.batches``)."""
    recorder = EncodingRecorder(list(encoders))
    token = _RECORDER.set(recorder)
    try:
        yield recorder
    finally:
        _RECORDER.reset(token)


def encode_batch(encoder: Any, batch: EncodeBatch, cache: Any) -> None:
    """Encode one recorded batch and store each row, as ``encode_images_cached`` does."""
    import torch

    from t2ibench.encoders.cache import _decode, _read_bytes

    images = [_decode(Path(p), _read_bytes(Path(p))) for _, p in batch.items]
    out = encoder.encode_images(images)
    for j, (h, _) in enumerate(batch.items):
        row = out[j] if isinstance(out, torch.Tensor) else [t[j] for t in out]
        cache.put(encoder, h, row)
