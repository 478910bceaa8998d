#!/usr/bin/env bash
# The GPU benchmark in one command (under 10 minutes on one CUDA GPU; no download: random weights):
#   bash benchmarks/gpu.sh                 # fp16; writes benchmarks/results/gpu_<date>.{md,json}
#   bash benchmarks/gpu.sh --dtype bf16
#   bash benchmarks/gpu.sh --dry           # CPU, tiny models: checks the script end to end
# Needs the dev extra (peft): pip install -e ".[dev]".
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
# The open judges' per-image cost on the GPU (issue 21), unless this is the CPU dry run.
if [[ " $* " != *" --dry "* ]]; then python benchmarks/judges_cost.py --device cuda --images 20; fi
exec python benchmarks/gpu_bench.py "$@"
