#!/usr/bin/env bash
# Stress suite: multi-threaded churn, cross-thread frees, realloc chains,
# aligned allocation, fork, RSS return and invalid frees, run
#   (a) on build/libhakmem.so (LD_PRELOADed, and linked),
#   (b) on the prefixed library under ASan+UBSan,
#   (c) on the prefixed library under TSan (remote-free path).
# usage (from the repo root): bash tests/stress/suite.sh BUILD
set -u
source "$(dirname "$0")/../lib.sh"
testlib_begin stress "${1:-build}"
BIN=$BUILD/tests
LIB=$BUILD/libhakmem.so
need "$LIB" "$BUILD/libhakmem-hardened.so" "$BIN/stress" "$BIN/stress-linked" "$BIN/stress-asan" "$BIN/stress-tsan" \
  "$BIN/stress-badfree" "$BIN/fork_dlopen" "$BIN/knob-churn" "$BIN/knob-churn-tsan"
make_tmpdir WORK hakmem-stress
# A segment name no daemon serves: the client must run on its defaults, and
# no other suite's daemon sees (or disturbs) these processes.
SHM=/hakmem-stress-$$
track_shm "$SHM"

export HAKMEM_SHM=$SHM
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=0:detect_leaks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:exitcode=66:second_deadlock_stack=1
SANITIZER_RE='ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|runtime error:'

# run_case NAME LIMIT_SECONDS COMMAND...: runs COMMAND under a timeout
# (which kills whatever it forked too), one result line; sanitizer reports
# fail it whatever its exit status.
run_case() {
  local name=$1 limit=$2
  shift 2
  local log start rc why=""
  log="$WORK/$(printf '%s' "$name" | tr -c 'A-Za-z0-9_-' _).log"
  start=$SECONDS
  timeout -k 5 "$limit" "$@" >"$log" 2>&1
  rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    why="timed out after ${limit}s"
  elif grep -qE "$SANITIZER_RE" "$log"; then
    why="sanitizer: $(grep -m1 -E "$SANITIZER_RE" "$log")"
  elif [ "$rc" -ne 0 ]; then
    why="exit $rc: $(tail -n 1 "$log")"
  fi
  if [ -z "$why" ]; then
    ok "$name ($((SECONDS - start))s; $(tail -n 1 "$log"))"
  else
    fail "$name" "$why" "$(tail -n 40 "$log")"
  fi
}

PRE=(env LD_PRELOAD="$LIB")

# ---- (a) the real library, standard names ----------------------------------
S=$BIN/stress
run_case "preload edge cases"                      30 "${PRE[@]}" "$S" edge -H
run_case "preload churn 8 threads x 12 rounds"    120 "${PRE[@]}" "$S" churn -H -t 8 -r 12 -i 2000 -s 1
run_case "preload churn, large threshold 64K"     120 env HAKMEM_LARGE_THRESHOLD=65536 LD_PRELOAD="$LIB" "$S" churn -H -t 8 -r 6 -i 1500 -s 2
run_case "preload churn, BigCache and THP off"    120 env HAKMEM_BIGCACHE=0 HAKMEM_THP=0 LD_PRELOAD="$LIB" "$S" churn -H -t 8 -r 6 -i 1500 -s 3
run_case "preload remote frees 8 threads"         120 "${PRE[@]}" "$S" remote -H -t 8 -r 10 -i 20000 -s 4
run_case "preload aligned allocation 8 threads"   120 "${PRE[@]}" "$S" align -H -t 8 -i 2 -s 5
run_case "preload fork from 8 threads"            120 "${PRE[@]}" "$S" fork -H -t 8 -i 10 -s 6
run_case "preload RSS falls after free+collect"    60 "${PRE[@]}" "$S" rssfall -H -t 0 -m 200 -s 7
run_case "preload RSS falls, blocks of dead threads" 60 "${PRE[@]}" "$S" rssfall -H -t 4 -m 200 -s 8
S=$BIN/stress-linked
run_case "linked churn 8 threads"                 120 "$S" churn -H -t 8 -r 6 -i 1500 -s 11
run_case "linked fork from 8 threads"             120 "$S" fork -H -t 8 -i 5 -s 12
# A fork child must never wait for the loader lock a parent thread held at
# fork time (the children die of SIGALRM if one does).
run_case "preload fork children while dlopen runs"  120 "${PRE[@]}" "$BIN/fork_dlopen" 1000 -H
# A block of another allocator in the process (glibc's own, mimalloc's)
# is foreign too: README promises the abort.
for c in free-stack free-interior free-small-misaligned free-wild double-free-large realloc-stack realloc-interior \
         free-foreign-glibc free-foreign-glibc-large free-foreign-mimalloc; do
  run_case "invalid free aborts: $c"               30 "${PRE[@]}" "$BIN/stress-badfree" "$c"
done
# The hardened build also proves an aligned pointer into a block is no block,
# catches small double frees and damaged free-list links, and its fork
# children keep the free-list secret.
for c in free-small-interior free-small-misaligned free-interior double-free-small corrupt-link; do
  run_case "hardened: invalid free aborts: $c"     30 env LD_PRELOAD="$BUILD/libhakmem-hardened.so" "$BIN/stress-badfree" "$c"
done
run_case "hardened fork from 8 threads"           120 env LD_PRELOAD="$BUILD/libhakmem-hardened.so" "$BIN/stress" fork -H -t 8 -i 5 -s 13
run_case "hardened churn 8 threads"               120 env LD_PRELOAD="$BUILD/libhakmem-hardened.so" "$BIN/stress" churn -H -t 8 -r 4 -i 1500 -s 14

# Knobs applied from another thread while 4 threads churn.
run_case "knobs changed under churn, 4 threads"   120 "$BIN/knob-churn" -t 4 -i 20000 -s 41

# ---- (b) prefixed library under ASan + UBSan --------------------------------
S=$BIN/stress-asan
run_case "asan edge cases"                         30 "$S" edge
run_case "asan churn 8 threads x 6 rounds"        150 "$S" churn -t 8 -r 6 -i 1000 -s 21
run_case "asan remote frees 8 threads"            120 "$S" remote -t 8 -r 6 -i 5000 -s 22
run_case "asan aligned allocation 4 threads"      120 "$S" align -t 4 -i 1 -s 23
# LeakSanitizer in a forked child counts the parent's threads as its own
# and warns of false leaks: leak checking is off for this one run.
run_case "asan fork from 8 threads"               120 env ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" "$S" fork -t 8 -i 4 -s 24
run_case "asan RSS falls after free+collect"       60 "$S" rssfall -t 0 -m 200 -s 25

# ---- (c) prefixed library under TSan: the cross-thread free path -----------
S=$BIN/stress-tsan
run_case "tsan remote frees 8 threads x 6 rounds" 150 "$S" remote -t 8 -r 6 -i 3000 -s 31
run_case "tsan churn 8 threads"                   150 "$S" churn -t 8 -r 3 -i 200 -s 32
# THP is off by default but the daemon may turn it on per site.
run_case "tsan churn 8 threads, THP on"           150 env HAKMEM_THP=1 "$S" churn -t 8 -r 3 -i 200 -s 34
run_case "tsan aligned allocation 2 threads"      120 "$S" align -t 2 -i 1 -s 33
run_case "tsan knobs changed under churn, 4 threads" 150 "$BIN/knob-churn-tsan" -t 4 -i 3000 -s 42

finish
