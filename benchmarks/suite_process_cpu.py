"""Where the test suite's CPU goes, by process: the README's test command run under a psutil
sampler (every process on the machine, every 0.5 s), then CPU seconds summed per kind of process
(the two xdist workers, Ray's workers and daemons, fresh Pythons the tests start, chromium).
A process's CPU is its last sample, so one that lives under 0.5 s is missed.

    python benchmarks/suite_process_cpu.py                 # run the suite, write the table
    python benchmarks/suite_process_cpu.py --samples S.json --since EPOCH   # table of a saved sampling

Writes ``results/suite_process_cpu_<date>.md``. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAY_DAEMONS = ("raylet/raylet", "gcs_server", "log_monitor", "dashboard", "monitor.py", "agent")


def sample(stop: threading.Event, every: float = 0.5) -> list[dict]:
    import psutil

    seen: dict[tuple, dict] = {}
    me = os.getpid()
    while not stop.is_set():
        for p in psutil.process_iter(["pid", "cmdline", "create_time", "name"]):
            if p.pid == me:
                continue
            try:
                t = p.cpu_times()
            except (psutil.Error, OSError):
                continue
            key = (p.pid, p.info["create_time"])
            rec = seen.setdefault(key, {"cmd": " ".join(p.info["cmdline"] or [p.info["name"] or ""])[:300],
                                        "start": p.info["create_time"], "cpu": 0.0})  # fmt: skip
            rec["cpu"] = max(rec["cpu"], t.user + t.system)
        stop.wait(every)
    return list(seen.values())


def kind(cmd: str) -> str:
    if "exec(eval(sys.stdin.readline()))" in cmd:
        return "pytest-xdist workers"
    if "-m pytest" in cmd:
        return "pytest controller"
    if "chrom" in cmd:
        return "chromium"
    if "default_worker.py" in cmd or cmd.startswith("ray::"):
        return "Ray workers (actors, tasks, idle)"
    if "ray" in cmd and any(d in cmd for d in RAY_DAEMONS):
        return "Ray daemons"
    if "python" in cmd:
        return "other Python processes (CLI, -c, scripts)"
    return "other"


def table(records: list[dict], since: float, title: str) -> str:
    per: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for r in records:
        if r["start"] >= since - 1:
            k = kind(r["cmd"])
            per[k][0] += 1
            per[k][1] += r["cpu"]
    total = sum(v[1] for v in per.values())
    lines = [title, "", "| process kind | processes | CPU s |", "|---|---:|---:|"]
    for k, (n, cpu) in sorted(per.items(), key=lambda kv: -kv[1][1]):
        if cpu >= 0.05:
            lines.append(f"| {k} | {n} | {cpu:.1f} |")
    lines.append(f"| **total** | | **{total:.1f}** |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", help="a saved sampling (JSON) to summarise instead of running")
    ap.add_argument("--since", type=float, help="with --samples: the run's start (epoch s)")
    ap.add_argument("--label", default="", help="with --samples: what was run, for the table")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()
    today = datetime.date.today().isoformat()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    if args.samples:
        records, since = json.loads(Path(args.samples).read_text()), args.since or 0.0
        how = f"a saved sampling of {args.label or Path(args.samples).name}"
    else:
        stop, out = threading.Event(), {}
        thread = threading.Thread(target=lambda: out.setdefault("r", sample(stop)))
        since = time.time()
        thread.start()
        cmd = [sys.executable, "-m", "pytest", "-q", "-n", "2"]
        rc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}).returncode
        stop.set()
        thread.join()
        records, how = (
            out["r"],
            f"`HF_HUB_OFFLINE=1 python -m pytest -q -n 2` (exit {rc}) at {commit}",
        )
    text = table(records, since, f"# Suite CPU by process kind ({today})\n\nSampled from {how}.")
    print(text)
    dest = Path(args.results) / f"suite_process_cpu_{today}.md"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("a") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
