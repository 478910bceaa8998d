"""Every registered trainer on every base class that trains: one epoch on the demo dataset, the
saved file re-applied through the base plug-in, on tiny random SDXL- and FLUX-class folders.

    PYTHONPATH=. nice python benchmarks/bases_methods.py \
        [--out benchmarks/results/bases_methods_2026-12-07.md] [--trainers dora peft-lora ...] \
        [--bases sdxl flux flux2-klein]

Tiny folders from ``tests/bases/bases_testutil.py`` (built from configs, random weights), preset
``attn-only`` with the text encoders on (SDXL: CLIP-L + bigG; FLUX: CLIP-L, T5 frozen; FLUX.2
[klein]: none, Qwen3 frozen), 64 px, batch
4, one epoch (the demo dataset: 10 steps). ``modules`` is the number of adapted layers read back
from the saved file; ``s`` the wall time of train + save + re-apply (CPU, shared machine: a rough
figure, not a benchmark of the methods).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    from t2ibench.adapters import apply_adapter, list_trainers, load_trainer_config, train_run
    from t2ibench.data import make_demo_dataset
    from t2ibench.models import load_base
    from tests.bases.bases_testutil import make_tiny_flux, make_tiny_flux2_klein, make_tiny_sdxl

    makers = {"sdxl": make_tiny_sdxl, "flux": make_tiny_flux, "flux2-klein": make_tiny_flux2_klein}

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path)
    ap.add_argument("--trainers", nargs="*", default=None)
    ap.add_argument("--bases", nargs="*", default=["sdxl", "flux"], choices=sorted(makers))
    args = ap.parse_args()
    trainers = args.trainers or list_trainers()
    tmp = Path(tempfile.mkdtemp(prefix="bases-methods-"))
    demo = make_demo_dataset(tmp / "demo")
    rows = []
    try:
        for base in args.bases:
            folder = makers[base](tmp / base)
            pipe = load_base(folder)
            for trainer in trainers:
                t0 = time.perf_counter()
                try:
                    cfg = load_trainer_config(trainer).replace(
                        resolution=64, min_bucket_reso=64, max_bucket_reso=64, batch_size=4,
                        warmup_steps=0, preset="attn-only",
                    )  # fmt: skip
                    res = train_run(
                        trainer, demo, str(folder), tmp / f"{base}-{trainer}", cfg, epochs=1,
                        progress=False, pipe=pipe,
                    )  # fmt: skip
                    with apply_adapter(pipe, res.checkpoints[-1]) as handle:
                        n = len(handle.network)
                    status = "ok"
                except Exception as exc:  # a row per failure, the table goes on
                    n, status = 0, f"FAIL {type(exc).__name__}: {str(exc)[:120]}"
                rows.append((base, trainer, status, n, time.perf_counter() - t0))
                print(*rows[-1], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [
        f"# Every trainer on the {', '.join(args.bases)} base plug-ins (tiny classes)",
        "",
        f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"`PYTHONPATH=. python benchmarks/bases_methods.py --bases {' '.join(args.bases)}`",
        "",
        "| base | trainer | result | modules | s |",
        "|---|---|---|---|---|",
        *(f"| {b} | {t} | {s} | {n} | {sec:.1f} |" for b, t, s, n, sec in rows),
    ]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
