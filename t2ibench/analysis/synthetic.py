"""Synthetic results tables in the real schema, for tests, benchmarks and demos of ``analyze``.

Values follow simple trends so the analysis has something to find: fidelity rises and text
alignment falls with epoch, learning rate and capacity; attn-only lowers fidelity. Seeded.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

#: (config, algorithm, preset, lr, dim, alpha, factor)
SYNTHETIC_CONFIGS: tuple[tuple, ...] = (
    ("exp-1-lora", "lora", "attn-mlp", 5e-4, 8, 4, np.nan),
    ("exp-2-lora-lr1e-4", "lora", "attn-mlp", 1e-4, 8, 4, np.nan),
    ("exp-3-lora-lr1e-3", "lora", "attn-mlp", 1e-3, 8, 4, np.nan),
    ("exp-4-lora-attnonly", "lora", "attn-only", 5e-4, 8, 4, np.nan),
    ("exp-5-lora32a16", "lora", "attn-mlp", 5e-4, 32, 16, np.nan),
    ("exp-11-loha", "loha", "attn-mlp", 5e-4, 4, 2, np.nan),
    ("exp-12-loha-lr1e-4", "loha", "attn-mlp", 1e-4, 4, 2, np.nan),
    ("exp-13-loha-full", "loha", "full", 5e-4, 4, 2, np.nan),
    ("exp-14-loha16a1", "loha", "attn-mlp", 5e-4, 16, 1, np.nan),
    ("exp-21-lokr", "lokr", "attn-mlp", 5e-4, 10000, 1, 8),
    ("exp-22-lokr-f4", "lokr", "attn-mlp", 5e-4, 10000, 1, 4),
    ("exp-23-lokr-lr1e-3", "lokr", "attn-mlp", 1e-3, 10000, 1, 8),
    ("exp-24-lokr-f12", "lokr", "attn-mlp", 5e-4, 10000, 1, 12),
    ("exp-31-native", "native", "attn-mlp", 1e-6, np.nan, np.nan, np.nan),
    ("exp-32-native-lr5e-6", "native", "attn-mlp", 5e-6, np.nan, np.nan, np.nan),
    ("exp-33-native-lr5e-7", "native", "attn-mlp", 5e-7, np.nan, np.nan, np.nan),
)
SYNTHETIC_LEAVES: tuple[tuple[str, str, str], ...] = (
    ("anime", "abukuma", "anime/abukuma"),
    ("anime", "ikamusume", "anime/ikamusume/dca outfit"),
    ("anime", "ikamusume", "anime/ikamusume/none"),
    ("people", "rose", "people/rose"),
    ("people", "saw", "people/saw"),
    ("people", "piett", "people/piett"),
    ("scene", "castle", "scene/castle"),
    ("scene", "canal", "scene/canal"),
    ("stuffed_toy", "bunny", "stuffed_toy/bunny"),
    ("stuffed_toy", "panda", "stuffed_toy/panda"),
)
#: (metric, prompt_type, encoder, resize)
SYNTHETIC_MEASURES: tuple[tuple[str, str, str, str], ...] = (
    ("image_similarity", "train", "dinov2-l", "letterbox"),
    ("image_similarity", "alter", "dinov2-l", "letterbox"),
    ("centroid_distance", "train", "dinov2-l", "letterbox"),
    ("text_alignment", "train", "clip-l14", "stretch"),
    ("text_alignment", "alter", "clip-l14", "stretch"),
    ("vendi", "train", "dinov2-l", "stretch"),
    ("style_loss", "style", "vgg19", "scale"),
)


def synthetic_results(
    seeds: tuple[str, ...] = ("a", "b", "c"),
    epochs: tuple[int, ...] = (10, 30, 50),
    n_rows: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """A results table: 16 configs × seeds × epochs × 10 leaves × 7 measurements (10,080 rows by
    default); ``n_rows`` truncates it."""
    rng = np.random.default_rng(seed)
    lr_level = {}
    for algo in {c[1] for c in SYNTHETIC_CONFIGS}:
        lrs = sorted({c[3] for c in SYNTHETIC_CONFIGS if c[1] == algo})
        lr_level.update({(algo, lr): i for i, lr in enumerate(lrs)})
    rows = []
    for cfg, s, ep in itertools.product(SYNTHETIC_CONFIGS, seeds, epochs):
        name, algo, preset, lr, dim, alpha, factor = cfg
        # "fit" grows with training: epochs, lr, capacity; attn-only learns less.
        fit = ep / 50 + 0.3 * lr_level[(algo, lr)]
        fit += 0.3 * ((dim == 32) or (factor == 4)) - 0.4 * (preset == "attn-only")
        fit += {"lora": 0.1, "loha": -0.1, "lokr": 0.2, "native": 0.0}[algo]
        ckpt = f"ddim-v1-5-{name}-{s}-{ep:06d}"
        for cat, cls, leaf in SYNTHETIC_LEAVES:
            over = cat in ("scene", "stuffed_toy") and ep > 10  # few images: overtrained
            f = fit - (1.5 * (ep / 50) if over else 0.0)
            for metric, pt, enc, res in SYNTHETIC_MEASURES:
                base = {
                    "image_similarity": 0.5 + 0.1 * f,
                    "centroid_distance": 0.4 - 0.08 * f,
                    "text_alignment": 0.3 - 0.03 * f,
                    "vendi": 6.0 - 0.5 * f,
                    "style_loss": 1e3 + 300 * f,
                }[metric]
                value = base + abs(base) * 0.05 * rng.standard_normal()
                rows.append(
                    (ckpt, name, s, ep, cat, cls, leaf, pt, metric, enc, res, value,
                     algo, preset, lr, dim, alpha, factor, "caption.txt")
                )  # fmt: skip
    df = pd.DataFrame(
        rows,
        columns=[
            "checkpoint", "config", "seed", "epoch", "category", "class", "leaf",
            "prompt_type", "metric", "encoder", "resize", "value",
            "algorithm", "preset", "lr", "dim", "alpha", "factor", "caption",
        ],
    )  # fmt: skip
    return df.head(n_rows) if n_rows is not None else df
