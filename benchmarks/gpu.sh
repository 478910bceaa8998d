#!/usr/bin/env bash
# The GPU benchmark in one command (no download: random weights; SD1.5 alone was sized for under
# 10 minutes on one CUDA GPU, the SDXL and FLUX.1 rows add their full-size builds and runs —
# not yet timed on a GPU; FLUX.1 holds about 32 GiB of weights, --flux-t5-layers 2 saves 8):
#   bash benchmarks/gpu.sh                 # fp16; writes benchmarks/results/gpu_<date>.{md,json}
#   bash benchmarks/gpu.sh --dtype bf16
#   bash benchmarks/gpu.sh --dry           # CPU, tiny models: checks the script end to end
#   bash benchmarks/gpu.sh --bases sdxl,flux   # only these bases (default: sd15,sdxl,flux)
# Needs the dev extra (peft): pip install -e ".[dev]".
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
# The open judges' per-image cost on the GPU (issue 21), unless this is the CPU dry run.
if [[ " $* " != *" --dry "* ]]; then python benchmarks/judges_cost.py --device cuda --images 20; fi
exec python benchmarks/gpu_bench.py "$@"
