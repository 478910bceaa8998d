"""Generation time: ``generate_images`` against a plain diffusers loop over the same jobs.

Both use the same loaded pipeline, batch size, per-image generators and PNG files, so the ratio is
the cost of what ``generate_images`` adds (manifest, hashing, fsync, atomic renames, resume
bookkeeping). Repeats alternate the two methods; the table reports the median. Target ≤ 1.05×.

    python benchmarks/generate.py                      # tiny base, CPU
    python benchmarks/generate.py --base /path/to/sd15 --size 512 --steps 30 --device cuda
    python benchmarks/generate.py --random-sd15 --size 256 --steps 4   # full-size UNet, random weights
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from t2ibench.models import load_base
from t2ibench.pipeline.generate import GenerationSettings, generate_images
from t2ibench.prompts import GenerationJob

PROMPTS = [
    "kiro robot, red background",
    "a watercolor painting of a kiro robot",
    "blbo stuffed toy on a beach",
    "twrq scene at night, pixel art",
    "a pencil drawing of a castle",
    "dtsy style, a tree",
    "kiro robot, vstx outfit, walking in the rain",
    "blbo stuffed toy in the style of Claude Monet",
]


def plain_loop(pipe, jobs, out: Path, s: GenerationSettings) -> None:
    """What a user would write with diffusers alone: batched calls, one generator per image."""
    out.mkdir(parents=True, exist_ok=True)
    for first in range(0, len(jobs), s.batch_size):
        batch = jobs[first : first + s.batch_size]
        images = pipe(
            prompt=[j.prompt for j in batch],
            num_inference_steps=s.steps,
            guidance_scale=s.guidance_scale,
            height=s.height,
            width=s.width,
            eta=s.eta,
            generator=[torch.Generator("cpu").manual_seed(j.seed) for j in batch],
        ).images
        for j, image in zip(batch, images, strict=True):
            image.save(out / f"{j.index:04d}-s{j.seed}.png")


def random_sd15(device: str, dtype: torch.dtype):
    """SD1.5's architecture with random weights from the bundled configs (no download)."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from t2ibench.models.sd15 import sd15_config_folder

    folder = sd15_config_folder()
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        unet=UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet")),
        scheduler=DDIMScheduler.from_pretrained(folder / "scheduler"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    from diffusers.models.attention_processor import AttnProcessor

    pipe.unet.set_attn_processor(AttnProcessor())
    pipe.vae.set_attn_processor(AttnProcessor())
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="tiny")
    ap.add_argument("--random-sd15", action="store_true", help="full-size SD1.5, random weights")
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    if args.random_sd15:
        pipe, label = random_sd15(args.device, dtype), "SD1.5 architecture, random weights"
    else:
        pipe, label = load_base(args.base, device=args.device, dtype=dtype), args.base
    jobs = [
        GenerationJob("bench/leaf", "train", PROMPTS[k % len(PROMPTS)], 1000 + k, k)
        for k in range(args.jobs)
    ]
    s = GenerationSettings(
        steps=args.steps,
        height=args.size,
        width=args.size,
        batch_size=args.batch_size,
        dtype="fp16" if dtype == torch.float16 else "fp32",
    )
    # Warm-up (allocator, kernels, tokenizer caches) outside the timings.
    with tempfile.TemporaryDirectory() as tmp:
        plain_loop(pipe, jobs[: args.batch_size], Path(tmp), s)

    times: dict[str, list[float]] = {"plain diffusers loop": [], "generate_images": []}
    root = Path(tempfile.mkdtemp(prefix="t2ibench-bench-"))
    try:
        for r in range(args.repeats):
            for name in times if r % 2 == 0 else reversed(list(times)):
                out = root / f"{r}-{name.replace(' ', '_')}"
                t0 = time.perf_counter()
                if name == "generate_images":
                    generate_images(pipe, jobs, out, checkpoint="base", settings=s, progress=False)
                else:
                    plain_loop(pipe, jobs, out, s)
                times[name].append(time.perf_counter() - t0)
                shutil.rmtree(out)
            # Resume cost: a rerun over a finished folder (hash check of every image).
        out = root / "resume"
        generate_images(pipe, jobs, out, checkpoint="base", settings=s, progress=False)
        t0 = time.perf_counter()
        generate_images(pipe, jobs, out, checkpoint="base", settings=s, progress=False)
        resume = time.perf_counter() - t0
    finally:
        shutil.rmtree(root, ignore_errors=True)

    base = statistics.median(times["plain diffusers loop"])
    print(
        f"base: {label}; device {args.device} ({torch.get_num_threads()} threads), "
        f"{args.jobs} jobs, {args.size}px, {args.steps} steps, batch {args.batch_size}, "
        f"median of {args.repeats}; torch {torch.__version__}, {os.cpu_count()} CPUs"
    )
    print(f"{'method':<24}{'median s':>10}{'min s':>9}{'img/s':>8}{'ratio':>8}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<24}{med:>10.2f}{min(ts):>9.2f}{args.jobs / med:>8.2f}{med / base:>7.3f}×")
    print(f"{'rerun, all finished':<24}{resume:>10.3f}{'':>9}{'':>8}{resume / base:>7.3f}×")


if __name__ == "__main__":
    main()
