"""Where the report finds the anchors ``t2ibench run`` writes next to its results (see
:mod:`t2ibench.pipeline.anchors`): ``<results>/anchors/{ceiling,copies,images}.parquet``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

ANCHORS_DIR = "anchors"


def read_anchors(results: Any) -> dict[str, Any]:
    """The anchors next to a results folder or file: ``ceiling``, ``copies`` and ``images`` tables
    (empty when absent) and ``sources`` (dict, empty when absent)."""
    out: dict[str, Any] = {
        "ceiling": pd.DataFrame(),
        "copies": pd.DataFrame(),
        "images": pd.DataFrame(),
        "sources": {},
    }
    if isinstance(results, pd.DataFrame):
        return out
    p = Path(results)
    d = (p if p.is_dir() else p.parent) / ANCHORS_DIR
    if not d.is_dir():
        return out
    for name in ("ceiling", "copies", "images"):
        f = d / f"{name}.parquet"
        if f.is_file():
            out[name] = pd.read_parquet(f)
    if (d / "sources.json").is_file():
        out["sources"] = json.loads((d / "sources.json").read_text())
    return out
