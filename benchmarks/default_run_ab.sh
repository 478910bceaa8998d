#!/usr/bin/env bash
# The README's main job (`t2ibench run --trainer loha`, offline default) at several commits, one
# after the other on the same machine and install, each from an empty models cache: the same-day
# comparison that separates a change in the code from a change in the machine.
#   bash benchmarks/default_run_ab.sh CLONE_DIR COMMIT...   # CLONE_DIR: a clone with .venv
#   (benchmarks/fresh_clone_default_run.sh CLONE_DIR makes one)
set -euo pipefail
clone=$1
shift
cd "$clone"
. .venv/bin/activate
export T2IBENCH_CACHE="$clone/.cache-ab"
TIMEFORMAT='%R %U %S'
echo "| date | commit | run (wall) | run CPU (user+sys) | stages |"
echo "|---|---|---|---|---|"
for c in "$@"; do
  git checkout -q "$c"
  rm -rf results "$T2IBENCH_CACHE"
  { time t2ibench run --trainer loha --no-progress > "run-$c.log" 2>&1 ; } 2> "time-$c.txt"
  read -r real user sys < "time-$c.txt"
  stages=$(python -c "import json,glob;d=json.load(open(glob.glob('results/*/run.json')[0]));print(', '.join(f'{k} {v:.0f} s' for k,v in d['timings'].items()))")
  echo "| $(date -u +%Y-%m-%dT%H:%MZ) | $c | ${real} s | $(python -c "print(round($user+$sys))") s | $stages |"
done
