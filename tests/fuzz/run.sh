#!/usr/bin/env bash
# Runs every built libFuzzer harness (BUILD/fuzz/fuzz_*, from `make
# fuzzers`) for SECONDS each, starting from its committed seed corpus
# (tests/fuzz/corpus/NAME/, copied: the committed one is never changed),
# and prints per harness: executions, crashes.  Inputs that crashed are
# kept in BUILD/fuzz/artifacts/ with the command that replays them.
# Exit 0 when no harness crashed.
# usage (from the repo root): bash tests/fuzz/run.sh SECONDS [BUILD]
set -u
secs=${1:?usage: run.sh SECONDS [BUILD]}
build=${2:-build}
src=$(cd "$(dirname "$0")" && pwd)
bins=("$build"/fuzz/fuzz_*)
if [ ! -x "${bins[0]}" ]; then
  echo "FAIL - fuzz: no harness in $build/fuzz (make fuzzers first)"
  exit 1
fi
work=$(mktemp -d /tmp/hkfuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$build/fuzz/artifacts"
failed=0
for bin in "${bins[@]}"; do
  name=$(basename "$bin")
  mkdir -p "$work/$name/corpus" "$work/$name/art"
  [ -d "$src/corpus/$name" ] && cp "$src/corpus/$name"/* "$work/$name/corpus/" 2>/dev/null
  # Leaks count as crashes; a run is bounded even if a harness hangs.
  HAKMEMD_LOG=stderr ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    timeout $((secs + 120)) "$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=20 -rss_limit_mb=2048 \
    -artifact_prefix="$work/$name/art/" "$work/$name/corpus" >"$work/$name/log" 2>&1
  rc=$?
  execs=$(awk '/stat::number_of_executed_units/{print $2}' "$work/$name/log")
  crashes=$(find "$work/$name/art" -type f | wc -l)
  if [ "$crashes" = 0 ] && [ "$rc" != 0 ]; then
    crashes=1                          # died without leaving an input (e.g. killed by timeout)
  fi
  printf '%-14s executions %10s  crashes %s\n' "$name" "${execs:-?}" "$crashes"
  if [ "$crashes" != 0 ]; then
    failed=1
    for a in "$work/$name/art"/*; do
      [ -f "$a" ] || continue
      cp "$a" "$build/fuzz/artifacts/$name-$(basename "$a")"
      echo "  replay: $bin $build/fuzz/artifacts/$name-$(basename "$a")"
    done
    grep -m 5 -E 'ERROR|SUMMARY|runtime error' "$work/$name/log" | sed 's/^/  /'
  fi
done
exit $failed
