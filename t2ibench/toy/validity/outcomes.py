"""The probe over a sweep's images: every generated image found, probed once (cached by image hash
in ``<sweep>/probe_cache.parquet``), and summarised per (run, checkpoint, leaf, prompt type) group
as the ground-truth rates (``probe_outcomes.csv``)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from t2ibench import csvsafe
from t2ibench.errors import ResultsError
from t2ibench.fsutil import atomic_write_with, file_sha256
from t2ibench.toy import world
from t2ibench.toy.validity.ground_truth import (
    ATTRS,
    GROUP_KEYS,
    PAIRS,
    PRESERVED,
    outcome_tuple,
    requested_attributes,
    shows_concept,
)

log = logging.getLogger(__name__)


CACHE_NAME = "probe_cache.parquet"
OUTCOMES_NAME = "probe_outcomes.csv"


# --- finding the images -------------------------------------------------------------------------------
def _runs_root(sweep_dir: Path) -> Path:
    """``<sweep>/runs`` for a sweep; a ``t2ibench run --out`` folder holds the runs itself."""
    return sweep_dir / "runs" if (sweep_dir / "runs").is_dir() else sweep_dir


def run_dirs(sweep_dir: Path) -> list[Path]:
    root = _runs_root(sweep_dir)
    if not root.is_dir():
        raise ResultsError(f"{sweep_dir}: no such sweep folder")
    runs = sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "run.json").is_file()
    )
    if not runs:
        raise ResultsError(f"{root}: no run folders (subfolders with a run.json)")
    return runs


def _base_images_dir(run_dir: Path) -> Path | None:
    """The run's base-model images: run.json ``base_images`` (looked up under this sweep's
    ``.base-images`` first, so a moved sweep folder still works), else an old-style images/base."""
    try:
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{run_dir / 'run.json'}: not JSON ({exc.msg})") from None
    spec = record.get("base_images")
    candidates = []
    if spec:
        candidates += [run_dir.parent / ".base-images" / Path(spec).name, Path(spec)]
    candidates.append(run_dir / "images" / "base")
    for c in candidates:
        if (c / "manifest.jsonl").is_file():
            return c
    return None


def _image_table(sweep_dir: Path) -> pd.DataFrame:
    """One row per generated image (runs' checkpoints and the base images they share)."""
    from t2ibench.pipeline.manifest import MANIFEST_NAME, read_manifest

    rows: list[dict] = []
    seen_base: dict[Path, str] = {}
    for run_dir in run_dirs(sweep_dir):
        folders = []
        images = run_dir / "images"
        if images.is_dir():
            folders = [
                (run_dir.name, d)
                for d in sorted(images.iterdir())
                if d.name != "base" and (d / MANIFEST_NAME).is_file()
            ]
        base = _base_images_dir(run_dir)
        base_label = ""
        if base is not None:
            key = base.resolve()
            if key not in seen_base:
                seen_base[key] = f"base:{base.name}"
                folders.append((seen_base[key], base))
            base_label = seen_base[key]
        for run_name, folder in folders:
            for r in read_manifest(folder / MANIFEST_NAME):
                path = r.path(folder)
                if not path.is_file():
                    raise ResultsError(f"{folder / MANIFEST_NAME}: file {r.file!r} is missing")
                rows.append(
                    {
                        "run": run_name,
                        "base_of": base_label if not run_name.startswith("base:") else "",
                        "checkpoint": r.checkpoint,
                        "leaf": r.leaf,
                        "prompt_type": r.prompt_type,
                        "prompt": r.prompt,
                        "gen_seed": r.seed,
                        "index": -1 if r.index is None else r.index,
                        "variant": r.variant,
                        "sha256": r.sha256 or file_sha256(path),
                        "path": str(path),
                    }
                )
    if not rows:
        raise ResultsError(f"{sweep_dir}: no generated images (no images/*/manifest.jsonl)")
    return pd.DataFrame(rows)


# --- the probe, cached ------------------------------------------------------------------------------
def _probe_id(folder: Path) -> str:
    h = hashlib.sha256()
    for name in ("config.json", "probe.safetensors"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()[:16]


def probe_images(
    paths: Sequence[str], hashes: Sequence[str], cache: Path, probe_dir: Path | None = None,
    batch: int = 512,
) -> pd.DataFrame:  # fmt: skip
    """Probe predictions (columns sha256 + attributes) for the given images, cached by hash.

    Only images whose hash is not in ``cache`` (for the same probe weights) are read and probed, on
    the CPU in fixed batches, so a rerun costs nothing and the output does not depend on the batch.
    """
    import torch

    from t2ibench.images import open_image
    from t2ibench.toy.probe import PROBE_DIR, Probe

    probe_dir = Path(probe_dir or PROBE_DIR)
    if not (probe_dir / "probe.safetensors").is_file():
        raise ResultsError(f"{probe_dir}: the toy probe's weights are not installed")
    pid = _probe_id(probe_dir)
    known = pd.DataFrame(columns=["sha256", "probe", *ATTRS])
    if cache.is_file():
        try:
            known = pd.read_parquet(cache)
        except Exception as exc:  # a damaged cache is only lost time: recompute
            log.warning("%s: unreadable probe cache (%s); recomputing", cache, exc)
        else:
            known = known[known["probe"] == pid]
    have = set(known["sha256"])
    todo = {h: p for p, h in zip(paths, hashes, strict=True) if h not in have}
    if todo:
        probe = Probe.load(probe_dir)
        probe.net.to("cpu")
        torch.manual_seed(0)
        items = sorted(todo.items())
        new = []
        for i in range(0, len(items), batch):
            chunk = items[i : i + batch]
            images = []
            for _, p in chunk:
                images.append(open_image(p))
            for (h, _), pred in zip(chunk, probe.predict(images), strict=True):
                new.append({"sha256": h, "probe": pid, **pred})
        known = pd.concat([known, pd.DataFrame(new)], ignore_index=True)
        known = known.drop_duplicates("sha256", keep="last").sort_values("sha256")
        atomic_write_with(cache, lambda t: known.to_parquet(t, index=False))
    return known.drop(columns="probe").reset_index(drop=True)


def _vendi_groups_by_prompt(prompt_type: str) -> bool:
    """Whether the Vendi metric is computed per prompt then averaged on this prompt type (alter);
    the distinct-outcome count mirrors it so both count the same thing."""
    from t2ibench.metrics import get_metric

    try:
        return get_metric("vendi").group_by.get(prompt_type) == "prompt"
    except Exception:
        return False


def _entropy(counts: Sequence[int]) -> float:
    p = np.asarray(counts, float)
    p = p / p.sum()
    return float(-(p * np.log(p)).sum())


def _group_outcomes(g: pd.DataFrame, by_prompt: bool) -> dict[str, float]:
    n = len(g)
    concept = g["concept"].to_numpy(bool)
    req = g["requested"].to_numpy(bool)
    out: dict[str, float] = {
        "n_images": n,
        "concept_rate": float(concept.mean()),
        "n_attribute_prompts": int(req.sum()),
        "attribute_follow_rate": float(g["follows"][req].mean()) if req.any() else math.nan,
    }
    parts = [sub for _, sub in g.groupby("prompt", sort=True)] if by_prompt else [g]
    distinct = [len(set(sub["outcome"])) for sub in parts]
    counts = [list(Counter(sub["outcome"]).values()) for sub in parts]
    out["distinct_outcomes"] = float(np.mean(distinct))
    out["distinct_outcomes_norm"] = float(
        np.mean([d / len(s) for d, s in zip(distinct, parts, strict=True)])
    )
    out["outcome_entropy"] = float(np.mean([_entropy(c) for c in counts]))
    agnostic = g["prompt_type"].iat[0] == "concept-agnostic"
    out["leak_rate"] = float(concept.mean()) if agnostic else math.nan
    paired = g["base_agree"].notna().to_numpy()
    if paired.any():
        agree = g["base_agree"][paired].astype(float).mean()
        out["base_agreement_rate"] = float(agree)
        out["base_change_rate"] = float(1.0 - agree)
    else:
        out["base_agreement_rate"] = out["base_change_rate"] = math.nan
    return out


def has_images(sweep_dir: str | os.PathLike) -> bool:
    """Whether the sweep folder still holds its generated images (a committed reference sweep
    keeps only the tables; its report is recomputed from ``probe_outcomes.csv``)."""
    try:
        runs = run_dirs(Path(sweep_dir))
    except ResultsError:
        return False
    return any(any((r / "images").glob("*/manifest.jsonl")) for r in runs)


def probed_images(
    sweep_dir: str | os.PathLike, probe_dir: str | os.PathLike | None = None
) -> pd.DataFrame:
    """One row per generated toy-world image: the manifest fields, the probe's attributes, and
    ``outcome``, ``concept`` (shows the leaf's concept), ``requested`` (the prompt names a
    base-vocabulary attribute), ``follows`` (every named attribute is shown) and ``base_agree``
    (background, colour and style agree with the seed-paired base image; None when unpaired)."""
    sweep_dir = Path(sweep_dir)
    images = _image_table(sweep_dir)
    toy = images["leaf"].isin({c.leaf for c in world.CONCEPTS})
    if not toy.all():
        # A run on another dataset (e.g. the tiny demo) has no ground truth: leave it out.
        other = images.loc[~toy, "run"].unique()
        log.warning("not toy-world leaves, left out: images of %s", ", ".join(sorted(other)))
        images = images[toy].reset_index(drop=True)
        if images.empty:
            raise ResultsError(
                f"{sweep_dir}: no image shows a toy-world leaf; the validity report needs a "
                "sweep on the toy dataset"
            )
    preds = probe_images(
        images["path"].tolist(),
        images["sha256"].tolist(),
        sweep_dir / CACHE_NAME,
        Path(probe_dir) if probe_dir else None,
    )
    df = images.merge(preds, on="sha256", how="left", validate="many_to_one")
    pred_dicts = df[list(ATTRS)].to_dict("records")
    df["outcome"] = [outcome_tuple(p) for p in pred_dicts]
    df["concept"] = [shows_concept(p, leaf) for p, leaf in zip(pred_dicts, df["leaf"], strict=True)]
    wants = [requested_attributes(p) for p in df["prompt"]]
    df["requested"] = [bool(w) for w in wants]
    df["follows"] = [
        all(p[k] == v for k, v in w.items()) for p, w in zip(pred_dicts, wants, strict=True)
    ]

    # Seed-paired base image of every tuned image: same leaf, prompt type, index and seed.
    pair_key = ["leaf", "prompt_type", "index", "gen_seed"]
    base = df[df["run"].str.startswith("base:")]
    base_preserved = {
        (row["run"], *(row[k] for k in pair_key)): tuple(row["outcome"][ATTRS.index(a)] for a in PRESERVED)
        for _, row in base.iterrows()
    }  # fmt: skip
    df["base_agree"] = [
        None
        if (ref := base_preserved.get((row["base_of"], *(row[k] for k in pair_key)))) is None
        else ref == tuple(row["outcome"][ATTRS.index(a)] for a in PRESERVED)
        for _, row in df.iterrows()
    ]
    return df


def probe_outcomes(
    sweep_dir: str | os.PathLike,
    probe_dir: str | os.PathLike | None = None,
    images: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Ground truth per (run, checkpoint, leaf, prompt type) of a sweep, from the probe.

    Columns: ``run`` (run folder; ``base:<hash>`` for the shared base-model images), ``checkpoint``,
    ``leaf``, ``prompt_type``, ``n_images``, ``concept_rate``, ``n_attribute_prompts``,
    ``attribute_follow_rate`` (NaN when no prompt names a base-vocabulary attribute),
    ``distinct_outcomes`` / ``distinct_outcomes_norm`` (÷ images) / ``outcome_entropy`` (nats;
    per prompt then averaged where Vendi is), ``leak_rate`` (concept-agnostic prompts only),
    ``base_agreement_rate`` / ``base_change_rate`` (seed-paired base images; tuned runs only).
    ``images``: the :func:`probed_images` table, when already at hand.
    """
    df = probed_images(sweep_dir, probe_dir) if images is None else images
    rows = []
    for key, g in df.groupby(list(GROUP_KEYS), sort=True):
        rows.append(
            {
                **dict(zip(GROUP_KEYS, key, strict=True)),
                **_group_outcomes(g, _vendi_groups_by_prompt(key[3])),
            }
        )
    out = pd.DataFrame(rows)
    out["n_images"] = out["n_images"].astype(int)
    return out


def read_outcomes(path: str | os.PathLike) -> pd.DataFrame:
    """A ``probe_outcomes.csv`` written by an earlier report (when the images are gone)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, keep_default_na=True)
        for col in df.select_dtypes(include="object"):
            df[col] = df[col].map(csvsafe.unescape_cell)  # written neutralised (csvsafe.to_csv)
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such probe outcomes file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not a probe outcomes CSV ({exc})") from None
    need = [*GROUP_KEYS, "n_images", "n_attribute_prompts", *sorted({p.truth for p in PAIRS})]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ResultsError(f"{path}: not a probe outcomes CSV (missing columns {missing})")
    for c in GROUP_KEYS:
        df[c] = df[c].astype(str)
    return df
