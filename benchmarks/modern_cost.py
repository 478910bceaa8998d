"""The modern grid's cost, projected: ``t2ibench sweep --grid modern --dry-run --gpus N`` as a
dated table (7 methods × SDXL / SD3.5 / FLUX.1 × 3 seeds at the paper's settings), each base at
the assumed figures its plug-in states (``cost=`` in ``t2ibench/bases/*.py``, with their sources).
No weights, no GPU: a projection, seconds on CPU.

    python benchmarks/modern_cost.py          # writes results/modern_cost_<date>.md
"""

from __future__ import annotations

import datetime
from pathlib import Path

from t2ibench.pipeline.plan import render_sweep_plan, sweep_plan
from t2ibench.pipeline.sweep import load_grid


def main() -> None:
    today = datetime.date.today().isoformat()
    lines = [f"# The modern grid's cost, projected ({today})", ""]
    lines += [
        "`t2ibench sweep --grid modern --dry-run --gpus 64` (benchmarks/modern_cost.py). The "
        "per-base figures are assumptions from published numbers on different GPUs (stated per "
        "row), not measurements; training per sample is derived from generation (3 denoiser "
        "forwards; `t2ibench.architectures.train_sample_s_from_generation`).",
        "",
        render_sweep_plan(sweep_plan(load_grid("modern"), gpus=64)),
        "",
    ]
    out = Path(__file__).parent / "results" / f"modern_cost_{today}.md"
    out.write_text("\n".join(lines), encoding="utf-8")
    print(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
