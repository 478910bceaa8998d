"""CPU seconds of test files, each run alone in one pytest process, in this tree and in another
checkout (e.g. ``git archive main | tar -x -C /tmp/base``): what a file costs the 2-core suite.

    python benchmarks/test_file_cpu.py --before /tmp/base tests/plugins/test_example_plugin.py ...

Each file runs as ``python -m pytest -q FILE`` with that tree first on ``PYTHONPATH``, in that
tree; the CPU time is user + system of the process and every child it waited for (a fresh
interpreter, chromium). ``--repeat N`` runs each N times and reports the smallest. Appends a
dated table to ``benchmarks/results/test_file_cpu_<date>.md`` (``--out``). Other processes on a
shared machine slow the wall time; the CPU time moves much less.
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_of(tree: Path, test_file: str) -> tuple[float, float, str]:
    """(CPU s, wall s, pytest's last line) of one file run alone in ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = proc.stdout.strip().splitlines()
    return cpu, wall, lines[-1] if lines else f"exit {proc.returncode}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--before", type=Path, help="another checkout to compare with")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    trees = ([("before", args.before.resolve())] if args.before else []) + [("after", ROOT)]
    today = datetime.date.today().isoformat()
    out = args.out or ROOT / "benchmarks" / "results" / f"test_file_cpu_{today}.md"
    head = "| file | " + " | ".join(f"{n} CPU s | {n} wall s" for n, _ in trees) + " | outcome |"
    rows = [head, "|---|" + "---:|---:|" * len(trees) + "---|"]
    load, started = os.getloadavg()[0], datetime.datetime.now(datetime.UTC)
    for f in args.files:
        cells, outcome = [], ""
        for _, tree in trees:
            runs = [cpu_of(tree, f) for _ in range(args.repeat)]
            cpu, wall, outcome = min(runs)
            cells += [f"{cpu:.1f}", f"{wall:.1f}"]
        rows.append(f"| {f} | " + " | ".join(cells) + f" | {outcome} |")
        print(rows[-1], flush=True)
    text = (
        f"\n## {started:%Y-%m-%d %H:%M} UTC, load average {load:.1f} "
        f"at the start, best of {args.repeat}\n\n"
        f"`python benchmarks/test_file_cpu.py{' --before ' + str(args.before) if args.before else ''}"
        f" --repeat {args.repeat} {' '.join(args.files)}`\n\n" + "\n".join(rows) + "\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        out.write_text("# CPU seconds per test file, each run alone in one process\n")
    with out.open("a") as fh:
        fh.write(text)
    print(f"appended to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
