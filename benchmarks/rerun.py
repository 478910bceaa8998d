"""Time a rerun of a finished ``t2ibench run`` (issue 13 item 23: every rerun redid the analysis).

    python benchmarks/rerun.py [--profile tiny] [--reruns 3] [--out DIR]

Runs the profile once with small settings, then reruns the same command ``--reruns`` times and
prints one Markdown table: the first run's seconds per stage (from ``run.json``) and each rerun's
wall time. A rerun re-hashes every image and skips the analysis when the results are unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--reruns", type=int, default=3)
    parser.add_argument("--out", default=None, help="Results folder (default: a temporary one).")
    args = parser.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")

    from t2ibench.pipeline.run import RunOptions, execute, resolve

    out = args.out or tempfile.mkdtemp(prefix="t2ibench-rerun-")
    quick = {
        "trainer": "lora",
        "generate.images_per_leaf": 2,
        "generate.steps": 2,
        "trainer.epochs": 2,
        "trainer.save_epochs": [1, 2],
    }
    if args.profile == "tiny":
        quick["evaluate.encoders"] = ["dinov2-l@tiny", "clip-l14@tiny", "vgg19@tiny"]
    opts = RunOptions(layers=[("benchmark", quick)], profile=args.profile, out=out, progress=False)
    t0 = time.perf_counter()
    run_dir = execute(resolve(opts))
    first = time.perf_counter() - t0
    timings = json.loads((run_dir / "run.json").read_text())["timings"]
    reruns = []
    for _ in range(args.reruns):
        t0 = time.perf_counter()
        execute(resolve(opts))
        reruns.append(time.perf_counter() - t0)
    print(f"profile {args.profile}, images per leaf 2, steps 2, epochs 2 (checkpoints 1, 2)\n")
    print("| what | seconds |")
    print("|---|---|")
    print(f"| first run, total | {first:.1f} |")
    for stage, seconds in timings.items():
        print(f"| first run, {stage} | {seconds:.1f} |")
    for i, seconds in enumerate(reruns, 1):
        print(f"| rerun {i}, total (analysis skipped: same results) | {seconds:.1f} |")


if __name__ == "__main__":
    main()
