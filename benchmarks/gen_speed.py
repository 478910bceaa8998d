"""Generation options on CPU: what can be measured honestly without a GPU (issue 20 item 5).

    python benchmarks/gen_speed.py [--rounds 7] [--images 8] [--steps 20] [--out benchmarks/results/...md]

On the toy world's trained base (``toy``, its own 32 px and DDIM 20 steps, batch 8; ``--base tiny``
for the random SD1.5 look-alike), one torch thread, ``generate_images`` with each option against
the same call without it, the two alternated round after round (A B, B A, A B, ...) so a load change
on this shared machine hits both alike. Reported: the median seconds of each over the rounds, the
spread (min–max), the ratio of medians, and the largest pixel difference (8-bit levels) between the
two arms' images. Options: ``fuse_adapter`` (a LoRA and a LoHa with random weights on every attention
and MLP layer, ``preset=attn-mlp``), ``attention=sdpa``, ``channels_last`` and ``dtype=bf16``.
``compile`` is not here: inductor compiles C++ for minutes on CPU (``benchmarks/gpu.sh`` times it
on a GPU). CPU figures only: GPU kernels (fp16 tensor cores, flash attention) change the picture.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PROMPTS = ["a toy robot", "a toy robot on a beach", "a watercolor of a toy", "pixel art toy"]


def make_adapter(pipe, algo: str, path: Path) -> Path:
    from t2ibench.adapters import get_trainer
    from t2ibench.adapters.files import build_metadata, save_adapter

    spec = get_trainer(algo)
    cfg = spec.config([("bench", {"preset": "attn-mlp"})])
    net = spec.build_network({"unet": pipe.unet, "te": pipe.text_encoder}, cfg)
    g = torch.Generator().manual_seed(0)
    scale = {"lora": 0.05, "loha": 0.3}[algo]  # LoHa's ΔW is a product of four factors
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    save_adapter(net, path, build_metadata(cfg, None, epoch=1))
    return path


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="toy")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=32)
    day = datetime.date.today().isoformat()
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / f"gen_speed_{day}.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    from t2ibench.models import load_base
    from t2ibench.pipeline.generate import (
        GenerationSettings,
        checkpoint_on_base,
        generate_images,
        job_file,
    )
    from t2ibench.prompts import GenerationJob

    jobs = [
        GenerationJob("bench/leaf", "train", PROMPTS[k % len(PROMPTS)], 1000 + k, k)
        for k in range(args.images)
    ]
    plain = GenerationSettings(
        steps=args.steps, height=args.size, width=args.size, batch_size=args.images
    )
    pipes = {"fp32": load_base(args.base), "bf16": load_base(args.base, dtype=torch.bfloat16)}
    work = Path(tempfile.mkdtemp(prefix="gen-speed-"))
    adapters = {
        a: make_adapter(pipes["fp32"], a, work / f"{a}.safetensors") for a in ("lora", "loha")
    }
    counter = iter(range(10**6))

    def arm(settings, adapter=None):
        """One timed generate_images call into a fresh folder: (seconds, its pixels)."""
        pipe = pipes[settings.dtype]
        folder = work / f"run-{next(counter)}"
        t0 = time.perf_counter()
        if adapter is None:
            generate_images(pipe, jobs, folder, checkpoint="b", settings=settings, progress=False)
        else:
            with checkpoint_on_base(pipe, adapter, fuse=settings.fuse_adapter) as tuned:
                generate_images(
                    tuned, jobs, folder, checkpoint="b", settings=settings, progress=False
                )
        seconds = time.perf_counter() - t0
        pixels = np.stack([np.asarray(Image.open(folder / job_file(j)), np.int16) for j in jobs])
        return seconds, pixels

    comparisons = [
        ("fuse_adapter, LoRA", (plain, adapters["lora"]),
         (replace(plain, fuse_adapter=True), adapters["lora"])),
        ("fuse_adapter, LoHa", (plain, adapters["loha"]),
         (replace(plain, fuse_adapter=True), adapters["loha"])),
        ("attention=sdpa", (plain, None), (replace(plain, attention="sdpa"), None)),
        ("channels_last", (plain, None), (replace(plain, channels_last=True), None)),
        ("dtype=bf16", (plain, None), (replace(plain, dtype="bf16"), None)),
    ]  # fmt: skip
    load_before = os.getloadavg()[0]
    rows = []
    for name, a, b in comparisons:
        arm(*a), arm(*b)  # warm-up of both arms
        times = {"a": [], "b": []}
        diff = 0
        for r in range(args.rounds):
            order = ("a", "b") if r % 2 == 0 else ("b", "a")
            out = {}
            for which in order:
                seconds, pixels = arm(*(a if which == "a" else b))
                times[which].append(seconds)
                out[which] = pixels
            diff = max(diff, int(np.abs(out["a"] - out["b"]).max()))
        ma, mb = statistics.median(times["a"]), statistics.median(times["b"])
        # each round's with / without: both arms ran back to back, so a load change cancels
        paired = [tb / ta for ta, tb in zip(times["a"], times["b"], strict=True)]
        faster = sum(r < 1 for r in paired)
        rows.append((name, ma, min(times["a"]), max(times["a"]), mb, min(times["b"]),
                     max(times["b"]), statistics.median(paired), min(paired), max(paired),
                     faster, diff))  # fmt: skip
        print(f"{name}: without {ma:.3f} s, with {mb:.3f} s, paired ratio "
              f"{statistics.median(paired):.3f}, faster in {faster}/{args.rounds}, max diff {diff}")  # fmt: skip
    load_after = os.getloadavg()[0]

    lines = [
        "# Generation options on CPU",
        "",
        f"{day}, {platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread; "
        f"base `{args.base}`, {args.images} images in one batch, {args.size} px, DDIM "
        f"{args.steps} steps, CFG 7; {args.rounds} alternated rounds per row after one warm-up "
        f"of each arm; load average {load_before:.1f} before, {load_after:.1f} after (a shared "
        "2-core machine). `python benchmarks/gen_speed.py"
        + "".join(" " + a for a in (sys.argv[1:] if argv is None else argv))
        + "`.",
        "",
        "Seconds per `generate_images` call (median, min–max over the rounds); paired ratio = "
        "with / without within each round (both arms back to back), median and min–max over the "
        "rounds (< 1: the option is faster); faster = rounds where it was; max diff: the largest "
        "difference between the two arms' images in 8-bit levels.",
        "",
        "| option | without: median s (min–max) | with: median s (min–max) | paired ratio "
        "(min–max) | faster | max diff |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, ma, la, ha, mb, lb, hb, ratio, rlo, rhi, faster, diff in rows:
        lines.append(
            f"| {name} | {ma:.3f} ({la:.3f}–{ha:.3f}) | {mb:.3f} ({lb:.3f}–{hb:.3f}) | "
            f"{ratio:.3f} ({rlo:.3f}–{rhi:.3f}) | {faster}/{args.rounds} | {diff} |"
        )
    lines += [
        "",
        "Without the option: fp32, plain attention, contiguous weights; the fuse_adapter rows "
        "compare against the same adapter applied as modules (ΔW formed in every forward).",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"written: {out}")
    return out


if __name__ == "__main__":
    main()
