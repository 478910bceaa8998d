"""Image thumbnails for the report: seed-paired grids (training | base | each checkpoint) and the
copy-detection offenders, embedded as small JPEG data URIs so the report stays one file.

Budget: :data:`THUMB_PX` pixels on the long side, JPEG quality :data:`JPEG_QUALITY`, at most
:data:`ROWS_PER_PROMPT_TYPE` prompts per prompt type and :data:`MAX_COLUMNS` checkpoints; with
these a report stays under :data:`REPORT_BUDGET_BYTES` (checked by the tests).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

THUMB_PX = 112
JPEG_QUALITY = 70
ROWS_PER_PROMPT_TYPE = 3
MAX_COLUMNS = 8
REPORT_BUDGET_BYTES = 3_000_000


def thumbnail_uri(path: str | Path, px: int = THUMB_PX) -> str | None:
    """``data:image/jpeg;base64,...`` of a thumbnail of the image, or None when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((px, px))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pick_columns(names: list[str]) -> list[str]:
    """Base first, then checkpoints; many checkpoints thinned evenly (first and last kept)."""
    ck = [n for n in names if n != "base"]
    if len(ck) > MAX_COLUMNS:
        step = (len(ck) - 1) / (MAX_COLUMNS - 1)
        ck = [ck[round(i * step)] for i in range(MAX_COLUMNS)]
    return (["base"] if "base" in names else []) + ck


def seed_paired_grids(index):
    """Per prompt type: ``(header, rows)``; a row is ``(label, [uri or None, ...])`` with columns
    training image | base | each checkpoint, images paired by (leaf, prompt type, index, seed).

    ``index`` is ``anchors/images.parquet`` (written by :mod:`t2ibench.pipeline.anchors`): one row
    per image with ``checkpoint`` (``training`` for the dataset's), ``leaf``, ``prompt_type``,
    ``index``, ``seed``, ``prompt`` and ``path``."""
    if index is None or len(index) == 0:
        return {}
    training = index[index["checkpoint"] == "training"].sort_values("index")
    train_first = training.groupby("leaf")["path"].first().to_dict()
    gen = index[index["checkpoint"] != "training"]
    keycols = ["leaf", "prompt_type", "index", "seed"]
    manifests = {
        name: {tuple(r[k] for k in keycols): r for _, r in g.iterrows()}
        for name, g in gen.groupby("checkpoint")
    }
    if not manifests:
        return {}
    cols = _pick_columns(sorted(manifests, key=lambda n: (n != "base", _epoch_key(n))))
    anchor = manifests[cols[0]]
    # Per prompt type the first image of each leaf, leaves taken round-robin over categories so
    # the few rows shown cover different kinds of concept.
    first: dict[str, dict[str, tuple]] = {}
    for key in sorted(anchor, key=lambda k: (k[1], k[0], k[2], k[3])):
        first.setdefault(key[1], {}).setdefault(key[0], key)
    grids = {}
    for pt, leaves in first.items():
        by_cat: dict[str, list] = {}
        for leaf in sorted(leaves):
            by_cat.setdefault(leaf.split("/")[0], []).append(leaves[leaf])
        picked: list[tuple] = []
        while len(picked) < ROWS_PER_PROMPT_TYPE and any(by_cat.values()):
            for cat in sorted(by_cat):
                if by_cat[cat] and len(picked) < ROWS_PER_PROMPT_TYPE:
                    picked.append(by_cat[cat].pop(0))
        rows = []
        for key in picked:
            train = train_first.get(key[0])
            cells = [thumbnail_uri(train) if train else None]
            for c in cols:
                rec = manifests[c].get(key)
                cells.append(thumbnail_uri(rec["path"]) if rec is not None else None)
            rows.append((f"{key[0]}: {anchor[key]['prompt']} (seed {key[3]})", cells))
        grids[pt] = (["training image", *cols], rows)
    return grids


def _epoch_key(name: str) -> tuple:
    import re

    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else -1, name)
