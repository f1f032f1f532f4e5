#!/usr/bin/env bash
# Runs every test suite (tests/*/suite.sh) and says which failed.
# Usage: tests/run_all.sh BUILD_DIR [SUITE...]
set -u
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
if [ $# -gt 0 ]; then suites=("$@"); else suites=(tests/*/suite.sh); fi

passed=0 failed=0 failed_names=()
start_all=$(date +%s)
for s in "${suites[@]}"; do
  [ -f "$s" ] || s="tests/$s/suite.sh"
  name=$(basename "$(dirname "$s")")
  echo "=== suite $name ==="
  start=$(date +%s)
  if bash "$s" "$build"; then
    passed=$((passed + 1)); verdict=passed
  else
    failed=$((failed + 1)); failed_names+=("$name"); verdict=FAILED
  fi
  echo "=== suite $name: $verdict ($(( $(date +%s) - start ))s) ==="
done
echo
echo "suites: $passed passed, $failed failed in $(( $(date +%s) - start_all ))s${failed_names:+ (failed: ${failed_names[*]})}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
