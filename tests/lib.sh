# Shared helpers for tests/*/suite.sh (source it).  Every result is one
# line that tests/run_all.sh counts: "ok - NAME", "FAIL - NAME: WHY" or
# "SKIP - NAME: WHY".  A suite ends with `finish`, which prints its counts
# and returns non-zero when anything failed.
#
#   ok NAME                    a pass
#   fail NAME WHY              a failure, with one line of why
#   skip NAME WHY              a check that could not run here, and why
#   check NAME COMMAND...      ok when COMMAND succeeds, else fail with the
#                              last lines of its output (or $WHY when set)
#   wait_for SECONDS COMMAND...  polls COMMAND every 0.1 s until it succeeds
#   finish                     the suite's counts; its exit status
TESTLIB_PASSED=0
TESTLIB_FAILED=0
TESTLIB_SKIPPED=0
WHY=

ok() {
  echo "ok - $1"
  TESTLIB_PASSED=$((TESTLIB_PASSED + 1))
}

fail() {
  echo "FAIL - $1: ${2:-failed}" | head -c 2000
  echo
  TESTLIB_FAILED=$((TESTLIB_FAILED + 1))
}

skip() {
  echo "SKIP - $1: $2"
  TESTLIB_SKIPPED=$((TESTLIB_SKIPPED + 1))
}

check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    ok "$name"
  else
    fail "$name" "${WHY:-$(echo "$out" | tail -3 | tr '\n' ' ')}"
  fi
  WHY=
}

wait_for() {
  local limit=$1 i
  shift
  for ((i = 0; i < limit * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  "$@"
}

finish() {
  echo "${TESTLIB_SUITE:-suite}: $TESTLIB_PASSED passed, $TESTLIB_SKIPPED skipped, $TESTLIB_FAILED failed"
  [ "$TESTLIB_FAILED" -eq 0 ]
}
