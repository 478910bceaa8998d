"""The statistics of the reference analysis (the paper's own values, reference_results/lycoris-iclr2024):
the Table-1 order per epoch and pooled with its paired-bootstrap probability, the CatBoost models'
in-sample and out-of-sample R², and the epoch claims with their paired tests.

    python benchmarks/reference_analysis.py [--out benchmarks/results/reference_analysis_DATE.md]

Runs on CPU in about a minute (the SHAP models are fitted 22 times each for the held-out R²).
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "reference_results" / "lycoris-iclr2024"


def _md(df) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = []
        for c, v in zip(cols, r.to_numpy(), strict=True):
            digits = 4 if str(c).endswith("_mc_se") else 3
            cells.append(f"{v:.{digits}f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    today = datetime.date.today().isoformat()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results" / f"reference_analysis_{today}.md",
    )
    parser.add_argument("--n-boot", type=int, default=None, help="default: TABLE1_BOOTSTRAP")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    import pandas as pd

    from t2ibench.analysis import rank_normalise
    from t2ibench.analysis.shap_analysis import MIN_OUT_OF_SAMPLE_R2, run_shap, shap_tables
    from t2ibench.analysis.tables import TABLE1_BOOTSTRAP, check_epoch_claims, table1
    from t2ibench.results import read_results

    args.n_boot = args.n_boot or TABLE1_BOOTSTRAP
    t0 = time.perf_counter()
    df = read_results(REF)
    scores = rank_normalise(df)
    per_epoch = table1(scores, n_boot=args.n_boot, seed=0)
    pooled = table1(scores, epochs="pooled", n_boot=args.n_boot, seed=0)
    claims = check_epoch_claims(scores)
    shap_fit = shap_tables(run_shap(scores, thread_count=args.threads))[1]
    took = time.perf_counter() - t0

    order_cols = ["criterion", "epoch", "paper_order", "data_order", "agrees", "p_paper_order",
                  "p_paper_order_mc_se", "p_data_order", "p_data_order_mc_se",
                  "n_units"]  # fmt: skip
    orders = pd.concat([per_epoch.order[order_cols], pooled.order[order_cols]], ignore_index=True)
    wide = per_epoch.wide("mean_score").join(pooled.wide("mean_score")).reset_index()
    fit_cols = ["category", "target", "epochs", "n_checkpoints", "r2_train",
                "r2_leave_one_seed_out", "r2_leave_one_config_out", "finding"]  # fmt: skip
    claim_cols = ["category", "measure", "claim", "source", "first", "last", "change", "ci_low",
                  "ci_high", "n_runs", "p_holm", "outcome"]  # fmt: skip
    text = f"""# Reference analysis statistics ({today})

`python benchmarks/reference_analysis.py` on `reference_results/lycoris-iclr2024` ({len(df):,} rows,
{df["checkpoint"].nunique()} checkpoints, {df["config"].nunique()} configs: the paper's config set,
without 1007/1017/1027). {took:.0f} s on CPU.

## Table 1: order of LoRA, LoHa, LoKr per epoch and pooled

Mean rank score per group (default configs; fidelity = DINOv2-letterbox image similarity on
train + alter + trigger, controllability = CLIP text alignment on alter, diversity = DINOv2 Vendi
on train + alter). `p_paper_order`: share of {args.n_boot} paired bootstrap resamples (seed × class
units within each category) that keep the paper's order; `*_mc_se`: its Monte Carlo standard error
√(p(1 − p)/B).

{_md(wide)}

{_md(orders)}

## CatBoost models: in-sample and out-of-sample R²

A beeswarm counts as a finding only when both the leave-one-seed-out and the leave-one-config-out
R² exceed {MIN_OUT_OF_SAMPLE_R2:g}.

{_md(shap_fit[fit_cols])}

## Epoch claims: paired test per training run, Holm-adjusted

{_md(claims[claim_cols])}
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
