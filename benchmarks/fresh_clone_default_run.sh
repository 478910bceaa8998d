#!/usr/bin/env bash
# The README's first command on a fresh clone and a fresh venv, timed: install, then the offline
# default `t2ibench run --trainer loha` (stage seconds from the run's run.json).
#   bash benchmarks/fresh_clone_default_run.sh [CLONE_DIR]   # prints the table to stdout
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$(mktemp -d)/t2ibench}
rm -rf "$dest" && git clone -q "$repo" "$dest" && cd "$dest"
export T2IBENCH_CACHE="$dest/.cache-t2ibench"   # an empty cache, as on a new machine
s=$(date +%s)
python3 -m venv .venv && . .venv/bin/activate && pip install -q -e . > install.log 2>&1
m=$(date +%s)
TIMEFORMAT='%R %U %S'
{ time t2ibench run --trainer loha --no-progress > run.log 2>&1 ; } 2> time.txt
e=$(date +%s)
read -r real user sys < time.txt
stages=$(python -c "import json,glob;d=json.load(open(glob.glob('results/*/run.json')[0]));print(', '.join(f'{k} {v:.0f} s' for k,v in d['timings'].items()))")
echo "| date | commit | install (wall) | run (wall) | run CPU (user+sys) | stages | load average at end |"
echo "|---|---|---|---|---|---|---|"
echo "| $(date -u +%Y-%m-%dT%H:%MZ) | $(git rev-parse --short HEAD) | $((m - s)) s | ${real} s | $(python -c "print(round($user+$sys))") s | $stages | $(cut -d' ' -f1-3 /proc/loadavg) |"
