"""Encoder throughput: preprocessing per resize mode, and the feature cache cold vs warm.

    python benchmarks/encoders.py [--n 64] [--size 512] [--real] [--threads T]

Uses the tiny random-weight encoders by default (offline, CPU); ``--real`` loads the real default
weights (they must be in the local cache, or downloadable). Prints images per second for the
preprocessing alone (each resize mode), then for ``encode_images_cached`` on a cold cache (decode +
preprocess + forward + store) and a warm one (hash + read back; no forward pass).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from t2ibench.encoders import (
    RESIZE_MODES,
    FeatureCache,
    Preprocess,
    create_encoder,
    encode_images_cached,
)
from t2ibench.encoders.base import IMAGENET_MEAN, IMAGENET_STD


def write_images(folder: Path, n: int, size: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        # generated images are square in the protocol; every fourth one is 3:2 to exercise shapes
        w, h = (size, size) if i % 4 else (size * 3 // 2, size)
        p = folder / f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--real", action="store_true", help="real default weights instead of tiny")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tiny = not args.real
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
        f"{'tiny' if tiny else 'real'} weights, n = {args.n} images of {args.size} px"
    )
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_images(Path(tmp), args.n, args.size)
        images = [Image.open(p).convert("RGB") for p in paths]

        print(f"\n{'resize mode':>12} {'images/s':>10}")
        for mode in RESIZE_MODES:
            pre = Preprocess(mode, 224, IMAGENET_MEAN, IMAGENET_STD)
            pre(images[0])  # warm-up: the first call imports torchvision's transforms
            t0 = time.perf_counter()
            for im in images:
                pre(im)
            print(f"{mode:>12} {args.n / (time.perf_counter() - t0):>10.1f}")

        header = f"{'encoder':>13} {'cold img/s':>11} {'warm img/s':>11} {'speed-up':>9} {'warm passes':>12}"
        print("\n" + header)
        print("-" * len(header))
        for name in ("dinov2-l", "clip-l14", "convnextv2-l", "vgg19"):
            enc = create_encoder(name, tiny=tiny, device=args.device)
            cache = FeatureCache(Path(tmp) / "cache")
            t0 = time.perf_counter()
            encode_images_cached(enc, paths, cache)
            cold = time.perf_counter() - t0
            passes = enc.forward_passes
            t0 = time.perf_counter()
            encode_images_cached(enc, paths, cache)
            warm = time.perf_counter() - t0
            print(
                f"{name:>13} {args.n / cold:>11.1f} {args.n / warm:>11.1f} {cold / warm:>8.1f}× "
                f"{enc.forward_passes - passes:>12d}"
            )


if __name__ == "__main__":
    main()
