"""CatBoost threads for the analysis' SHAP fits: wall and CPU seconds of ``run_shap`` on the largest
table the project ships (the LyCORIS paper's published scores, ``reference_results/lycoris-iclr2024``),
one thread against every core, alternating in ABBA order, and whether both give the same fits.

    python benchmarks/shap_threads.py --rounds 3   # writes results/shap_threads_<date>.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "reference_results" / "lycoris-iclr2024"


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--results", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    from t2ibench.analysis import Target, rank_normalise
    from t2ibench.analysis.shap_analysis import run_shap
    from t2ibench.results import read_results

    scores = rank_normalise(read_results(REF))
    targets = [Target("text_alignment", "alter"), Target("image_similarity", "train")]
    cores = os.cpu_count() or 1
    modes = {"1 thread": 1, f"all cores (thread_count=-1, {cores} here)": -1}
    names = list(modes)
    run_shap(scores, targets=targets[:1], thread_count=1)  # imports and first-call costs
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    fits: dict[str, list] = {}
    for k in range(2 * args.rounds):
        name = names[k % 2] if k // 2 % 2 == 0 else names[1 - k % 2]  # ABBA
        w, c = time.perf_counter(), cpu_seconds()
        res = run_shap(scores, targets=targets, thread_count=modes[name])
        walls[name].append(time.perf_counter() - w)
        cpus[name].append(cpu_seconds() - c)
        fits[name] = [(r.category, r.target.label, r.r2, r.r2_seed, r.r2_config) for r in res]
    same = fits[names[0]] == fits[names[1]]
    rows = scores.groupby("category")["checkpoint"].nunique()
    today = datetime.date.today().isoformat()
    load = os.getloadavg()
    lines = [
        "# CatBoost threads in the SHAP fits (`run_shap`)",
        "",
        f"Measured {today} by `python benchmarks/shap_threads.py --rounds {args.rounds}`: {cores} "
        f"CPUs, load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; the "
        f"published LyCORIS scores, {len(fits[names[0]])} fits (category × target: "
        f"{', '.join(t.label for t in targets)}), each with its leave-one-seed-out and "
        "leave-one-config-out refits; checkpoints per category: "
        + ", ".join(f"{c} {n}" for c, n in rows.items())
        + ". Rounds alternate ABBA; median (min–max).",
        "",
        "| thread_count | wall s | CPU s (user + sys) |",
        "|---|---:|---:|",
    ]
    for name in names:
        w, c = walls[name], cpus[name]
        lines.append(
            f"| {name} | {statistics.median(w):.1f} ({min(w):.1f}–{max(w):.1f}) | "
            f"{statistics.median(c):.1f} ({min(c):.1f}–{max(c):.1f}) |"
        )
    lines += ["", f"Same R² (in-sample and both out-of-sample) in both modes: {same}."]
    out = Path(args.results) / f"shap_threads_{today}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
