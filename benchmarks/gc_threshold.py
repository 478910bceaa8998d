"""The test processes' garbage-collector thresholds (``tests/conftest.py``): CPU seconds, seconds
spent in collections per generation and peak memory of pytest over a few test files, CPython's
default (700, 10, 10) against the suite's (700, 10, 100), alternating in ABBA order.

    python benchmarks/gc_threshold.py --rounds 2   # writes results/gc_threshold_<date>.md
    python benchmarks/gc_threshold.py --files tests/slow/test_real_size.py --rounds 1 --name full-size
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = [
    "tests/pipeline/test_run.py",
    "tests/analysis/test_analyze.py",
    "tests/test_reliability.py",
]
THRESHOLDS = {"CPython's default": "700,10,10", "the suite's": "700,10,100"}

# A pytest plugin for the child: time in each generation's collections, CPU and peak RSS at the end.
PLUGIN = """
import gc, json, os, resource, time
_gc = {"s": [0.0, 0.0, 0.0], "n": [0, 0, 0], "t": 0.0}
def _cb(phase, info):
    if phase == "start":
        _gc["t"] = time.process_time()
    else:
        _gc["s"][info["generation"]] += time.process_time() - _gc["t"]
        _gc["n"][info["generation"]] += 1
gc.callbacks.append(_cb)
def pytest_sessionfinish(session, exitstatus):
    me = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["GC_BENCH_OUT"], "w") as f:
        json.dump({"cpu": me.ru_utime + me.ru_stime, "rss_mib": me.ru_maxrss / 1024,
                   "gc_s": _gc["s"], "gc_n": _gc["n"], "exit": int(exitstatus),
                   "threshold": list(gc.get_threshold())}, f)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="+", default=FILES)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--name", default="", help="suffix of the results file")
    ap.add_argument("--results", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    names = list(THRESHOLDS)
    got: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "gc_bench_plugin.py").write_text(PLUGIN)
        for k in range(2 * args.rounds):
            name = names[k % 2] if k // 2 % 2 == 0 else names[1 - k % 2]  # ABBA
            out = Path(tmp) / "out.json"
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "T2I_TEST_GC_THRESHOLD": THRESHOLDS[name],
                   "GC_BENCH_OUT": str(out),
                   "PYTHONPATH": os.pathsep.join(filter(None, [tmp, os.environ.get("PYTHONPATH")]))}  # fmt: skip
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "gc_bench_plugin",
                   "-p", "no:cacheprovider", *args.files]  # fmt: skip
            subprocess.run(cmd, cwd=ROOT, env=env, check=False, capture_output=True)
            record = json.loads(out.read_text())
            assert record["threshold"] == [int(x) for x in THRESHOLDS[name].split(",")], record
            got[name].append(record)
            print(name, record, flush=True)
    today = datetime.date.today().isoformat()

    def med(name, key, index=None):
        values = [r[key] if index is None else r[key][index] for r in got[name]]
        return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"

    lines = [
        "# Garbage-collector thresholds of the test processes",
        "",
        f"Measured {today} by `python benchmarks/gc_threshold.py --rounds {args.rounds}"
        + (f" --files {' '.join(args.files)}" if args.files != FILES else "")
        + f"`: pytest in one process over {', '.join(f'`{f}`' for f in args.files)}; "
        f"{os.cpu_count()} CPUs; ABBA order; median (min–max) of {args.rounds * 1} runs each.",
        "",
        "| thresholds | CPU s | in full collections s | full collections | in gen 0 + 1 s | "
        "peak RSS MiB | pytest exit status |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name in names:
        young = [r["gc_s"][0] + r["gc_s"][1] for r in got[name]]
        lines.append(
            f"| {name} `{THRESHOLDS[name]}` | {med(name, 'cpu')} | {med(name, 'gc_s', 2)} | "
            f"{med(name, 'gc_n', 2)} | {statistics.median(young):.1f} | {med(name, 'rss_mib')} | "
            f"{sorted({r['exit'] for r in got[name]})} |"
        )
    suffix = f"_{args.name}" if args.name else ""
    path = Path(args.results) / f"gc_threshold_{today}{suffix}.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
