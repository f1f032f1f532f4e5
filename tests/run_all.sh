#!/usr/bin/env bash
# Runs every test suite (tests/*/suite.sh), each bounded by SUITE_TIMEOUT
# seconds (default 1800), and counts their result lines (tests/lib.sh):
# passed, skipped (each named with its reason) and failed checks.  A suite
# that fails without a FAIL line (it crashed, or timed out) counts as one
# failed check.
# Usage: tests/run_all.sh BUILD_DIR [SUITE...]
set -u
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
if [ $# -gt 0 ]; then suites=("$@"); else suites=(tests/*/suite.sh); fi
limit=${SUITE_TIMEOUT:-1800}

log=$(mktemp /tmp/hakmem-run-all.XXXXXX)
trap 'rm -f "$log"' EXIT
passed=0 skipped=0 failed=0 failed_suites=() skips=()
start_all=$(date +%s)
for s in "${suites[@]}"; do
  [ -f "$s" ] || s="tests/$s/suite.sh"
  name=$(basename "$(dirname "$s")")
  echo "=== suite $name ==="
  start=$(date +%s)
  timeout -k 60 "$limit" bash "$s" "$build" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  p=$(grep -c '^ok - ' "$log")
  k=$(grep -c '^SKIP - ' "$log")
  f=$(grep -c '^FAIL - ' "$log")
  while IFS= read -r line; do skips+=("$name: ${line#SKIP - }"); done < <(grep '^SKIP - ' "$log")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
      echo "FAIL - suite $name: timed out after ${limit}s"
    else
      echo "FAIL - suite $name: exit status $rc with no failed check"
    fi
    f=1
  fi
  passed=$((passed + p)) skipped=$((skipped + k)) failed=$((failed + f))
  if [ "$f" -eq 0 ]; then verdict=passed; else verdict=FAILED; failed_suites+=("$name"); fi
  echo "=== suite $name: $verdict, $p passed, $k skipped, $f failed ($(( $(date +%s) - start ))s) ==="
done
echo
for line in "${skips[@]}"; do echo "skipped: $line"; done
echo "suites: $(( ${#suites[@]} - ${#failed_suites[@]} )) of ${#suites[@]} passed in $(( $(date +%s) - start_all ))s${failed_suites:+ (failed: ${failed_suites[*]})}"
echo "$passed passed, $skipped skipped, $failed failed"
[ "$failed" -eq 0 ]
