#!/usr/bin/env bash
# The test suite's time the way CI measures it: a fresh clone of HEAD, then `.ci/run` there (a fresh
# venv, the README's install, lint, the README's test command), timed. Appends one row per mode to
# benchmarks/results/suite_time_<date>.md, followed by the slowest files (pytest --durations, summed
# per file: the serial seconds tests/conftest.py's MEASURED_SECONDS orders the workers' units by).
#   bash benchmarks/suite_time.sh            # the README's command (pytest -n 2)
#   bash benchmarks/suite_time.sh --serial   # then also with one worker process (--maxprocesses=1)
# Run it on a machine doing nothing else: other jobs on the cores lengthen every number.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
modes=("readme")
[ "${1:-}" = "--serial" ] && modes+=("serial")
work=$(mktemp -d)
dest="$work/t2ibench"
git clone -q "$repo" "$dest"
commit=$(git -C "$dest" rev-parse --short HEAD)
day=$(date -u +%Y-%m-%d)
table="$repo/benchmarks/results/suite_time_$day.md"
if [ ! -f "$table" ]; then
  {
    echo "# Test suite time, measured by benchmarks/suite_time.sh ($day)"
    echo
    echo "A fresh clone, then \`.ci/run\` (fresh venv, install, lint, tests). \"tests\" is the test"
    echo "command alone (the README's; serial: with \`--maxprocesses=1\`, one worker); cores: \`nproc\`."
  } > "$table"
fi
section="$work/section.md"
{
  echo
  echo "## $(date -u +%Y-%m-%dT%H:%MZ), commit $commit"
  echo
  echo "| mode | result | tests (wall) | .ci/run (wall) | .ci/run (CPU, user + sys) | cores | load average before → after | stolen by the host, memory stalls |"
  echo "|---|---|---|---|---|---|---|---|"
} > "$section"
# Time the hypervisor gave this VM's cores to others (/proc/stat's steal, all cores) and time some
# task waited for memory (PSI "some"): neither shows in the load average, both lengthen the run
host_waits() {
  python3 - <<'PY'
steal = int(open("/proc/stat").readline().split()[8]) / 100
try:
    some = next(l for l in open("/proc/pressure/memory") if l.startswith("some"))
    stall = int(some.split("total=")[1]) / 1e6
except (OSError, StopIteration):
    stall = float("nan")
print(steal, stall)
PY
}
for mode in "${modes[@]}"; do
  log="$work/ci-$mode.log"
  # PYTEST_ADDOPTS reaches the README's command inside .ci/run unchanged; its own -n 2 comes
  # later on the command line and wins over an -n here, so one worker is --maxprocesses=1
  opts="--durations=0 -p no:cacheprovider"
  [ "$mode" = "serial" ] && opts="$opts --maxprocesses=1"
  load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  read -r steal0 stall0 < <(host_waits)
  s=$(date +%s)
  set +e
  # CPU seconds (user + sys) of .ci/run and its children, from bash's `times` (children's line;
  # cumulative, so the serial mode's row includes the readme mode's): how busy the cores were
  (cd "$dest" && PYTEST_ADDOPTS="$opts" bash .ci/run) > "$log" 2>&1
  rc=$?
  set -e
  total=$(($(date +%s) - s))
  load_after=$(cut -d' ' -f1-3 /proc/loadavg)
  read -r steal1 stall1 < <(host_waits)
  waits=$(python3 -c "print(f'{$steal1 - $steal0:.0f} s, {$stall1 - $stall0:.0f} s')")
  tests=$(grep -o 'the test command took [0-9]* s' "$log" | grep -o '[0-9]*' || echo "?")
  result=$(grep -E '(passed|failed|error).* in [0-9.]+s' "$log" | tail -1 | sed -E 's/^=+ //; s/ in [0-9.]+s.*//')
  fmt() { [ "$1" = "?" ] && echo "?" || printf '%d min %02d s' $(($1 / 60)) $(($1 % 60)); }
  times > "$work/times-$mode.txt"
  cpu=$(tail -1 "$work/times-$mode.txt" | python3 -c 'import re, sys; print(round(sum(int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", sys.stdin.read()))))')
  echo "| $mode | ${result:-see log} (exit $rc) | $(fmt "$tests") | $(fmt "$total") | $cpu s | $(nproc) | $load_before → $load_after | $waits |" >> "$section"
  python3 - "$log" "$mode" >> "$work/slowest.md" <<'EOF'
import collections, re, sys
log, mode = sys.argv[1], sys.argv[2]
per_file, per_test = collections.Counter(), collections.Counter()
for line in open(log, encoding="utf-8", errors="replace"):
    m = re.match(r"\s*([0-9.]+)s (setup|call|teardown)\s+((\S+?\.py)::\S+)", line)
    if m:
        per_file[m.group(4)] += float(m.group(1))
        per_test[m.group(3)] += float(m.group(1))
print(f"\nSlowest files, {mode} (seconds summed over their tests' setup + call + teardown):\n")
print("| file | s |\n|---|---|")
for file, sec in per_file.most_common(15):
    print(f"| `{file}` | {sec:.0f} |")
print(f"\nSlowest tests, {mode} (setup + call + teardown):\n")
print("| test | s |\n|---|---|")
for test, sec in per_test.most_common(20):
    print(f"| `{test}` | {sec:.0f} |")
EOF
done
cat "$section" "$work/slowest.md" >> "$table"
cat "$section" "$work/slowest.md"
echo "logs: $work"
