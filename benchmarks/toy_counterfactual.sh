#!/usr/bin/env bash
# The toy validity counterfactual on fresh images (see toy_counterfactual.toml), and the validity
# report of the committed reference sweep recomputed from its probe outcomes. Writes
# benchmarks/results/toy_validity_<date>.md. Usage: benchmarks/toy_counterfactual.sh [SWEEP_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
sweep=${1:-/tmp/t2ibench-toy-counterfactual}
date=$(date -u +%F)
start=$(date +%s)
t2ibench sweep --grid "$here/toy_counterfactual.toml" --out "$sweep" --no-progress
t2ibench toy-validity "$sweep" --out "$sweep/report/validity" --no-plots
took=$(( $(date +%s) - start ))
t2ibench toy-validity "$root/reference_results/toy" --out "$root/reference_results/toy/report/validity" \
  --outcomes "$root/reference_results/toy/report/validity/probe_outcomes.csv"
out="$here/results/toy_validity_$date.md"
{
  echo "# Toy-world validity ($date)"
  echo
  echo 'Produced by `benchmarks/toy_counterfactual.sh` (grid `benchmarks/toy_counterfactual.toml`):'
  echo "${took} s wall for the sweep and its report (a resumed sweep only redoes the analysis)."
  echo
  echo "## Reference sweep (reference_results/toy, 30 runs, recomputed from probe_outcomes.csv)"
  echo
  sed -n '/^## Summary/,/^## Method/p' "$root/reference_results/toy/report/validity/validity.md" | sed '$d'
  sed -n '/^## Correlations/,/^## Counterfactual/p' "$root/reference_results/toy/report/validity/validity.md" | sed '$d'
  echo "## Fresh sweep: alter prompts, 16 images per leaf, 4 runs × 2 checkpoints"
  echo
  sed -n '/^## Summary/,/^## Method/p' "$sweep/report/validity/validity.md" | sed '$d'
  sed -n '/^## Correlations/,/^## Ground truth/p' "$sweep/report/validity/validity.md" | sed '$d'
} > "$out"
echo "$out"
