"""Floor and ceiling anchors for the report, computed in the evaluate stage of ``t2ibench run``.

* **Floor**: the base model's images (already generated for the seed-paired metrics) are scored like
  any checkpoint, as checkpoint ``base`` (results part ``results/parts/base``).
* **Ceiling**: the dataset's own images scored against themselves with leave-one-out, as the
  DreamBooth paper's "real images" row: for every metric that compares generated with dataset
  features (inputs ``gen`` + ``ref``) and has a value for one generated image (image similarity,
  centroid distance; not Fréchet distance) and every image encoder, each training image is the
  "generated" set and the leaf's other images the reference; the leaf's value is the mean over its
  images (leaves with one image have none). Written to ``results/anchors/ceiling.parquet``.
* **Copy detection**: for each generated image (base and checkpoints), its nearest training image by
  cosine of the fidelity encoder's features. Two real photos of a leaf are at most as similar as the
  leaf's *copy ceiling* (the largest nearest-neighbour cosine among the leaf's own images); a
  generated image above it is closer to a training image than any two training images are to each
  other. Written to ``results/anchors/copies.parquet``.

``results/anchors/images.parquet`` lists every image (training images as checkpoint ``training``,
the base model's, each checkpoint's) with its leaf, prompt type, index, seed and path, for the
report's seed-paired grids; ``sources.json`` records the folders it came from. Every feature goes through the feature cache, so this re-uses what evaluation encoded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from t2ibench.analysis.anchors import ANCHORS_DIR
from t2ibench.fsutil import atomic_write, atomic_write_with

log = logging.getLogger(__name__)

_IMAGE_KINDS = ("image", "image-text")


def fidelity_encoder(encoders: Sequence[Any]) -> Any | None:
    """The encoder image similarity names (its headline one) when loaded, else a DINO-like one,
    else the first image encoder."""
    from t2ibench.metrics import METRICS

    image = [e for e in encoders if e.kind in _IMAGE_KINDS]
    want = METRICS.get("image_similarity").encoder if "image_similarity" in METRICS else None
    for pick in (
        lambda e: e.name == want,
        lambda e: "dino" in e.name,
        lambda e: e.kind == "image",
        lambda e: True,
    ):
        found = [e for e in image if pick(e)]
        if found:
            return found[0]
    return None


def _loo_metrics(metrics: Sequence[str]) -> list:
    from t2ibench.metrics import get_metric

    return [s for s in map(get_metric, metrics) if set(s.inputs) == {"gen", "ref"}]


def real_image_ceiling(
    dataset, encoders: Sequence[Any], metrics: Sequence[str], cache
) -> pd.DataFrame:
    """Leave-one-out value of each ``gen``/``ref`` metric per leaf and image encoder."""
    from t2ibench.evaluation.providers import encode_images as encode_images_cached

    specs = _loo_metrics(metrics)
    rows = []
    for enc in (e for e in encoders if e.kind in _IMAGE_KINDS):
        for key, leaf in sorted(dataset.leaves.items()):
            paths = [im.path for im in leaf.images]
            if len(paths) < 2 or not specs:
                continue
            feats = encode_images_cached(enc, paths, cache)
            for spec in specs:
                vals = []
                try:
                    for i in range(len(paths)):
                        others = [j for j in range(len(paths)) if j != i]
                        vals.append(float(spec.function(gen=feats[i : i + 1], ref=feats[others])))
                except ValueError:  # a distribution metric (Fréchet) has no one-image value
                    continue
                rows.append(
                    {
                        "leaf": key,
                        "category": leaf.category,
                        "metric": spec.name,
                        "encoder": enc.name,
                        "resize": enc.preprocess.resize,
                        "value": sum(vals) / len(vals),
                        "n_images": len(paths),
                    }
                )
    return pd.DataFrame(rows)


def _unit(x):
    import torch

    return torch.nn.functional.normalize(x.float(), dim=-1)


def copy_detection(dataset, encoder, image_dirs: Mapping[str, Path], cache) -> pd.DataFrame:
    """Per generated image: its nearest training image (cosine), that leaf's copy ceiling and
    whether the image is above it."""
    from t2ibench.evaluation.providers import encode_images as encode_images_cached
    from t2ibench.pipeline.manifest import MANIFEST_NAME, read_manifest

    train_paths, train_leaf = [], []
    for key, leaf in sorted(dataset.leaves.items()):
        for im in leaf.images:
            train_paths.append(Path(im.path))
            train_leaf.append(key)
    if not train_paths:
        return pd.DataFrame()
    ref = _unit(encode_images_cached(encoder, train_paths, cache))
    sim = ref @ ref.T
    sim.fill_diagonal_(-2.0)
    nn_real = sim.max(dim=1).values
    ceiling: dict[str, float] = {}
    for i, leaf in enumerate(train_leaf):
        if sum(1 for x in train_leaf if x == leaf) >= 2:
            ceiling[leaf] = max(ceiling.get(leaf, -2.0), float(nn_real[i]))
    rows = []
    for checkpoint, folder in image_dirs.items():
        folder = Path(folder)
        if not (folder / MANIFEST_NAME).is_file():
            continue
        records = read_manifest(folder / MANIFEST_NAME)
        paths = [r.path(folder) for r in records]
        gen = _unit(encode_images_cached(encoder, paths, cache))
        best = (gen @ ref.T).max(dim=1)
        for r, p, s, j in zip(records, paths, best.values, best.indices, strict=True):
            near_leaf = train_leaf[int(j)]
            c = ceiling.get(near_leaf)
            rows.append(
                {
                    "checkpoint": checkpoint,
                    "leaf": r.leaf,
                    "prompt_type": r.prompt_type,
                    "prompt": r.prompt,
                    "seed": r.seed,
                    "image": str(p),
                    "nearest_leaf": near_leaf,
                    "nearest_image": str(train_paths[int(j)]),
                    "similarity": float(s),
                    "copy_ceiling": c,
                    "above_ceiling": bool(c is not None and float(s) > c),
                    "encoder": encoder.name,
                }
            )
    return pd.DataFrame(rows)


def image_index(dataset, image_dirs: Mapping[str, Path]) -> pd.DataFrame:
    """Every image the report may show: the dataset's (checkpoint ``training``) and each folder's
    manifest records, with absolute paths checked to stay inside their folder."""
    from t2ibench.pipeline.manifest import MANIFEST_NAME, read_manifest

    rows = []
    for key, leaf in sorted(dataset.leaves.items()):
        for i, im in enumerate(leaf.images):
            rows.append(dict(checkpoint="training", leaf=key, prompt_type="", index=i, seed=-1,
                             prompt="", path=str(im.path)))  # fmt: skip
    for checkpoint, folder in image_dirs.items():
        folder = Path(folder)
        if not (folder / MANIFEST_NAME).is_file():
            continue
        for r in read_manifest(folder / MANIFEST_NAME):
            rows.append(dict(checkpoint=checkpoint, leaf=r.leaf, prompt_type=r.prompt_type,
                             index=-1 if r.index is None else r.index, seed=r.seed,
                             prompt=r.prompt, path=str(r.path(folder))))  # fmt: skip
    return pd.DataFrame(rows)


def evaluate_anchors(
    results_dir: Path,
    dataset,
    make_encoders: Callable[[], list],
    metrics: Sequence[str],
    base_images: Path,
    image_dirs: Mapping[str, Path],
    cache,
    progress: bool = True,
    plans: Callable[[list], list] | None = None,
    base: str | None = None,
) -> None:
    """Score the base model as checkpoint ``base`` and write the ceiling and copy-detection tables
    (each step skipped when its output exists: a resumed run redoes nothing). ``plans(encoders)``:
    what the engine computes (a metric profile's measures), as for checkpoints. ``base``: the
    results' ``base`` column of the base model's rows (the base the run used)."""
    from t2ibench.pipeline.evaluate import evaluate_images
    from t2ibench.results import append_results, read_results, write_results

    results_dir = Path(results_dir)
    part = results_dir / "parts" / "base"
    anchors = results_dir / ANCHORS_DIR
    all_dirs = {"base": Path(base_images), **{k: Path(v) for k, v in image_dirs.items()}}
    sources = {"dataset": str(dataset.root), "images": {k: str(v) for k, v in all_dirs.items()}}
    src_path = anchors / "sources.json"
    fresh = src_path.is_file() and json.loads(src_path.read_text()) == sources
    need_base = not (part / "results.parquet").is_file()
    need_anchors = not (
        fresh
        and all(
            (anchors / f).is_file() for f in ("ceiling.parquet", "copies.parquet", "images.parquet")
        )
    )
    if need_base or need_anchors:
        encoders = make_encoders()
        if need_base:
            df = evaluate_images(
                base_images,
                dataset,
                encoders,
                metrics=metrics,
                base_images_dir=base_images,
                cache=cache,
                checkpoint_info={"base": {"config": "base", "seed": "", "epoch": 0}},
                plans=plans(encoders) if plans else None,
                progress=progress,
            )
            write_results(df, part, formats=("parquet",))
        if need_anchors:
            anchors.mkdir(parents=True, exist_ok=True)
            ceil = real_image_ceiling(dataset, encoders, metrics, cache)
            atomic_write_with(
                anchors / "ceiling.parquet", lambda t: ceil.to_parquet(t, index=False)
            )
            enc = fidelity_encoder(encoders)
            copies = copy_detection(dataset, enc, all_dirs, cache) if enc else pd.DataFrame()
            atomic_write_with(
                anchors / "copies.parquet", lambda t: copies.to_parquet(t, index=False)
            )
            index = image_index(dataset, all_dirs)
            atomic_write_with(
                anchors / "images.parquet", lambda t: index.to_parquet(t, index=False)
            )
            atomic_write(src_path, json.dumps(sources, indent=2, sort_keys=True))
    rows = read_results(part)
    append_results(rows if base is None else rows.assign(base=base), results_dir)
