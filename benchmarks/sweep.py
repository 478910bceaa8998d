"""The same small sweep through ``--executor local`` and ``--executor ray`` on this machine.

    HF_HUB_OFFLINE=1 python benchmarks/sweep.py [--configs 2] [--rounds 2] [--cpus N]
        [--epochs 1] [--images-per-leaf 2] [--steps 2]

A tiny-profile grid of ``--configs`` LoRA configs × 1 seed (by default 1 epoch, 2 prompt types,
2 images per leaf, 2 sampling steps: the tests' grid; larger values give each run more work). Each round runs it once per executor, each into a fresh folder, the order
alternating between rounds (local first, then ray first, ...) so neither always meets warm caches.
``local``: the runs one after another in this process with ``--cpus`` torch threads; ``ray``: a
local Ray instance of ``--cpus`` CPUs started by the sweep (its start counted), one run per CPU,
one thread each. Prints one Markdown table: both wall times per round, the ratio ray / local and
the parallel efficiency (local time / (ray time × runs at once)).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

GRID = """
[grid]
name = "bench"
seeds = [23]
seed_labels = ["a"]
profile = "tiny"

[common]
epochs = {epochs}
save_epochs = [{epochs}]
generate.images_per_leaf = {images}
generate.steps = {steps}
generate.prompt_types = ["trigger", "train"]
evaluate.encoders = ["dinov2-l@tiny"]
evaluate.metrics = ["image_similarity", "vendi"]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--images-per-leaf", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    # As the CLI does: OpenMP's busy-waiting makes multi-threaded torch slow on shared cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    load_before = os.getloadavg()[0]

    import torch

    from t2ibench.pipeline.executors.ray import RayExecutor
    from t2ibench.pipeline.sweep import load_grid, run_sweep

    root = Path(tempfile.mkdtemp(prefix="t2ibench-sweep-bench-"))
    lrs = [1e-3 * (i + 1) for i in range(args.configs)]
    configs = "".join(
        f'\n[[config]]\nname = "bench-lr{i}"\ntrainer = "lora"\nlr = {lr}\n'
        for i, lr in enumerate(lrs)
    )
    common = GRID.format(epochs=args.epochs, images=args.images_per_leaf, steps=args.steps)
    (root / "grid.toml").write_text(common + configs)
    grid = load_grid(root / "grid.toml")
    torch.set_num_threads(args.cpus)

    def sweep(kind: str, out: Path) -> tuple[float, float, float]:
        """Wall seconds, seconds to start Ray, mean seconds a run took where it ran."""
        executor = "local" if kind == "local" else RayExecutor(num_cpus=args.cpus)
        t0 = time.perf_counter()
        start = 0.0
        try:
            if not isinstance(executor, str):
                executor._ray()  # started here only to time it; the sweep uses it as it is
                start = time.perf_counter() - t0
            result = run_sweep(grid, out=out, progress=False, executor=executor)
        finally:
            if not isinstance(executor, str):
                executor.close()  # the Ray instance's shutdown is part of the cost
        seconds = time.perf_counter() - t0
        assert not result.failed, result.failed
        per_run = sum(o.seconds for o in result.outcomes) / len(result.outcomes)
        return seconds, start, per_run

    rows = []
    try:
        for r in range(args.rounds):
            order = ["local", "ray"] if r % 2 == 0 else ["ray", "local"]
            times = {}
            for kind in order:
                times[kind] = sweep(kind, root / f"r{r}-{kind}")
                shutil.rmtree(root / f"r{r}-{kind}", ignore_errors=True)
            rows.append((r + 1, " then ".join(order), times["local"], times["ray"]))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    at_once = min(args.cpus, args.configs)
    print(
        f"{args.configs} configs × 1 seed (tiny profile: {args.epochs} epoch(s), 2 prompt types, "
        f"{args.images_per_leaf} images per leaf, {args.steps} steps); {args.cpus} CPUs "
        f"({platform.processor() or platform.machine()}); local: {args.cpus} torch threads, runs "
        f"one after another; ray: {at_once} runs at once, 1 thread each, Ray start and shutdown "
        f"included; load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at "
        "the end\n"
    )
    print(
        "| round | order | local s | ray s | ray / local | parallel efficiency "
        "| Ray start s | s per run, local | s per run, in a Ray worker |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r, order, (local, _, local_run), (ray, start, ray_run) in rows:
        eff = local / (ray * at_once)
        print(
            f"| {r} | {order} | {local:.1f} | {ray:.1f} | {ray / local:.2f} | {eff:.0%} "
            f"| {start:.1f} | {local_run:.1f} | {ray_run:.1f} |"
        )
    local = sum(r[2][0] for r in rows) / len(rows)
    ray = sum(r[3][0] for r in rows) / len(rows)
    eff = local / (ray * at_once)
    print(f"| mean | | {local:.1f} | {ray:.1f} | {ray / local:.2f} | {eff:.0%} | | | |")


if __name__ == "__main__":
    main()
