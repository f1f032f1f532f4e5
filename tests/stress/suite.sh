#!/usr/bin/env bash
# Stress suite: multi-threaded churn, cross-thread frees, realloc chains,
# aligned allocation, fork, RSS return and invalid frees, run
#   (a) on build/libhakmem.so (LD_PRELOADed, and linked),
#   (b) on the prefixed library under ASan+UBSan,
#   (c) on the prefixed library under TSan (remote-free path).
# usage (from the repo root): bash tests/stress/suite.sh BUILD
set -u

BUILD=${1:-build}
if [ ! -d "$BUILD" ]; then
  echo "FAIL - stress: build directory $BUILD missing"
  exit 1
fi
BUILD=$(cd "$BUILD" && pwd)
BIN=$BUILD/tests
LIB=$BUILD/libhakmem.so
WORK=$(mktemp -d /tmp/hakmem-stress.XXXXXX)
# A segment name no daemon serves: the client must run on its defaults, and
# no other suite's daemon sees (or disturbs) these processes.
SHM=/hakmem-stress-$$
GROUPS_STARTED=()
fails=0

cleanup() {
  local g
  for g in "${GROUPS_STARTED[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
  rm -f "/dev/shm${SHM}" "/dev/shm${SHM}.lock"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export HAKMEM_SHM=$SHM
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=0:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:exitcode=66:second_deadlock_stack=1
SANITIZER_RE='ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|runtime error:'

# check NAME LIMIT_SECONDS COMMAND...: runs COMMAND in its own process group
# (so whatever it forked is killed afterwards), prints one result line.
check() {
  local name=$1 limit=$2
  shift 2
  local log start rc why=""
  log="$WORK/$(printf '%s' "$name" | tr -c 'A-Za-z0-9_-' _).log"
  start=$SECONDS
  setsid -w timeout -k 5 "$limit" "$@" >"$log" 2>&1 &
  local pid=$!
  GROUPS_STARTED+=("$pid")
  wait "$pid"
  rc=$?
  kill -KILL -- "-$pid" 2>/dev/null
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    why="timed out after ${limit}s"
  elif grep -qE "$SANITIZER_RE" "$log"; then
    why="sanitizer: $(grep -m1 -E "$SANITIZER_RE" "$log")"
  elif [ "$rc" -ne 0 ]; then
    why="exit $rc: $(tail -n 1 "$log")"
  fi
  if [ -z "$why" ]; then
    echo "ok - $name ($((SECONDS - start))s; $(tail -n 1 "$log"))"
  else
    echo "FAIL - $name: $why"
    tail -n 40 "$log" | sed 's/^/    # /'
    fails=$((fails + 1))
  fi
}

need() {   # need NAME FILE: a missing prerequisite fails its checks loudly
  if [ -e "$2" ]; then return 0; fi
  echo "FAIL - $1: $2 not built"
  fails=$((fails + 1))
  return 1
}

PRE=(env LD_PRELOAD="$LIB")

# ---- (a) the real library, standard names ----------------------------------
if need "stress on libhakmem.so" "$LIB" && need "stress on libhakmem.so" "$BIN/stress"; then
  S=$BIN/stress
  check "preload edge cases"                      30 "${PRE[@]}" "$S" edge -H
  check "preload churn 8 threads x 12 rounds"    120 "${PRE[@]}" "$S" churn -H -t 8 -r 12 -i 2000 -s 1
  check "preload churn, large threshold 64K"     120 env HAKMEM_LARGE_THRESHOLD=65536 LD_PRELOAD="$LIB" "$S" churn -H -t 8 -r 6 -i 1500 -s 2
  check "preload churn, BigCache and THP off"    120 env HAKMEM_BIGCACHE=0 HAKMEM_THP=0 LD_PRELOAD="$LIB" "$S" churn -H -t 8 -r 6 -i 1500 -s 3
  check "preload remote frees 8 threads"         120 "${PRE[@]}" "$S" remote -H -t 8 -r 10 -i 20000 -s 4
  check "preload aligned allocation 8 threads"   120 "${PRE[@]}" "$S" align -H -t 8 -i 2 -s 5
  check "preload fork from 8 threads"            120 "${PRE[@]}" "$S" fork -H -t 8 -i 10 -s 6
  check "preload RSS falls after free+collect"    60 "${PRE[@]}" "$S" rssfall -H -t 0 -m 200 -s 7
  check "preload RSS falls, blocks of dead threads" 60 "${PRE[@]}" "$S" rssfall -H -t 4 -m 200 -s 8
fi
if need "stress linked to libhakmem.so" "$BIN/stress-linked"; then
  S=$BIN/stress-linked
  check "linked churn 8 threads"                 120 "$S" churn -H -t 8 -r 6 -i 1500 -s 11
  check "linked fork from 8 threads"             120 "$S" fork -H -t 8 -i 5 -s 12
fi
# A fork child must never wait for the loader lock a parent thread held at
# fork time (the children die of SIGALRM if one does).
if need "fork while the loader is busy" "$LIB" && need "fork while the loader is busy" "$BIN/fork_dlopen"; then
  check "preload fork children while dlopen runs"  120 "${PRE[@]}" "$BIN/fork_dlopen" 1000 -H
fi
if need "invalid frees abort" "$LIB" && need "invalid frees abort" "$BIN/stress-badfree"; then
  for c in free-stack free-interior free-small-misaligned free-wild double-free-large realloc-stack realloc-interior; do
    check "invalid free aborts: $c"               30 "${PRE[@]}" "$BIN/stress-badfree" "$c"
  done
fi
# The hardened build also proves an aligned pointer into a block is no block,
# catches small double frees and damaged free-list links, and its fork
# children keep the free-list secret.
if need "hardened invalid frees abort" "$BUILD/libhakmem-hardened.so" && need "hardened invalid frees abort" "$BIN/stress-badfree"; then
  for c in free-small-interior free-small-misaligned free-interior double-free-small corrupt-link; do
    check "hardened: invalid free aborts: $c"     30 env LD_PRELOAD="$BUILD/libhakmem-hardened.so" "$BIN/stress-badfree" "$c"
  done
  check "hardened fork from 8 threads"           120 env LD_PRELOAD="$BUILD/libhakmem-hardened.so" "$BIN/stress" fork -H -t 8 -i 5 -s 13
  check "hardened churn 8 threads"               120 env LD_PRELOAD="$BUILD/libhakmem-hardened.so" "$BIN/stress" churn -H -t 8 -r 4 -i 1500 -s 14
fi

# Knobs applied from another thread while 4 threads churn.
if need "knobs changed under churn" "$BIN/knob-churn"; then
  check "knobs changed under churn, 4 threads"   120 "$BIN/knob-churn" -t 4 -i 20000 -s 41
fi

# ---- (b) prefixed library under ASan + UBSan --------------------------------
if need "stress under ASan" "$BIN/stress-asan"; then
  S=$BIN/stress-asan
  check "asan edge cases"                         30 "$S" edge
  check "asan churn 8 threads x 6 rounds"        150 "$S" churn -t 8 -r 6 -i 1000 -s 21
  check "asan remote frees 8 threads"            120 "$S" remote -t 8 -r 6 -i 5000 -s 22
  check "asan aligned allocation 4 threads"      120 "$S" align -t 4 -i 1 -s 23
  # LeakSanitizer in a forked child counts the parent's threads as its own
  # and warns of false leaks: leak checking is off for this one run.
  check "asan fork from 8 threads"               120 env ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" "$S" fork -t 8 -i 4 -s 24
  check "asan RSS falls after free+collect"       60 "$S" rssfall -t 0 -m 200 -s 25
fi

# ---- (c) prefixed library under TSan: the cross-thread free path -----------
if need "stress under TSan" "$BIN/stress-tsan"; then
  S=$BIN/stress-tsan
  check "tsan remote frees 8 threads x 6 rounds" 150 "$S" remote -t 8 -r 6 -i 3000 -s 31
  check "tsan churn 8 threads"                   150 "$S" churn -t 8 -r 3 -i 200 -s 32
  # THP is off by default but the daemon may turn it on per site.
  check "tsan churn 8 threads, THP on"           150 env HAKMEM_THP=1 "$S" churn -t 8 -r 3 -i 200 -s 34
  check "tsan aligned allocation 2 threads"      120 "$S" align -t 2 -i 1 -s 33
fi
if need "knobs changed under churn (TSan)" "$BIN/knob-churn-tsan"; then
  check "tsan knobs changed under churn, 4 threads" 150 "$BIN/knob-churn-tsan" -t 4 -i 3000 -s 42
fi

[ "$fails" -eq 0 ]
