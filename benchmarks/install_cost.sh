#!/usr/bin/env bash
# What `pip install -e .` costs on a fresh clone and venv: wall and CPU time, venv size, packages,
# and the largest installed folders. Writes benchmarks/results/install_cost_<date>.md.
#   bash benchmarks/install_cost.sh [WORKDIR]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
today="$(date -u +%F)"
rm -rf "$work/clone"
git clone -q "$repo" "$work/clone"
cd "$work/clone"
python3 -m venv .venv
start=$(date +%s.%N)
/usr/bin/time -f "%U %S" -o "$work/cpu.txt" .venv/bin/pip install -q --no-cache-dir -e .
end=$(date +%s.%N)
read -r user sys < "$work/cpu.txt"
wall=$(echo "$end - $start" | bc)
size=$(du -sh .venv | cut -f1)
count=$(.venv/bin/pip list --format=freeze 2>/dev/null | wc -l)
load=$(cut -d' ' -f1-3 /proc/loadavg)
out="$repo/benchmarks/results/install_cost_${today}.md"
{
  echo "# Install cost: \`pip install -e .\` on a fresh clone and venv"
  echo
  echo "Measured $today by \`bash benchmarks/install_cost.sh\` ($(nproc) CPUs, load average $load;"
  echo "no pip cache, wheels from this machine's package index). Wall time depends on the network,"
  echo "the disk and the load; CPU time (user + sys of pip and its children) much less."
  echo
  echo "| wall s | CPU s | venv size | packages |"
  echo "|---:|---:|---:|---:|"
  printf "| %.0f | %.0f | %s | %s |\n" "$wall" "$(echo "$user + $sys" | bc)" "$size" "$count"
  echo
  echo "Largest installed folders:"
  echo
  echo '```'
  du -sh .venv/lib/python3*/site-packages/* | sort -h | tail -12
  echo '```'
} > "$out"
cat "$out"
