"""Parameter counts of every part of the bundled single-file base configs
(``t2ibench/bases/configs``), built on the meta device (no memory, no weights).

    python benchmarks/bundled_configs.py > benchmarks/results/bundled_configs_2026-12-07.md
"""

from __future__ import annotations

import json
import time

import diffusers
import torch
import transformers

from t2ibench.bases.bundled import CONFIGS, variants


def count(variant: str, name: str, lib: str, cls: str) -> int:
    folder = CONFIGS / variant / name
    with torch.device("meta"):
        if lib == "diffusers":
            klass = getattr(diffusers, cls)
            model = klass.from_config(klass.load_config(folder))
        else:
            klass = getattr(transformers, cls)
            model = klass(klass.config_class.from_pretrained(folder))
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    t0 = time.perf_counter()
    print("# Bundled single-file base configs: parameters per part (meta device)\n")
    print("| variant | part | class | parameters |")
    print("|---|---|---|---:|")
    for variant in variants():
        index = json.loads((CONFIGS / variant / "model_index.json").read_text())
        for name, value in sorted(index.items()):
            if name.startswith("_") or not isinstance(value, list):
                continue
            if not (CONFIGS / variant / name / "config.json").is_file():
                continue
            lib, cls = value
            print(f"| {variant} | {name} | {cls} | {count(variant, name, lib, cls):,} |")
    print(
        f"\n{time.perf_counter() - t0:.1f} s on CPU, torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}, transformers {transformers.__version__}."
    )
    print(
        "Published: SDXL UNet 2,567,463,684, VAE 83,653,863, bigG 694,659,840; FLUX.1-dev "
        "transformer 11,901,408,320; T5-XXL encoder 4,762,310,656 (all equal above)."
    )


if __name__ == "__main__":
    main()
