"""Time ``t2ibench.analysis.analyze`` on 10,000 synthetic result rows (target: < 30 s on 2 cores).

    python benchmarks/analysis.py [--rows 10000] [--repeats 1] [--threads 2]

Prints one table: the time of each stage (rank normalisation, aggregation, SHAP, the whole
``analyze`` call with plots and report) and the rows per second.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (BLAS and CatBoost)")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    os.environ.setdefault("MPLBACKEND", "Agg")

    from t2ibench.analysis import aggregate, analyze, rank_normalise, run_shap
    from t2ibench.analysis.synthetic import synthetic_results
    from t2ibench.results import write_results

    df = synthetic_results(n_rows=args.rows)
    rows = []

    def timed(name: str, fn) -> None:
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        rows.append((name, best))

    scores = rank_normalise(df)
    timed("rank_normalise", lambda: rank_normalise(df))
    timed("aggregate", lambda: aggregate(scores))
    timed("aggregate (bootstrap 1000)", lambda: aggregate(scores, bootstrap=1000))
    timed(
        "run_shap (300 it, no out-of-sample R²)",
        lambda: run_shap(scores, thread_count=args.threads, cv=()),
    )
    timed(
        "run_shap (300 it, + leave-one-seed/config-out R²)",
        lambda: run_shap(scores, thread_count=args.threads),
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_results(df, os.path.join(tmp, "results"))
        timed(
            "analyze (full report)",
            lambda: analyze(os.path.join(tmp, "results"), os.path.join(tmp, "report")),
        )
        n_files = len(os.listdir(os.path.join(tmp, "report"))) + len(
            os.listdir(os.path.join(tmp, "report", "plots"))
        )

    print(f"analyze benchmark: {len(df):,} result rows, {df['checkpoint'].nunique()} checkpoints,")
    print(f"{os.cpu_count()} CPUs visible, {args.threads} threads, best of {args.repeats}")
    print(f"{'stage':<28} {'seconds':>9} {'rows/s':>10}")
    for name, sec in rows:
        print(f"{name:<28} {sec:>9.2f} {len(df) / sec:>10,.0f}")
    total = rows[-1][1]
    print(f"full analyze wrote {n_files} files; target < 30 s: {'met' if total < 30 else 'MISSED'}")


if __name__ == "__main__":
    main()
