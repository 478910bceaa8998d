"""CPU seconds to load the full-size OpenCLIP ViT-L/14 and ConvNeXt V2-L encoders from a local
folder, with and without the random initialisation their libraries draw before the checkpoint is
loaded over it (``t2ibench.encoders.init_skip``), alternating, and whether both give the same
state dict. The folders hold random weights written by ``t2ibench.models.fullsize``.

    python benchmarks/encoder_load_cpu.py --rounds 3   # writes results/encoder_load_cpu_<date>.md
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import statistics
import tempfile
import time
from pathlib import Path

FAMILIES = {"clip-l14": "clip", "convnextv2-l": "convnext"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--results", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    import importlib

    import torch

    import t2ibench.encoders.init_skip as init_skip
    from t2ibench.models.fullsize import make_random_encoder

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, family in FAMILIES.items():
            module = importlib.import_module(f"t2ibench.encoders.{family}")
            folder = make_random_encoder(name, Path(tmp) / name)
            module.load_model(str(folder))  # imports and page cache warm for both modes
            times: dict[str, list[float]] = {"skipped": [], "drawn": []}
            states = {}
            for k in range(2 * args.rounds):
                mode = (
                    ("skipped", "drawn")[k % 2] if k // 2 % 2 == 0 else ("drawn", "skipped")[k % 2]
                )
                module.skipped_random_init = (
                    init_skip.skipped_random_init if mode == "skipped" else contextlib.nullcontext
                )
                start = time.process_time()
                model = module.load_model(str(folder))[0]
                times[mode].append(time.process_time() - start)
                states[mode] = model.state_dict()
                del model
            module.skipped_random_init = init_skip.skipped_random_init
            same = all(torch.equal(states["skipped"][k], v) for k, v in states["drawn"].items())
            rows.append((name, times, same))
    today = datetime.date.today().isoformat()
    lines = [
        "# Full-size encoder load, CPU seconds (random init drawn vs skipped)",
        "",
        f"Measured {today} by `python benchmarks/encoder_load_cpu.py --rounds {args.rounds}`: one "
        "torch thread, the two modes alternated (ABBA), CPU time of the load (build + read + "
        "load_state_dict + weights id).",
        "",
        "| encoder | drawn, median s (min–max) | skipped, median s (min–max) | same state dict |",
        "|---|---:|---:|---|",
    ]
    for name, times, same in rows:
        cell = {
            m: f"{statistics.median(v):.2f} ({min(v):.2f}–{max(v):.2f})" for m, v in times.items()
        }
        lines.append(
            f"| {name} | {cell['drawn']} | {cell['skipped']} | {'yes' if same else 'NO'} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    dest = Path(args.results) / f"encoder_load_cpu_{today}.md"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)


if __name__ == "__main__":
    main()
