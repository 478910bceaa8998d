"""Per test: wall time, the test process's CPU time (its children's included) and the whole
machine's busy CPU time, to find tests that wait (busy < wall) and tests that also use the second
core (busy > wall: threads, Ray workers), which ``pytest --durations`` cannot tell apart. A pytest
plugin, then a summary; run the suite without ``-n`` on an otherwise idle machine:

    PYTHONPATH=benchmarks HF_HUB_OFFLINE=1 python -m pytest -q -p test_cpu_profile   # → $T2I_CPU_PROFILE
    python benchmarks/test_cpu_profile.py /tmp/test_cpu.jsonl --label "..."   # results/test_cpu_<date>.md
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

OUT = os.environ.get("T2I_CPU_PROFILE", "/tmp/test_cpu.jsonl")


def _busy_seconds() -> float:
    """Every core's non-idle time since boot (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


try:
    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        wall, busy, own = time.perf_counter(), _busy_seconds(), _own_seconds()
        yield
        record = {
            "id": item.nodeid,
            "wall": time.perf_counter() - wall,
            "own": _own_seconds() - own,
            "busy": _busy_seconds() - busy,
        }
        with open(OUT, "a") as f:
            f.write(json.dumps(record) + "\n")

except ImportError:  # the summary needs no pytest
    pass


def summarise(path: Path, top: int = 15, label: str = "") -> str:
    import collections

    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    total = {k: sum(r[k] for r in records) for k in ("wall", "own", "busy")}
    lines = [
        "# Per-test wall, own CPU and machine-busy CPU seconds",
        "",
        f"`benchmarks/test_cpu_profile.py` over {len(records)} tests run in one process: wall "
        f"{total['wall']:.0f} s, the test process's CPU {total['own']:.0f} s, the machine busy "
        f"{total['busy']:.0f} CPU s. Waiting = wall − busy where positive (nothing ran);"
        " second core = busy − wall where positive (threads, Ray workers, other processes)."
        + (f" {label}" if label else ""),
        "",
        "## Slowest files",
        "",
        "| file | wall s | own CPU s | busy CPU s | waiting s | second core s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    files: dict[str, list[float]] = collections.defaultdict(lambda: [0.0] * 5)
    for r in records:
        f = files[r["id"].split("::")[0]]
        f[0] += r["wall"]
        f[1] += r["own"]
        f[2] += r["busy"]
        f[3] += max(0.0, r["wall"] - r["busy"])
        f[4] += max(0.0, r["busy"] - r["wall"])
    for name, v in sorted(files.items(), key=lambda x: -x[1][0])[:top]:
        lines.append(f"| `{name}` | " + " | ".join(f"{x:.1f}" for x in v) + " |")
    for title, key in (
        ("Tests that wait most", lambda r: r["wall"] - r["busy"]),
        ("Tests that use the second core most", lambda r: r["busy"] - r["wall"]),
    ):
        lines += ["", f"## {title}", "", "| test | wall s | own CPU s | busy CPU s |",
                  "|---|---:|---:|---:|"]  # fmt: skip
        for r in sorted(records, key=key, reverse=True)[:top]:
            if key(r) <= 0.3:
                break
            lines.append(f"| `{r['id']}` | {r['wall']:.1f} | {r['own']:.1f} | {r['busy']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import argparse
    import datetime

    ap = argparse.ArgumentParser(description="summarise a per-test CPU profile")
    ap.add_argument("profile", nargs="?", default=OUT)
    ap.add_argument("--label", default="", help="what was run, where (added to the header)")
    ap.add_argument("--day", default=str(datetime.date.today()), help="the run's date (file name)")
    args = ap.parse_args()
    text = summarise(Path(args.profile), label=args.label)
    out = Path(__file__).parent / "results" / f"test_cpu_{args.day}.md"
    out.write_text(text)
    print(text)
