"""Coverage of `t2ibench agreement`'s 95 % intervals on synthetic ratings with known correlation.

Each repetition draws (metric, raters' mean) from a bivariate normal whose Spearman ρ is 0.6
(Pearson r = 2 sin(π·0.6/6)), gives two raters noise that cancels in their mean, writes the ratings
CSV, and runs the agreement (``n_boot`` BCa draws resampling items). The share of repetitions whose
interval holds 0.6 estimates the interval's coverage; the binomial standard error is reported.

    python benchmarks/agreement_coverage.py --reps 500   # writes results/agreement_coverage_<date>.md
"""

from __future__ import annotations

import argparse
import datetime
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def one(rep: int, n_items: int, n_boot: int, folder: Path, rho: float) -> tuple[bool, float]:
    from t2ibench.analysis import agreement as A

    rng = np.random.default_rng(100_000 + rep)
    r = 2 * math.sin(math.pi * rho / 6)
    z = rng.multivariate_normal([0, 0], [[1, r], [r, 1]], size=n_items)
    noise = rng.normal(0, 1, size=(n_items, 2))
    noise -= noise.mean(1, keepdims=True)
    rows = [{"image": f"i{i}.png", "prompt": "p", "rater": f"r{k}", "score": z[i, 1] + noise[i, k]}
            for i in range(n_items) for k in range(2)]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "r.csv", index=False)
    scores = pd.DataFrame({"image": [f"i{i}.png" for i in range(n_items)], "metric": "x",
                           "value": z[:, 0]})  # fmt: skip
    table = A.agreement(A.read_ratings(folder / "r.csv"), A.prepare_scores(scores),
                        n_boot=n_boot, seed=rep, ceiling=False)  # fmt: skip
    row = table.iloc[0]
    return bool(row.spearman_low <= rho <= row.spearman_high), row.spearman_high - row.spearman_low


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=500)
    parser.add_argument("--items", type=int, nargs="+", default=[60, 150])
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    lines = [
        "# Coverage of the agreement intervals (Spearman ρ, 95 % BCa, item bootstrap)",
        "",
        f"Measured {datetime.date.today().isoformat()} by `python benchmarks/agreement_coverage.py "
        f"--reps {args.reps} --n-boot {args.n_boot}`: synthetic ratings with population Spearman "
        "ρ = 0.6 between the metric and the raters' mean, two raters; seeds 100000 + rep.",
        "",
        "| items | repetitions | covered | coverage | ± binomial SE | mean interval width | s / rep |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.items:
            t0 = time.perf_counter()
            res = [one(rep, n, args.n_boot, Path(tmp), 0.6) for rep in range(args.reps)]
            hits = sum(h for h, _ in res)
            p = hits / args.reps
            se = math.sqrt(p * (1 - p) / args.reps)
            width = float(np.mean([w for _, w in res]))
            per = (time.perf_counter() - t0) / args.reps
            lines.append(f"| {n} | {args.reps} | {hits} | {p:.3f} | {se:.3f} | {width:.3f} | "
                         f"{per:.2f} |")  # fmt: skip
            print(lines[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"agreement_coverage_{datetime.date.today().isoformat()}.md"
    path.write_text("\n".join(lines) + "\n")
    print(path)


if __name__ == "__main__":
    main()
