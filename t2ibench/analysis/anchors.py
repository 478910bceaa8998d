"""Where the report finds the anchors ``t2ibench run`` writes next to its results (see
:mod:`t2ibench.pipeline.anchors`): ``<results>/anchors/{ceiling,copies,images}.parquet``.

A sweep's joint results (``<out>/results``) have no anchors of their own: they are gathered from its
runs (``<out>/runs/<run>/results/anchors``, :func:`t2ibench.analysis.cost.find_runs`), with each
run's checkpoints named ``<run>/<checkpoint>`` as in the joint table; the base model's images and the
training images, shared by every run, are kept once, and so is the ceiling of a shared dataset."""

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
        return _runs_anchors(results, out)
    for name in ("ceiling", "copies", "images"):
        f = d / f"{name}.parquet"
        if f.is_file():
            out[name] = pd.read_parquet(f)
    if (d / "sources.json").is_file():
        out["sources"] = json.loads((d / "sources.json").read_text())
    return out


def _prefixed(
    df: pd.DataFrame, run: str, column: str = "checkpoint", base: str | None = None
) -> pd.DataFrame:
    """A run's checkpoints as ``<run>/<checkpoint>``; the base model stays ``base`` (shared by the
    runs), or ``base (<base>)`` when the runs use several bases (each base model its own)."""
    if df.empty:
        return df
    ck = df[column].astype(str)
    shared = ck.isin(["base", "training"])
    out = ck.where(shared, run + "/" + ck)
    if base is not None:
        out = out.where(ck != "base", base_model_column(base))
    return df.assign(**{column: out})


def base_model_column(base: str) -> str:
    """The name of one base's base-model images when a sweep's runs use several bases."""
    return f"base ({base})"


def is_base_model(name: str) -> bool:
    """Whether an image column is a base model's: ``base``, or ``base (<base>)``."""
    return name == "base" or (name.startswith("base (") and name.endswith(")"))


def _runs_anchors(results: Any, out: dict[str, Any]) -> dict[str, Any]:
    """The anchors of a sweep's runs, joined (see the module docstring)."""
    from t2ibench.analysis.cost import find_runs
    from t2ibench.results import run_base

    runs = {k: v for k, v in find_runs(results).items() if k}
    bases = {run: run_base(run_dir) for run, run_dir in runs.items()}
    several = len(set(bases.values())) > 1  # then each base model's images are its own column
    parts: dict[str, list[pd.DataFrame]] = {"ceiling": [], "copies": [], "images": []}
    for run, run_dir in runs.items():
        one = read_anchors(run_dir / "results")
        if one["sources"]:
            out["sources"][run] = one["sources"]
        base = bases[run] if several else None
        parts["ceiling"].append(one["ceiling"])
        parts["copies"].append(_prefixed(one["copies"], run, base=base))
        parts["images"].append(_prefixed(one["images"], run, base=base))
    keys = {
        "ceiling": ["leaf", "metric", "encoder", "resize"],
        "copies": ["checkpoint", "image"],
        "images": ["checkpoint", "path"],
    }
    for name, frames in parts.items():
        frames = [f for f in frames if not f.empty]
        if frames:
            joined = pd.concat(frames, ignore_index=True)
            out[name] = joined.drop_duplicates(keys[name]).reset_index(drop=True)
    return out
