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
    from t2ibench.errors import DatasetError
    from t2ibench.images import open_image

    try:
        # the pixels the metrics saw: upright (EXIF), transparency on white, 16-bit scaled
        im = open_image(path)
    except DatasetError:
        return None
    im.thumbnail((px, px))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pick_columns(names: list[str], configs: dict[str, str] | None = None) -> list[str]:
    """Base first (each base's own, ``base (<base>)``, when a sweep holds several bases), then
    checkpoints; many checkpoints thinned evenly (first and last kept). In a sweep (checkpoints
    ``<run>/<checkpoint>`` and ``configs`` given) one column per config: its first run's last
    checkpoint."""
    from t2ibench.analysis.anchors import is_base_model

    bases = sorted(n for n in names if is_base_model(n))
    ck = [n for n in names if not is_base_model(n)]
    if configs and any("/" in n for n in ck):
        chosen: dict[str, str] = {}
        for n in sorted(ck, key=lambda n: (n.split("/")[0], _epoch_key(n))):
            cfg = configs.get(n, n.split("/")[0])
            first_run = chosen.get(cfg, n).split("/")[0]
            if n.split("/")[0] == first_run:
                chosen[cfg] = n  # the run's later epochs replace its earlier ones
        ck = [chosen[c] for c in sorted(chosen)]
    if len(ck) > MAX_COLUMNS:
        step = (len(ck) - 1) / (MAX_COLUMNS - 1)
        ck = [ck[round(i * step)] for i in range(MAX_COLUMNS)]
    return bases + ck


def column_label(name: str, configs: dict[str, str] | None = None) -> str:
    """A grid column's header: a sweep's ``<run>/<checkpoint>`` reads ``<config> · e<epoch>``."""
    if configs and "/" in name and name in configs:
        epoch = _epoch_key(name)[0]
        return f"{configs[name]} · e{epoch}" if epoch >= 0 else configs[name]
    return name


def seed_paired_grids(index, configs: dict[str, str] | None = None):
    """Per prompt type: ``(header, rows)``; a row is ``(label, [uri or None, ...])`` with columns
    training image | base | each checkpoint, images paired by (leaf, prompt type, index, seed).

    ``index`` is ``anchors/images.parquet`` (written by :mod:`t2ibench.pipeline.anchors`): one row
    per image with ``checkpoint`` (``training`` for the dataset's), ``leaf``, ``prompt_type``,
    ``index``, ``seed``, ``prompt`` and ``path``. ``configs`` (checkpoint → config) turns a sweep's
    columns into one per config (see :func:`_pick_columns`)."""
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
    cols = _pick_columns(sorted(manifests, key=_epoch_key), configs)
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
        grids[pt] = (["training image", *(column_label(c, configs) for c in cols)], rows)
    return grids


def _epoch_key(name: str) -> tuple:
    import re

    m = re.search(r"(\d+)$", name)
    return (int(m.group(1)) if m else -1, name)
