"""The offline default ``t2ibench run --trainer loha``, timed per stage (wall and CPU).

The machine these numbers come from may be shared, so wall time alone can mislead: every stage
also reports CPU time (user + sys of this process and its children), which load from other
processes inflates much less. Stages are timed by wrapping the functions ``run`` calls (train,
base loading, generation, encoder loading, evaluation, analysis); "other" is the rest (imports,
dataset and base hashing, bookkeeping).

    OMP_NUM_THREADS=1 python benchmarks/default_run.py --out /tmp/default-run   # the dated table
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

T0_WALL = time.perf_counter()


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


T0_CPU = cpu_seconds()
WALL: dict[str, float] = defaultdict(float)
CPU: dict[str, float] = defaultdict(float)
_ACTIVE: list[str] = []


def wrap(module, attr: str, stage: str) -> None:
    """Replace ``module.attr`` by a timed version (nested calls count for the outer stage only)."""
    fn = getattr(module, attr)

    def timed(*args, **kwargs):
        if _ACTIVE:
            return fn(*args, **kwargs)
        _ACTIVE.append(stage)
        w, c = time.perf_counter(), cpu_seconds()
        try:
            return fn(*args, **kwargs)
        finally:
            WALL[stage] += time.perf_counter() - w
            CPU[stage] += cpu_seconds() - c
            _ACTIVE.pop()

    setattr(module, attr, timed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trainer", default="loha")
    ap.add_argument("--out", default="/tmp/t2ibench-default-run")
    ap.add_argument("--results", default=str(Path(__file__).parent / "results"))
    ap.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted run in --out; stages done before show their recorded wall time",
    )
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists() and not args.resume:
        shutil.rmtree(out)  # a fresh run: a finished one would skip every stage

    import torch

    import t2ibench.adapters as adapters
    import t2ibench.analysis as analysis
    import t2ibench.models as models
    import t2ibench.pipeline.evaluate as evaluate
    import t2ibench.pipeline.generate as generate
    import t2ibench.pipeline.load_encoders as load_encoders
    import t2ibench.pipeline.run as run_mod
    from t2ibench.pipeline.run import RunOptions, execute

    wrap(adapters, "train", "train")
    wrap(models, "load_base", "load base model")
    wrap(generate, "generate_images", "generate")
    wrap(load_encoders, "create_encoders", "load encoders")
    wrap(evaluate, "evaluate_images", "evaluate")
    wrap(analysis, "analyze", "analyze")
    wrap(run_mod, "resolve", "resolve (dataset, base hash, config)")

    # Stages an interrupted earlier invocation finished: their wall time from run.json.
    earlier = {}
    if args.resume:
        import json

        for record in out.glob("*/run.json"):
            earlier = json.loads(record.read_text()).get("timings", {})
    t_imports = (time.perf_counter() - T0_WALL, cpu_seconds() - T0_CPU)
    run_dir = execute(
        run_mod.resolve(
            RunOptions(
                layers=[("default_run", {"trainer": {"trainer": args.trainer}})],
                out=str(out),
                progress=False,
            )
        )
    )
    total_wall, total_cpu = time.perf_counter() - T0_WALL, cpu_seconds() - T0_CPU
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    load = os.getloadavg()
    lines = [
        f"# Offline default run: `t2ibench run --trainer {args.trainer}` per stage",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/default_run.py` "
        f"(run folder {run_dir.name}); {os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}; load average "
        f"at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min). CPU = user + "
        "sys seconds of the process; on a shared machine wall time is inflated by others' load, "
        "CPU time much less. Run with OMP_NUM_THREADS=1 the CPU time is the work itself (with "
        "more threads than free cores, idle OpenMP workers spin and inflate it); on an idle "
        "machine a 1-thread run's wall ≈ its CPU time.",
        "",
        "| stage | wall s | CPU s |",
        "|---|---:|---:|",
        f"| python + package imports | {t_imports[0]:.1f} | {t_imports[1]:.1f} |",
    ]
    stages = [
        "resolve (dataset, base hash, config)",
        "train",
        "load base model",
        "generate",
        "load encoders",
        "evaluate",
        "analyze",
    ]
    for s in stages:
        if s in earlier:
            lines.append(
                f"| {s}: earlier invocation (run.json, wall only) + this one | "
                f"{earlier[s]:.1f} + {WALL[s]:.1f} | – + {CPU[s]:.1f} |"
            )
        else:
            lines.append(f"| {s} | {WALL[s]:.1f} | {CPU[s]:.1f} |")
    other_w = total_wall - t_imports[0] - sum(WALL[s] for s in stages)
    other_c = total_cpu - t_imports[1] - sum(CPU[s] for s in stages)
    lines += [
        f"| other (bookkeeping) | {other_w:.1f} | {other_c:.1f} |",
        f"| **total** | **{total_wall:.1f}** | **{total_cpu:.1f}** |",
        "",
        f"Peak resident memory: {peak_mb:.0f} MiB.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    dest = Path(args.results) / f"default_run_{datetime.date.today().isoformat()}.md"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    print(f"written: {dest}", file=sys.stderr)


if __name__ == "__main__":
    main()
