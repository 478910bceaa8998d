"""CPU seconds of the two Ray test files run alone in one process, Ray's worker processes included
(which ``/usr/bin/time`` misses: they are the raylet's children, not waited for by pytest).

    python benchmarks/ray_tests_cpu.py [--src DIR] [--label NAME]

runs ``python -m pytest -q tests/pipeline/test_shard_ray.py tests/pipeline/test_sweep_ray.py
-p no:randomly`` in ``--src`` (default: this checkout) and samples its process tree every 0.5 s
(psutil; a process's CPU is its last sample, so up to 0.5 s of a short-lived one may be missed).
Prints one markdown table row: wall, total CPU, the pytest process, Ray's actor and task workers
(count and CPU), Ray's own services and the other subprocesses (CLI runs, ``ray start``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

FILES = ["tests/pipeline/test_shard_ray.py", "tests/pipeline/test_sweep_ray.py"]


def kind(cmd: str) -> str:
    if "default_worker.py" in cmd or cmd.startswith("ray::"):
        return "ray workers"
    if "-m t2ibench" in cmd:  # before "pytest": its paths are under /tmp/pytest-of-*
        return "CLI runs"
    if "pytest" in cmd:
        return "pytest"
    return "ray services, ray start"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": args.src, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", *FILES, "-p", "no:randomly"]
    start = time.perf_counter()
    log = tempfile.TemporaryFile("w+")  # a pipe could fill up while nobody reads it
    proc = subprocess.Popen(cmd, cwd=args.src, env=env, stdout=log, stderr=subprocess.STDOUT)
    root = psutil.Process(proc.pid)
    seen: dict[tuple[int, float], dict] = {}
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in tree:
            try:
                with p.oneshot():
                    key = (p.pid, p.create_time())
                    cpu = sum(p.cpu_times()[:2])
                    cmdline = " ".join(p.cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rec = seen.setdefault(key, {"cmd": cmdline, "cpu": 0.0})
            rec["cpu"] = max(rec["cpu"], cpu)
            if cmdline.startswith("ray::"):  # a worker names itself once it runs an actor/task
                rec["cmd"] = cmdline
        time.sleep(0.5)
    log.seek(0)
    out = log.read()
    wall = time.perf_counter() - start
    summary = out.strip().splitlines()[-1] if out.strip() else "?"
    groups: dict[str, list[float]] = {}
    for rec in seen.values():
        groups.setdefault(kind(rec["cmd"]), []).append(rec["cpu"])
    total = sum(rec["cpu"] for rec in seen.values())

    def col(name: str) -> str:
        cpus = groups.get(name, [])
        return f"{sum(cpus):.1f} ({len(cpus)})"

    print("| label | wall s | CPU s | pytest | ray workers (n) | ray services (n) | CLI runs (n) "
          "| result |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.label} | {wall:.0f} | {total:.1f} | {col('pytest')} | {col('ray workers')} "
          f"| {col('ray services, ray start')} | {col('CLI runs')} | {summary} |")  # fmt: skip
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
