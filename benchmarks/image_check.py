"""What the layout scan's decode check costs, and how often the crop-offset rule matters.

    python benchmarks/image_check.py [--repeats 5] [--out benchmarks/results/image_check_DATE.md]

Table 1: milliseconds per file for ``t2ibench.images.check_image`` (the scan-time check: PNG chunk
CRCs, JPEG decoded at 1/8 scale, anything else decoded) against ``open_image`` (the full decode the
encoders do), on a photo-like picture (smooth gradients plus noise) in each format and size; best
of ``--repeats``.

Table 2: the share of non-square source sizes (each side 200 … 1200 px) whose centre crop starts
one pixel apart under torchvision's rule (round) and transformers' (floor), after the short side is
resized to 256 (DINOv2: DreamBench++, PEFT) or 224 (CLIP: DreamBench++), crop 224.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def photo_like(w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([x, y, (x + y) / 2], axis=-1) * 200
    noise = rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def best_ms(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def shift_share(short_target: int, crop: int = 224) -> float:
    from t2ibench.encoders.base import resized_size
    from t2ibench.metric_profiles.preprocess import crop_start

    differ = total = 0
    for w in range(200, 1201):
        for h in range(200, 1201, 7):  # every 7th height keeps it quick; the pattern is periodic
            if w == h:
                continue
            nw, nh = resized_size(w, h, "center-crop", short_target)
            total += 1
            differ += any(
                crop_start(side, crop, "round") != crop_start(side, crop, "floor")
                for side in (nw, nh)
            )
    return differ / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from t2ibench.images import check_image, open_image

    lines = [f"## Decode check vs full decode (ms per file, best of {args.repeats})", "",
             "| format | size | file KiB | check_image | open_image | ratio |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in ((512, 512), (1024, 1024), (4000, 3000)):
            img, size = photo_like(w, h), f"{w}×{h}"
            for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")):
                buf = io.BytesIO()
                img.save(buf, fmt, **({"quality": 90} if fmt != "PNG" else {}))
                path = Path(tmp) / f"p{w}.{ext}"
                path.write_bytes(buf.getvalue())
                check = best_ms(lambda p=path: check_image(p), args.repeats)
                full = best_ms(lambda p=path: open_image(p), args.repeats)
                lines.append(f"| {fmt} | {size} | {len(buf.getvalue()) // 1024} | "
                             f"{check:.1f} | {full:.1f} | {check / full:.2f} |")  # fmt: skip
    lines += ["", "## Crop placed one pixel apart (round vs floor), non-square sources", "",
              "| short side resized to | crop | share of sizes |", "|---|---|---|"]  # fmt: skip
    for target in (256, 224):
        lines.append(f"| {target} | 224 | {100 * shift_share(target):.1f} % |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
