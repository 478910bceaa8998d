#!/usr/bin/env bash
# Wall time of groups of test files, one pytest process per group (no xdist), before and after a
# change: the files at BEFORE (a commit) and at HEAD, each in its own fresh clone, alternating.
# Shows what sharing a session fixture between files saves; on a busy machine only the ratio of
# the two columns means something. Appends a dated table to benchmarks/results/suite_files_<date>.md.
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
  echo "## $(date -u +%Y-%m-%dT%H:%MZ): before $b, after $a, $(nproc) cores"
  echo
  echo "| files | before: result | before (wall) | after: result | after (wall) | load average at start |"
  echo "|---|---|---|---|---|---|"
} > "$work/section.md"

run() {  # checkout files... -> "result|seconds"
  local dir=$1
  shift
  local s rc out
  s=$(date +%s)
  set +e
  out=$(cd "$dir" && PYTHONPATH="$dir" HF_HUB_OFFLINE=1 python -m pytest -q -p no:cacheprovider "$@" 2>&1)
  rc=$?
  set -e
  echo "$out" > "$dir/last.log"
  local result
  result=$(echo "$out" | grep -E '(passed|failed|error).* in [0-9.]+s' | tail -1 | sed -E 's/^=+ //; s/ in [0-9.]+s.*//')
  echo "${result:-exit $rc}|$(($(date +%s) - s))"
}

for group in "$@"; do
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  # shellcheck disable=SC2086  # a group is a space-separated list of files
  IFS='|' read -r rb sb <<< "$(run "$work/before" $group)"
  # shellcheck disable=SC2086
  IFS='|' read -r ra sa <<< "$(run "$work/after" $group)"
  files=$(echo "$group" | sed -E 's/([^ ]+)/`\1`/g; s/ /, /g')
  echo "| $files | $rb | $sb s | $ra | $sa s | $load |" | tee -a "$work/section.md"
done
cat "$work/section.md" >> "$table"
echo "table: $table; logs: $work/{before,after}/last.log"
