"""VGG-19 style loss under autocast: the error against float64 with the Gram in bf16/fp16 (the old
code path) and with t2ibench's float32 Gram outside autocast (issue 13 item 1).

    python benchmarks/vgg_gram_autocast.py [--size 128] [--out benchmarks/results/...md]

Random seeded weights (no download), on CPU with CPU autocast standing in for CUDA's: the tiny VGG
and the full-size torchvision VGG-19 (cfg "E"). The pair is a near-copy (an image and the same image
with ±3 grey-level noise), the case where the style loss is small and precision matters. Reported:
style loss relative to float64 (model and Grams in float64) for each autocast dtype, with the Gram
taken (a) inside autocast by ``torch.bmm`` as before and (b) by ``gram_matrices`` (float32, autocast
off). The conv layers run under autocast in both (a) and (b).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import platform
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from t2ibench.encoders.base import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from t2ibench.encoders.vgg import TINY_CFG, VggGram
from t2ibench.metrics import gram_matrices, style_loss


def near_copy_pair(size: int) -> torch.Tensor:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-3, 4, a.shape), 0, 255).astype(np.uint8)
    pre = Preprocess("scale", size, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
    return torch.stack([pre(Image.fromarray(a)), pre(Image.fromarray(b))])


def gram_in_autocast(maps: list[torch.Tensor]) -> list[torch.Tensor]:
    """The old path: bmm under the caller's autocast (bf16/fp16 result)."""
    out = []
    for m in maps:
        n, c, h, w = m.shape
        f = m.float().reshape(n, c, h * w)
        out.append(torch.bmm(f, f.transpose(1, 2)) / (c * h * w))
    return out


def loss(grams: list[torch.Tensor]) -> float:
    grams = [g.double() for g in grams]
    if not all(bool(torch.isfinite(g).all()) for g in grams):
        return float("nan")
    return float(style_loss([g[:1] for g in grams], [g[1:] for g in grams])[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    x = near_copy_pair(args.size)
    rows = []
    for label, cfg in (("tiny", TINY_CFG), ("full-size (cfg E)", None)):
        from torchvision.models.vgg import cfgs

        torch.manual_seed(0)
        model = VggGram(list(cfg or cfgs["E"])).eval()
        with torch.no_grad():
            truth = loss(gram_matrices(copy.deepcopy(model).double()(x.double()), torch.float64))
            for dtype in (torch.bfloat16, torch.float16):
                with torch.autocast("cpu", dtype=dtype):
                    maps = model(x)
                    old = loss(gram_in_autocast(maps))
                    new = loss(gram_matrices(maps))
                rows.append((label, str(dtype).removeprefix("torch."), truth, old, new))
    lines = [
        f"# VGG-19 style loss of a near-copy pair under CPU autocast ({args.size} px)",
        "",
        f"{datetime.date.today()}, torch {torch.__version__}, {platform.machine()}; "
        "`python benchmarks/vgg_gram_autocast.py` (random seeded weights).",
        "",
        "| VGG | autocast | float64 loss | Gram in autocast (old): rel. error | "
        "float32 Gram, autocast off (now): rel. error |",
        "|---|---|---|---|---|",
    ]
    for label, dtype, truth, old, new in rows:
        lines.append(
            f"| {label} | {dtype} | {truth:.4g} | {old / truth - 1:+.1%} | {new / truth - 1:+.1%} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
