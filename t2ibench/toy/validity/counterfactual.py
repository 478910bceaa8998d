"""Counterfactual alignment: the same images scored against their prompts with the attribute words
swapped; an alignment metric that measures attributes must lose alignment."""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from t2ibench.toy import world
from t2ibench.toy.validity.ground_truth import requested_attributes
from t2ibench.toy.validity.statistics import FEW_RUNS, N_BOOT, percentile_ci

_BASE_VOCAB = {
    "shape": world.BASE_SHAPES,
    "colour": world.BASE_COLOURS,
    "background": world.BASE_BACKGROUNDS,
    "style": world.BASE_STYLES,
}


def swap_attributes(prompt: str) -> str | None:
    """The prompt with every base-vocabulary attribute it names replaced by the next value of the
    same attribute ("a red star on a striped background" → "a green star on a black background");
    None when it names none. Only the attribute words change."""
    wants = requested_attributes(prompt)
    for attr, word in wants.items():
        vocab = _BASE_VOCAB[attr]
        new = vocab[(vocab.index(word) + 1) % len(vocab)]
        prompt = re.sub(rf"(?<![a-z]){word}(?![a-z])", new, prompt, flags=re.IGNORECASE)
    return prompt if wants else None


def _toy_leaf(leaf: str):
    """The :class:`t2ibench.data.Leaf` of a toy leaf, as the toy dataset declares it, so the
    counterfactual texts are cleaned exactly as the alignment metric cleans its prompts."""
    from t2ibench.data import Concept, Leaf, Subclass
    from t2ibench.toy.dataset import KIND

    c = world.concept(leaf)
    subs = {
        o.subclass: Subclass(o.subclass, o.subclass_keyword.split()[0], o.subclass_keyword)
        for o in world.CONCEPTS
        if (o.category, o.cls) == (c.category, c.cls) and o.subclass and o.subclass_keyword
    }
    concept = Concept(
        key=f"{c.category}/{c.cls}",
        category=c.category,
        name=c.cls,
        trigger=c.trigger,
        class_word=c.class_word,
        kind=KIND[c.category],
        class_name=c.class_name,
        alter_templates=f"alter_{KIND[c.category]}.txt",
        repeats="auto",
        descriptor=f"{c.trigger} {c.class_word}",
        subclasses=subs,
    )
    return Leaf(leaf, concept, subs.get(c.subclass) if c.subclass else None, ())


def counterfactual_alignment(
    images: pd.DataFrame,
    encoder: str = "toy-clip",
    resize: str | None = None,
    weights: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Per image: cosine alignment with its own cleaned prompt and with the same prompt after
    :func:`swap_attributes`, and ``drop`` = original − swapped.

    ``images``: rows with ``path``, ``prompt``, ``leaf`` (and any other columns, kept). Images whose
    prompt names no base-vocabulary attribute are left out. Both texts go through
    :func:`t2ibench.prompts.clean_prompt`, so for objects and scenes both keep the class name: the
    drop isolates the attribute words from concept presence.
    """
    import torch

    from t2ibench.encoders import create_encoder
    from t2ibench.images import open_image
    from t2ibench.prompts import clean_prompt

    swapped = images["prompt"].map(swap_attributes)
    df = images[swapped.notna()].assign(swapped=swapped[swapped.notna()]).reset_index(drop=True)
    if df.empty:
        return df.assign(text=[], swapped_text=[], cos_original=[], cos_swapped=[], drop=[])
    leaves = {leaf: _toy_leaf(leaf) for leaf in df["leaf"].unique()}
    df["text"] = [
        clean_prompt(p, leaves[lf]) for p, lf in zip(df["prompt"], df["leaf"], strict=True)
    ]
    df["swapped_text"] = [
        clean_prompt(p, leaves[lf]) for p, lf in zip(df["swapped"], df["leaf"], strict=True)
    ]
    enc = create_encoder(encoder, weights=str(weights) if weights else None, resize=resize)
    feats = []
    for start in range(0, len(df), 256):
        batch = []
        for p in df["path"].iloc[start : start + 256]:
            batch.append(open_image(p))
        feats.append(enc.encode_images(batch))
    img = torch.nn.functional.normalize(torch.cat(feats).double(), dim=1)
    t_o = torch.nn.functional.normalize(enc.encode_texts(df["text"].tolist()).double(), dim=1)
    t_s = torch.nn.functional.normalize(
        enc.encode_texts(df["swapped_text"].tolist()).double(), dim=1
    )
    df["cos_original"] = (img * t_o).sum(1).numpy()
    df["cos_swapped"] = (img * t_s).sum(1).numpy()
    df["drop"] = df["cos_original"] - df["cos_swapped"]
    return df


def _mean_ci_by_cluster(
    values: np.ndarray, clusters: np.ndarray, n_boot: int, seed: int
) -> tuple[float, float, str]:
    """Percentile CI of the mean of ``values`` with whole clusters resampled (images when there
    is only one cluster, and the unit says so)."""
    rng = np.random.default_rng(seed)
    labels, inv = np.unique(clusters, return_inverse=True)
    unit = "run"
    if len(labels) < 2:
        inv, unit = np.arange(len(values)), "image (one run)"
    sums = np.bincount(inv, weights=values)
    counts = np.bincount(inv).astype(float)
    idx = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    reps = sums[idx].sum(1) / counts[idx].sum(1)
    lo, hi = percentile_ci(reps)
    return lo, hi, unit


def counterfactual_summary(
    per_image: pd.DataFrame, n_boot: int = N_BOOT, seed: int = 0
) -> pd.DataFrame:
    """The paired drop (original − swapped alignment) with a cluster-bootstrap CI by run: over all
    images, over the images the probe says follow their prompt (when known), and per leaf.
    ``verdict``: ``loses alignment`` when the CI lies above 0, ``gains`` below, else inconclusive."""
    scopes: list[tuple[str, pd.DataFrame]] = [("all images", per_image)]
    if "follows" in per_image.columns:
        follows = per_image["follows"].astype(bool)
        scopes.append(("images that follow their prompt (probe)", per_image[follows]))
        scopes.append(("images that do not follow it (probe)", per_image[~follows]))
    scopes += [(f"leaf {leaf}", g) for leaf, g in per_image.groupby("leaf", sort=True)]
    rows = []
    for i, (scope, g) in enumerate(scopes):
        if g.empty:
            continue
        drop = g["drop"].to_numpy(float)
        clusters = g["run"].astype(str).to_numpy() if "run" in g.columns else np.zeros(len(g))
        lo, hi, unit = _mean_ci_by_cluster(drop, clusters, n_boot, seed + i)
        verdict = "loses alignment" if lo > 0 else "gains alignment" if hi < 0 else "inconclusive"
        rows.append(
            {
                "scope": scope,
                "n_images": len(g),
                "n_runs": int(pd.Series(clusters).nunique()),
                "mean_original": float(g["cos_original"].mean()),
                "mean_swapped": float(g["cos_swapped"].mean()),
                "mean_drop": float(drop.mean()),
                "ci_low": lo,
                "ci_high": hi,
                "resampled": unit,
                "share_lower": float((drop > 0).mean()),
                "verdict": verdict,
                "note": f"only {len(set(clusters))} runs: the interval is optimistic"
                if len(set(clusters)) < FEW_RUNS
                else "",
            }
        )
    return pd.DataFrame(rows)
