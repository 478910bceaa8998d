"""The fixed, seeded image order every run generates in, full and adaptive alike, and where an
adaptive round's prefix of it ends (:mod:`t2ibench.pipeline.adaptive`). Pure.

Prompt type by prompt type; within one, each leaf's images in a seeded random order (seed
:data:`ORDER_SEED`, the leaf and the prompt type), the leaves taken in turn. The generate stage
cuts its batches from this list at fixed positions, so the first ``k`` images of a prompt type in
an adaptive run are, byte for byte, the full run's first ``k``, and a random sample of its images
spread evenly over the leaves."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

#: the seed of the image order (fixed: every run of the same jobs has the same order)
ORDER_SEED = 20


def ordered_jobs(jobs: Sequence[Any], seed: int = ORDER_SEED) -> list[Any]:
    """``jobs`` in the fixed seeded image order (module doc): prompt types in their first
    appearance order; within one, the leaves (sorted) in turn, each leaf's images permuted."""
    import numpy as np

    groups: dict[str, dict[str, list[Any]]] = {}
    for job in jobs:
        groups.setdefault(job.prompt_type, {}).setdefault(job.leaf, []).append(job)
    out: list[Any] = []
    for pt, leaves in groups.items():
        permuted = []
        for leaf in sorted(leaves):
            own = leaves[leaf]
            key = zlib.crc32(f"{leaf}\0{pt}".encode())
            order = np.random.default_rng([seed, key]).permutation(len(own))
            permuted.append([own[i] for i in order])
        for k in range(max(len(p) for p in permuted)):
            out.extend(p[k] for p in permuted if k < len(p))
    return out


def blocks(jobs: Sequence[Any]) -> dict[str, tuple[int, int, int]]:
    """prompt type → (start, end, leaves) of its block in the ordered ``jobs``."""
    out: dict[str, list] = {}
    for i, job in enumerate(jobs):
        b = out.setdefault(job.prompt_type, [i, i, set()])
        b[1] = i + 1
        b[2].add(job.leaf)
    return {pt: (s, e, len(leaves)) for pt, (s, e, leaves) in out.items()}


def round_end(start: int, end: int, leaves: int, images: int, batch: int) -> int:
    """Where a prompt type's admitted prefix ends when it holds ``images`` per leaf: rounded up to
    the next batch boundary of the whole job list (no batch is split), at most the block's end."""
    target = start + images * leaves
    return min(end, math.ceil(target / batch) * batch)
