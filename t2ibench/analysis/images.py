"""Image thumbnails for the report: seed-paired grids (training | base | each checkpoint) and the
copy-detection offenders, embedded as small JPEG data URIs so the report stays one file.

Budget: :data:`THUMB_PX` pixels on the long side, JPEG quality :data:`JPEG_QUALITY`, at most
:data:`ROWS_PER_PROMPT_TYPE` prompts per prompt type and :data:`MAX_COLUMNS` checkpoints; with
these a report stays under :data:`REPORT_BUDGET_BYTES` (checked by the tests).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
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


def seed_paired_grids(sources: Mapping, dataset_leaves: Mapping[str, list[str]] | None = None):
    """Per prompt type: ``(header, rows)``; a row is ``(label, [uri or None, ...])`` with columns
    training image | base | each checkpoint, images paired by (leaf, prompt type, index, seed).

    ``sources`` is ``anchors/sources.json`` (``images``: checkpoint → folder); the training images
    come from each leaf's folder in the dataset (``dataset_leaves``: leaf → image paths; read from
    the dataset root when None)."""
    from t2ibench.metrics.inputs import paired_key
    from t2ibench.pipeline.manifest import MANIFEST_NAME, read_manifest

    dirs = {k: Path(v) for k, v in sources.get("images", {}).items()}
    manifests = {}
    for name, d in dirs.items():
        if (d / MANIFEST_NAME).is_file():
            manifests[name] = {paired_key(r): r for r in read_manifest(d / MANIFEST_NAME)}
    if not manifests:
        return {}
    if dataset_leaves is None:
        dataset_leaves = _dataset_leaves(sources.get("dataset"))
    cols = _pick_columns(sorted(manifests, key=lambda n: (n != "base", _epoch_key(n))))
    anchor = manifests[cols[0]]
    # Per prompt type the first image of each leaf, leaves taken round-robin over categories so
    # the few rows shown cover different kinds of concept.
    first: dict[str, dict[str, tuple]] = {}
    for key in sorted(anchor, key=lambda k: (k[1], k[0], k[2] if k[2] is not None else -1, k[3])):
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
            train = (dataset_leaves or {}).get(key[0]) or []
            cells = [thumbnail_uri(train[0]) if train else None]
            for c in cols:
                rec = manifests[c].get(key)
                cells.append(thumbnail_uri(rec.path(dirs[c])) if rec else None)
            rows.append((f"{key[0]}: {anchor[key].prompt} (seed {key[3]})", cells))
        grids[pt] = (["training image", *cols], rows)
    return grids


def _epoch_key(name: str) -> tuple:
    import re

    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else -1, name)


def _dataset_leaves(root: str | None) -> dict[str, list[str]]:
    if not root or not Path(root).is_dir():
        return {}
    try:
        from t2ibench.data import load_dataset

        ds = load_dataset(root)
    except Exception:  # noqa: BLE001 - a moved dataset only costs the training column
        return {}
    return {k: [str(im.path) for im in leaf.images] for k, leaf in ds.leaves.items()}
