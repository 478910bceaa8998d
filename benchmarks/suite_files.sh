#!/usr/bin/env bash
# Wall time of groups of test files, one pytest process per group (no xdist), before and after a
# change: the files at BEFORE (a commit) and at HEAD, each in its own fresh clone, alternating.
# Shows what sharing a session fixture between files saves; on a busy machine only the ratio of
# the two columns means something, and CPU time (user + sys of pytest and the processes it waits
# for; Ray's daemon workers are not among them) less than wall time. AFTER_FIRST=1 runs HEAD first.
# Appends a dated table to benchmarks/results/suite_files_<date>.md.
#   bash benchmarks/suite_files.sh BEFORE "FILE FILE..." ["FILE..." ...]
# Needs the venv of the checkout active (python with t2ibench's dependencies).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
before=${1:?usage: suite_files.sh BEFORE \"FILES\"...}
shift
work=$(mktemp -d)
git clone -q "$repo" "$work/before" && git -C "$work/before" checkout -q "$before"
git clone -q "$repo" "$work/after"
b=$(git -C "$work/before" rev-parse --short HEAD)
a=$(git -C "$work/after" rev-parse --short HEAD)
day=$(date -u +%Y-%m-%d)
table="$repo/benchmarks/results/suite_files_$day.md"
[ -f "$table" ] || printf '# Test files timed one group at a time (benchmarks/suite_files.sh, %s)\n' "$day" > "$table"
{
  echo
  echo "## $(date -u +%Y-%m-%dT%H:%MZ): before $b, after $a, $(nproc) cores$([ "${AFTER_FIRST:-0}" = 1 ] && echo ', after run first')"
  echo
  echo "| files | before: result | before: wall, CPU | after: result | after: wall, CPU | load average at start |"
  echo "|---|---|---|---|---|---|"
} > "$work/section.md"

run() {  # checkout files... -> "result|wall seconds|CPU seconds"
  local dir=$1
  shift
  local s rc
  s=$(date +%s)
  set +e
  local TIMEFORMAT='%U %S'
  { time (cd "$dir" && PYTHONPATH="$dir" HF_HUB_OFFLINE=1 python -m pytest -q -p no:cacheprovider "$@" > "$dir/last.log" 2>&1); } 2> "$dir/cpu.txt"
  rc=$?
  set -e
  local wall=$(($(date +%s) - s)) user sys result
  read -r user sys < "$dir/cpu.txt"
  result=$(grep -E '(passed|failed|error).* in [0-9.]+s' "$dir/last.log" | tail -1 | sed -E 's/^=+ //; s/ in [0-9.]+s.*//')
  echo "${result:-exit $rc}|$wall|$(python3 -c "print(round($user + $sys))")"
}

for group in "$@"; do
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  if [ "${AFTER_FIRST:-0}" = 1 ]; then
    # shellcheck disable=SC2086  # a group is a space-separated list of files
    IFS='|' read -r ra wa ca <<< "$(run "$work/after" $group)"
    # shellcheck disable=SC2086
    IFS='|' read -r rb wb cb <<< "$(run "$work/before" $group)"
  else
    # shellcheck disable=SC2086
    IFS='|' read -r rb wb cb <<< "$(run "$work/before" $group)"
    # shellcheck disable=SC2086
    IFS='|' read -r ra wa ca <<< "$(run "$work/after" $group)"
  fi
  files=$(echo "$group" | sed -E 's/([^ ]+)/`\1`/g; s/ /, /g')
  echo "| $files | $rb | $wb s, $cb s | $ra | $wa s, $ca s | $load |" | tee -a "$work/section.md"
done
cat "$work/section.md" >> "$table"
echo "table: $table; logs: $work/{before,after}/last.log"
