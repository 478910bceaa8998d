"""Sharded generation (Ray workers) against local generation of the same images, and the paper
sweep's makespan on N GPUs.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/shard.py [--images 32] [--rounds 3]

Part 1, on this machine: the tiny base model makes the same ``--images`` images (64 px, DDIM 10,
batch 4) locally at 1 thread and by :func:`t2ibench.pipeline.shard.generate_sharded` on 2 Ray
workers of 1 thread each (a local Ray instance started once, before the rounds; each sharded call
includes starting its workers and their model loads, as a run's does). The two alternate their
order from round to round; the table gives the median wall time of ``--rounds`` rounds, checks
that the sharded images are byte for byte the local ones, and times the workers' start alone (2
actors up, base model loaded), the fixed cost a sharded call pays before its first image.

Part 2: ``sweep_plan(paper, gpus=N)`` for a few N at the default (or measured) rates: the makespan
with one GPU per run and with generation and encoding sharded, against the lower bound.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def _bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gpus", type=int, nargs="*", default=[1, 8, 32, 64, 128])
    args = parser.parse_args()

    import ray
    import torch

    from t2ibench.models import load_base
    from t2ibench.pipeline.generate import GenerationSettings, generate_images
    from t2ibench.pipeline.plan import sweep_plan
    from t2ibench.pipeline.shard import Target, generate_sharded
    from t2ibench.pipeline.sweep import load_grid
    from t2ibench.prompts import GenerationJob

    jobs = [
        GenerationJob(f"toys/bear{k % 4}", "trigger", f"a bear number {k}", 1000 + k, k)
        for k in range(args.images)
    ]
    settings = GenerationSettings(steps=10, height=64, width=64, batch_size=4)
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t0

    def local(threads: int, out: Path) -> None:
        torch.set_num_threads(threads)
        pipe = load_base("tiny")
        generate_images(pipe, jobs, out, checkpoint="base", settings=settings, progress=False)

    def sharded(out: Path) -> None:
        generate_sharded("tiny", [Target("base", "base", out)], jobs, settings, workers=2,
                         load_kwargs={"device": "cpu"}, threads=1, progress=False)  # fmt: skip

    modes = {
        "local, 1 thread": lambda out: local(1, out),
        "Ray, 2 workers × 1 thread": sharded,
    }

    def start_workers() -> float:
        from t2ibench.pipeline.shard import ShardWorker, _env

        cls = ray.remote(ShardWorker).options(num_cpus=1)
        t0 = time.perf_counter()
        actors = [cls.remote("cpu", 1, _env()) for _ in range(2)]
        # a worker loads the base at its first batch: here, at once
        ray.get([a.use_base.remote("tiny", {"device": "cpu"}, 1.0) for a in actors])
        took = time.perf_counter() - t0
        for a in actors:
            ray.kill(a)
        return took

    times: dict[str, list[float]] = {m: [] for m in modes}
    equal = []
    with tempfile.TemporaryDirectory(prefix="t2ibench-shard-") as tmp:
        local(1, Path(tmp) / "warm")  # the tiny base built and cached once, outside the timings
        for r in range(args.rounds):
            order = list(modes) if r % 2 == 0 else list(reversed(modes))
            outs = {}
            for m in order:
                out = Path(tmp) / f"r{r}-{list(modes).index(m)}"
                t0 = time.perf_counter()
                modes[m](out)
                times[m].append(time.perf_counter() - t0)
                outs[m] = out
            equal.append(
                _bytes(outs["Ray, 2 workers × 1 thread"]) == _bytes(outs["local, 1 thread"])
            )
        startup = [start_workers() for _ in range(args.rounds)]
    ray.shutdown()
    base = statistics.median(times["local, 1 thread"])
    load = os.getloadavg()[0]
    print(
        f"{args.images} images, tiny base, 64 px, DDIM 10, batch 4; median of {args.rounds} "
        f"alternating rounds; Ray instance started once in {ray_start:.1f} s (not counted); "
        f"{os.cpu_count()} cores, load average {load:.1f} at the end\n"
    )
    print("| mode | median s | rounds (s) | images/s | vs local 1 thread |")
    print("|---|---:|---|---:|---:|")
    for m, ts in times.items():
        med = statistics.median(ts)
        print(
            f"| {m} | {med:.1f} | {', '.join(f'{t:.1f}' for t in ts)} | "
            f"{args.images / med:.2f} | {base / med:.2f}× |"
        )
    print(
        f"| Ray, 2 workers' start alone (up, model loaded) | {statistics.median(startup):.1f} | "
        f"{', '.join(f'{t:.1f}' for t in startup)} | | |"
    )
    print(f"\nsharded images byte-equal to local 1-thread images in every round: {all(equal)}\n")

    print("paper sweep (78 runs), makespan on N GPUs at the plan's rates\n")
    print("| GPUs | one GPU per run | sharded | lower bound | utilisation (sharded) |")
    print("|---:|---:|---:|---:|---:|")
    for n in args.gpus:
        s = sweep_plan(load_grid("paper"), gpus=n)["schedule"]
        one, sh = s["one_gpu_per_run"], s["sharded"]
        print(
            f"| {n} | {one['makespan_h']:,.1f} h | {sh['makespan_h']:,.1f} h | "
            f"{sh['lower_bound_h']:,.1f} h | {sh['utilisation']:.0%} |"
        )


if __name__ == "__main__":
    main()
