#!/usr/bin/env bash
# Unit suite: the cmocka binaries of tests/unit (one per allocator box),
# each run once; cmocka's own report is shown, then "ok - unit_<box>" or
# "FAIL - unit_<box>: why".  No daemon: the allocator runs in baseline mode
# on a segment name nobody serves.
# usage (from the repo root): bash tests/unit/suite.sh BUILD
set -u

BUILD=${1:-build}
if [ ! -d "$BUILD" ]; then
  echo "FAIL - unit: build directory $BUILD missing"
  exit 1
fi
BUILD=$(cd "$BUILD" && pwd)
BOXES=(size_class chunk_map segment heap large bigcache thp site options api api_hardened modules registration policy_reader mallinfo hardened knobs counters)
SHM=/hakmem-unit-$$
WORK=$(mktemp -d /tmp/hakmem-unit.XXXXXX)
CHILD=

cleanup() {
  [ -n "$CHILD" ] && kill -KILL -- "-$CHILD" 2>/dev/null
  rm -f "/dev/shm${SHM}" "/dev/shm${SHM}.lock"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The options test expects the built-in defaults: no knob may leak in.
for v in $(env | sed -n 's/^\(HAKMEM_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
export HAKMEM_SHM=$SHM HAKMEM_MODE=baseline

fails=0
for box in "${BOXES[@]}"; do
  name=unit_$box
  bin=$BUILD/tests/$name
  if [ ! -x "$bin" ]; then
    echo "FAIL - $name: $bin not built"
    fails=$((fails + 1))
    continue
  fi
  log=$WORK/$name.log
  # Own process group, so a hung binary and the children it forked go together.
  setsid timeout -k 5 60 "$bin" >"$log" 2>&1 &
  CHILD=$!
  wait "$CHILD"
  rc=$?
  CHILD=
  sed 's/^/    /' "$log"
  if [ "$rc" -eq 0 ] && grep -q '\[  PASSED  \]' "$log" && ! grep -q '\[  FAILED  \]' "$log"; then
    echo "ok - $name"
  else
    failed=$(sed -n 's/^\[  FAILED  \] \(test_[a-z0-9_]*\)$/\1/p' "$log" | sort -u | tr '\n' ' ')
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then why="timed out"
    elif [ -n "$failed" ]; then why="failed: ${failed% }"
    else why="exit status $rc"; fi
    echo "FAIL - $name: $why"
    fails=$((fails + 1))
  fi
done

echo "unit: $(( ${#BOXES[@]} - fails )) of ${#BOXES[@]} binaries passed"
[ "$fails" -eq 0 ]
