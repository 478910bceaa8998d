"""``t2ibench size`` on SD3.5 Large and FLUX.2 [klein] 4B: adapter modules, saved parameters and
fp16 file size per trainer and preset, the architectures built on the meta device from their
published configs (``t2ibench/adapters/sizes.py``; no weights, seconds on CPU).

    PYTHONPATH=. python benchmarks/sizes_sd3_flux2.py [--out benchmarks/results/sizes_sd3_flux2_2026-12-07.md]

SD3 counts the transformer plus CLIP-L (``lora_te1_``) and bigG (``lora_te2_``), T5 never;
FLUX.2 [klein] the transformer alone (Qwen3 is never adapted). Each trainer at its defaults.
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
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        print(text)


if __name__ == "__main__":
    main()
