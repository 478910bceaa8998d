"""Vendi score: t2ibench vs the vendi-score package (score_X, score_dual), same run, same data.

    python benchmarks/metrics.py [--n 1000 5000] [--d 1024] [--repeats 3]

Prints time (best of --repeats) and value per implementation, the ratio to each anchor, and the
largest value difference. Targets at n = 5000: ≤ 1.0× score_dual and ≤ 0.1× score_X.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from vendi_score import vendi

from t2ibench.metrics import vendi_score


def best_time(fn, repeats: int) -> tuple[float, float]:
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, float(value)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, d = {args.d}")
    header = f"{'n':>6} {'impl':>12} {'seconds':>9} {'value':>14} {'vs score_dual':>14} {'vs score_X':>11} {'|Δ value|':>10}"
    print(header)
    print("-" * len(header))
    for n in args.n:
        rng = np.random.default_rng(n)
        # Clustered features, like an encoder's: 50 centres plus noise.
        centres = rng.standard_normal((50, args.d))
        x = centres[rng.integers(0, 50, n)] + 0.5 * rng.standard_normal((n, args.d))
        xt = torch.from_numpy(x)
        rows = {
            "t2ibench": best_time(lambda xt=xt: vendi_score(xt, q=1), args.repeats),
            "score_dual": best_time(lambda x=x: vendi.score_dual(x, normalize=True), args.repeats),
            "score_X": best_time(lambda x=x: vendi.score_X(x, normalize=True), 1),
        }
        ref_val = rows["score_dual"][1]
        for name, (sec, val) in rows.items():
            print(
                f"{n:>6} {name:>12} {sec:>9.3f} {val:>14.6f} {sec / rows['score_dual'][0]:>13.2f}x "
                f"{sec / rows['score_X'][0]:>10.3f}x {abs(val - ref_val):>10.2e}"
            )


if __name__ == "__main__":
    main()
