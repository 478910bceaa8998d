"""``t2ibench size`` on SD3.5 Large and FLUX.2 [klein] 4B: adapter modules, saved parameters and
fp16 file size per trainer and preset, the architectures built on the meta device from their
published configs (``t2ibench/adapters/sizes.py``; no weights, seconds on CPU).

    PYTHONPATH=. python benchmarks/sizes_sd3_flux2.py [--out benchmarks/results/sizes_sd3_flux2_2026-12-07.md]

SD3 counts the transformer plus CLIP-L (``lora_te1_``) and bigG (``lora_te2_``), T5 never;
FLUX.2 [klein] the transformer alone (Qwen3 is never adapted). Each trainer at its defaults.
A second table: the σ shift the flux2-klein plug-in trains with per resolution (its
``flow_shift``: the sampler's ``exp(compute_empirical_mu(tokens, 4 steps))``).
"""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path

TRAINERS = ("lora", "lokr", "peft-lora", "peft-oft", "lycoris-oft")
BASES = ("sd3", "flux2-klein")
PRESETS = ("attn-only", "attn-mlp")


def main() -> None:
    from t2ibench.adapters import adapter_size

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    lines = [
        "# Adapter sizes on SD3.5 Large and FLUX.2 [klein] 4B (meta device)",
        "",
        f"{datetime.date.today()}, {platform.machine()}, "
        "`PYTHONPATH=. python benchmarks/sizes_sd3_flux2.py`",
        "",
        "| base | trainer | preset | modules | params | MiB (fp16) |",
        "|---|---|---|---|---|---|",
    ]
    for base in BASES:
        for trainer in TRAINERS:
            for preset in PRESETS:
                r = adapter_size(trainer, preset=preset, base=base)
                row = f"| {base} | {trainer} | {preset} | {r['modules']} | {r['params']:,} | {r['mib']:.2f} |"
                print(row, flush=True)
                lines.append(row)
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from t2ibench.architectures import get_architecture

    klein = get_architecture("flux2-klein")
    sched = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, time_shift_type="exponential"
    )
    lines += [
        "",
        "| flux2-klein training resolution (px) | image tokens | σ shift |",
        "|---|---|---|",
    ]
    for px in (64, 512, 1024):
        side = px // 16  # VAE ×8, then the 2×2 patchify
        shift = klein.flow_shift(sched, torch.zeros(1, 128, side, side))
        lines.append(f"| {px} | {side * side} | {shift:.2f} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        print(text)


if __name__ == "__main__":
    main()
