#!/usr/bin/env bash
# The libFuzzer harnesses (tests/fuzz/fuzz_*.c, built by make test), each
# run for FUZZ_SECONDS (default 30) by tests/fuzz/run.sh from its committed
# corpus: one result per harness with its executions.  A crash, a leak or an
# input past libFuzzer's per-input timeout fails it; the input is kept in
# BUILD/fuzz/artifacts/ with the command that replays it.
# usage (from the repo root): bash tests/fuzz/suite.sh BUILD
set -u
source "$(dirname "$0")/../lib.sh"
testlib_begin fuzz "${1:-build}"
SECS=${FUZZ_SECONDS:-30}
names=()
for src in "$REPO"/tests/fuzz/fuzz_*.c; do
  n=$(basename "$src" .c)
  names+=("$n")
  need "$BUILD/fuzz/$n"
done
make_tmpdir WORK hkfuzz-suite
# run.sh bounds each harness itself (SECS + 120 s); this bounds the whole.
timeout -k 10 $((${#names[@]} * (SECS + 150))) bash "$REPO/tests/fuzz/run.sh" "$SECS" "$BUILD" >"$WORK/run.log" 2>&1
rc=$?
for n in "${names[@]}"; do
  execs= crashes=
  read -r execs crashes < <(awk -v n="$n" '$1 == n && $2 == "executions" && $4 == "crashes" { print $3, $5 }' "$WORK/run.log")
  if [ -z "${execs:-}" ]; then
    fail "$n" "no result from tests/fuzz/run.sh (exit $rc)" "$(tail -n 5 "$WORK/run.log")"
  elif [ "$crashes" != 0 ]; then
    fail "$n" "$crashes crashes in $execs executions" "$(sed -n "/^$n /,/^fuzz_/p" "$WORK/run.log" | sed '1d;$d')"
  elif ! [ "$execs" -gt 0 ] 2>/dev/null; then
    fail "$n" "no input was executed ($execs)"
  else
    ok "$n: $execs executions in ${SECS}s, no crash"
  fi
done
finish
