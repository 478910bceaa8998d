"""Per-image CPU cost of each open judge at full size (random weights, 1 thread).

Each judge's full architecture is built from its config with random weights (PickScore: CLIP
ViT-H/14 as in PickScore_v1's config.json; HPSv2.1: open_clip's ViT-H-14), saved to a folder and
loaded back through the judge's own loader, then it scores ``--images`` 512×512 images with a
prompt each after one warm-up image. CPU time (user + sys) is what a judge costs; wall time on a
shared machine is inflated by other processes.

    OMP_NUM_THREADS=1 python benchmarks/judges_cost.py   # writes results/judges_cost_<date>.md
    python benchmarks/judges_cost.py --judges hpsv2 --images 2
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

JUDGES = ("pickscore", "hpsv2")


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_full(judge: str, folder: Path) -> str:
    """Write judge ``judge`` at full size with random weights; returns the weights argument."""
    if judge == "pickscore":
        from t2ibench.metrics.judges.pickscore import FULL_CONFIG, build_random

        build_random(folder, FULL_CONFIG)
        return str(folder)
    if judge == "hpsv2":
        import open_clip

        from t2ibench.metrics.judges.hpsv2 import ARCH, build_random

        build_random(folder, open_clip.get_model_config(ARCH))
        return str(folder)
    raise SystemExit(f"unknown judge {judge}")


def measure(judge: str, n_images: int, root: Path) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    import t2ibench.metrics  # noqa: F401  (registers the judges)
    from t2ibench.encoders import create_encoder

    folder = root / judge
    folder.mkdir()
    t0, c0 = time.perf_counter(), cpu_seconds()
    weights = build_full(judge, folder)
    build = (time.perf_counter() - t0, cpu_seconds() - c0)
    enc = create_encoder(judge, weights=weights, batch_size=1)
    params = sum(p.numel() for p in enc.model.parameters())
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (512, 512, 3), dtype=np.uint8))
              for _ in range(n_images + 1)]  # fmt: skip
    prompt = "a photo of a sks dog wearing a red hat on the beach"
    enc.score(images[:1], [prompt])  # warm-up
    t0, c0 = time.perf_counter(), cpu_seconds()
    for im in images[1:]:
        enc.score([im], [prompt])
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    del enc
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return {
        "judge": judge,
        "params_m": params / 1e6,
        "build_wall": build[0],
        "wall_per_image": wall / n_images,
        "cpu_per_image": cpu / n_images,
        "peak_rss": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--judges", nargs="+", default=list(JUDGES))
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="t2ibench-judges-") as tmp:
        for judge in args.judges:
            rows.append(measure(judge, args.images, Path(tmp)))
            print(rows[-1], flush=True)
    date = datetime.date.today().isoformat()
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        "# Open judges: per-image cost on CPU (full size, random weights, 1 thread)",
        "",
        f"Measured {date} by `python benchmarks/judges_cost.py --images {args.images}`: "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} thread, "
        f"Python {platform.python_version()}; load average at the end {load} (1 / 5 / 15 min): "
        "wall time is inflated on a shared machine, CPU time (user + sys) much less. One 512×512 "
        "image and one prompt per call (batch 1), after one warm-up call; the judge's own "
        "preprocessing included.",
        "",
        "| judge | parameters (M) | CPU s / image | wall s / image | peak RSS MiB (process) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['judge']} | {r['params_m']:.0f} | {r['cpu_per_image']:.2f} | "
            f"{r['wall_per_image']:.2f} | {r['peak_rss']:.0f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"judges_cost_{date}.md"
    path.write_text("\n".join(lines) + "\n")
    print(path)


if __name__ == "__main__":
    sys.exit(main())
