#!/usr/bin/env bash
# CPU seconds of test files, each alone in one pytest process (no xdist), at a commit: the files
# of REV copied out with `git archive` into a fresh folder (no clone, no worktree), then for each
# FILE `/usr/bin/time python -m pytest -q FILE --durations=8`. CPU = user + sys of pytest and of
# every process it waited for (forked children included); on a shared machine that is what counts,
# wall time is shown but depends on the load. Prints one line per file and appends them to
# benchmarks/results/file_cpu_<date>.md.
#   bash benchmarks/file_cpu.sh REV FILE...
# Needs the venv of the checkout active (python with t2ibench's dependencies).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:?usage: file_cpu.sh REV FILE...}
shift
work=$(mktemp -d)
git -C "$repo" archive "$rev" | tar -x -C "$work"
short=$(git -C "$repo" rev-parse --short "$rev")
day=$(date -u +%Y-%m-%d)
table="$repo/benchmarks/results/file_cpu_$day.md"
[ -f "$table" ] || printf '# Test files, each alone in one process (benchmarks/file_cpu.sh, %s)\n\n| time | commit | file | result | wall s | CPU s (user+sys) | load at start |\n|---|---|---|---|---|---|---|\n' "$day" > "$table"
for file in "$@"; do
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  set +e
  (cd "$work" && PYTHONPATH="$work" HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 \
    /usr/bin/time -f '%e %U %S' -o "$work/time.txt" \
    python -m pytest -q -p no:cacheprovider "$file" --durations=8 > "$work/last.log" 2>&1)
  set -e
  read -r wall user sys < "$work/time.txt"
  result=$(grep -E '(passed|failed|error).* in [0-9.]+s' "$work/last.log" | tail -1 | sed -E 's/^=+ //; s/ in [0-9.]+s.*//')
  cpu=$(python3 -c "print(round($user + $sys, 1))")
  echo "| $(date -u +%H:%MZ) | $short | \`$file\` | $result | $wall | $cpu | $load |" | tee -a "$table"
done
rm -rf "$work"
