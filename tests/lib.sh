# Shared helpers for tests/*/suite.sh (source it).  Every result is one
# line that tests/run_all.sh counts: "ok - NAME", "FAIL - NAME: WHY" or
# "SKIP - NAME: WHY".  A skip is only for a machine that lacks what the
# check needs (and says what); anything else that stops a check is a FAIL.
#
# Results
#   ok NAME                     a pass
#   fail NAME [WHY [DETAIL]]    a failure, one line of why; DETAIL (lines)
#                               follows indented, as comments
#   skip NAME WHY               a check this machine cannot run, and why
#   check NAME COMMAND...       ok when COMMAND succeeds, else fail with the
#                               last lines of its output (or $WHY when set);
#                               $WHY_AFTER, when set, is a command run on
#                               failure only, after the wait, whose output
#                               is the failure's DETAIL
#   run_cmocka NAME SECS BIN    runs a cmocka binary under a timeout: one
#                               result per test ("NAME/test"); a skipped
#                               test gives the reason it printed
#                               ("skipped: REASON") before skip()
#   finish                      the suite's counts; its exit status
# Setup and bounded waiting
#   testlib_begin SUITE BUILD   names the suite, sets BUILD (absolute) and
#                               REPO, installs the cleanup; exits failing
#                               when BUILD is missing
#   need FILE...                a missing prerequisite fails the suite now
#   wait_for SECONDS COMMAND... polls COMMAND every 0.1 s until it succeeds
#   wait_pid PID SECONDS        waits for PID to end on its own, killing it
#                               after SECONDS; its exit status (137: killed)
#   stop_pid PID [SECONDS]      SIGTERM, then SIGKILL after SECONDS (10);
#                               its exit status
#   kill_pid PID                SIGKILL now
# Cleanup at exit (each runs once, whatever way the suite ends)
#   make_tmpdir VAR PREFIX      VAR=a fresh /tmp/PREFIX.XXXXXX, removed
#   track_pid PID...            stopped (TERM, then KILL after 5 s)
#   track_shm NAME...           /dev/shm/NAME and its .lock removed
#   add_user NAME USERADD-ARGS  a test user (and its own group) made, removed
#   need_group NAME             the group made if missing, removed if made
#   at_exit FUNCTION            run first (e.g. to shut a container down)
TESTLIB_PASSED=0
TESTLIB_FAILED=0
TESTLIB_SKIPPED=0
TESTLIB_PIDS=()
TESTLIB_SHMS=()
TESTLIB_DIRS=()
TESTLIB_USERS=()
TESTLIB_GROUPS=()
TESTLIB_AT_EXIT=()
WHY=
WHY_AFTER=

ok() {
  echo "ok - $1"
  TESTLIB_PASSED=$((TESTLIB_PASSED + 1))
}

fail() {
  local line="FAIL - $1: ${2:-failed}"
  line=${line//$'\n'/ }
  echo "${line:0:2000}"
  [ -n "${3:-}" ] && printf '%s\n' "$3" | head -n 40 | sed 's/^/#   /'
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
    fail "$name" "${WHY:-$(echo "$out" | tail -3 | tr '\n' ' ')}" "${WHY_AFTER:+$(eval "$WHY_AFTER" 2>&1)}"
  fi
  WHY= WHY_AFTER=
}

wait_for() {
  local limit=$1
  shift
  # A deadline, not a count of tries: a check that takes a third of a
  # second (a hakmemctl call and a python verdict) made 20 s of tries last
  # 90 s, past the timeout of the suite that waited.
  local deadline=$((${EPOCHREALTIME//[.,]/} + limit * 1000000))
  while ((${EPOCHREALTIME//[.,]/} < deadline)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  "$@"
}

# 0 when PID is a child of this shell (alive, or dead and not yet waited
# for): a pid reaped earlier may belong to someone else by now, and is
# never signalled.
ours() {
  local st
  st=$(proc_state "$1") && [ "${st#* }" = "$$" ]
}

# "STATE PPID" of a live (or zombie) process, from /proc/PID/stat.
proc_state() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  echo "${stat%% *} $(cut -d' ' -f2 <<<"$stat")"
}

# 0 while PID runs (a zombie has ended).
running() {
  local st
  st=$(proc_state "$1") && [ "${st%% *}" != Z ]
}

# The bash builtin `wait` has no limit: these poll instead.
wait_pid() {
  local pid=$1 limit=$2 i
  ours "$pid" || { wait "$pid" 2>/dev/null; return; }
  for ((i = 0; i < limit * 10; i++)); do
    running "$pid" || break
    sleep 0.1
  done
  ours "$pid" && kill -KILL "$pid" 2>/dev/null
  { wait "$pid"; } 2>/dev/null
}

# SIGKILL, reaped at once (so bash has nothing to report of it later).
kill_pid() {
  ours "$1" || return 0
  kill -KILL "$1" 2>/dev/null
  { wait "$1"; } 2>/dev/null
}

stop_pid() {
  ours "$1" && kill -TERM "$1" 2>/dev/null
  wait_pid "$1" "${2:-10}"
}

run_cmocka() {
  local name=$1 limit=$2 bin=$3 out rc t why
  if [ ! -x "$bin" ]; then
    fail "$name" "$bin is not built"
    return
  fi
  # Line-buffered, so the messages a test prints stay next to its result.
  out=$(timeout -k 5 "$limit" stdbuf -oL -eL "$bin" 2>&1)
  rc=$?
  while read -r t; do ok "$name/$t"; done < <(sed -n 's/^\[       OK \] //p' <<<"$out")
  while read -r t; do
    why=$(sed -n "/^\[ RUN      \] $t\$/,/^\[  SKIPPED \] $t\$/s/^skipped: //p" <<<"$out" | head -1)
    skip "$name/$t" "${why:-the test gave no reason}"
  done < <(grep -E '^\[  SKIPPED \] [a-z_0-9]+$' <<<"$out" | sed 's/^\[  SKIPPED \] //' | sort -u)
  # A failed test ends in FAILED; one whose setup or teardown failed, in ERROR.
  while read -r t; do
    why=$(sed -nE "/^\[ RUN      \] $t\$/,/^\[  (FAILED  |ERROR   )\] $t\$/p" <<<"$out" | grep -m1 -E 'ERROR|[Ee]rror|fail' | tr -s ' ')
    fail "$name/$t" "${why:-failed}"
  done < <(sed -nE 's/^\[  (FAILED  |ERROR   )\] ([a-z_0-9]+)$/\2/p' <<<"$out" | sort -u)
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    fail "$name" "timed out after ${limit}s" "$(tail -n 5 <<<"$out")"
  elif [ "$rc" -ne 0 ] && ! grep -qE '^\[  (FAILED  |ERROR   )\] [a-z_0-9]*$' <<<"$out"; then
    fail "$name" "exit status $rc with no failed test" "$(tail -n 5 <<<"$out")"
  elif ! grep -q '^\[==========\] [0-9]* test(s) run\.' <<<"$out"; then
    fail "$name" "cmocka never finished its run" "$(tail -n 5 <<<"$out")"
  fi
}

finish() {
  echo "${TESTLIB_SUITE:-suite}: $TESTLIB_PASSED passed, $TESTLIB_SKIPPED skipped, $TESTLIB_FAILED failed"
  [ "$TESTLIB_FAILED" -eq 0 ]
}

need() {
  local f missing=()
  for f in "$@"; do [ -e "$f" ] || missing+=("$f"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  fail "prerequisites" "not built: ${missing[*]} (make test builds them)"
  finish
  exit 1
}

make_tmpdir() {
  local d
  d=$(mktemp -d "/tmp/$2.XXXXXX") || exit 1
  TESTLIB_DIRS+=("$d")
  printf -v "$1" '%s' "$d"
}

track_pid() { TESTLIB_PIDS+=("$@"); }
track_shm() { TESTLIB_SHMS+=("$@"); }
at_exit() { TESTLIB_AT_EXIT+=("$1"); }

add_user() {
  local u=$1
  shift
  if id "$u" >/dev/null 2>&1; then userdel "$u" 2>/dev/null; groupdel "$u" 2>/dev/null; fi
  useradd --system --no-create-home --shell /usr/sbin/nologin "$@" "$u" && TESTLIB_USERS+=("$u")
}

need_group() {
  getent group "$1" >/dev/null && return 0
  groupadd --system "$1" && TESTLIB_GROUPS+=("$1")
}

testlib_cleanup() {
  local f p s u g d i alive
  for f in "${TESTLIB_AT_EXIT[@]}"; do "$f"; done
  local mine=()
  for p in "${TESTLIB_PIDS[@]}"; do ours "$p" && mine+=("$p"); done
  for p in "${mine[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for ((i = 0; i < 50; i++)); do
    alive=0
    for p in "${mine[@]}"; do running "$p" && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${mine[@]}"; do ours "$p" && kill -KILL "$p" 2>/dev/null; done
  # A test user's processes (a hostile client's children) are the test's:
  # userdel refuses a user who still runs one.
  for u in "${TESTLIB_USERS[@]}"; do
    pkill -KILL -u "$u" 2>/dev/null
    for ((i = 0; i < 50; i++)); do pgrep -u "$u" >/dev/null 2>&1 || break; sleep 0.1; done
    userdel "$u" 2>/dev/null || echo "cleanup: could not remove test user $u: $(userdel "$u" 2>&1)" >&2
    groupdel "$u" 2>/dev/null
  done
  for g in "${TESTLIB_GROUPS[@]}"; do groupdel "$g" 2>/dev/null; done
  for s in "${TESTLIB_SHMS[@]}"; do rm -f "/dev/shm/${s#/}" "/dev/shm/${s#/}.lock"; done
  for d in "${TESTLIB_DIRS[@]}"; do rm -rf "$d"; done
}

testlib_begin() {
  TESTLIB_SUITE=$1
  REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if [ ! -d "${2:-}" ]; then
    fail "$TESTLIB_SUITE" "build directory '${2:-}' missing (make test builds it)"
    finish
    exit 1
  fi
  BUILD=$(cd "$2" && pwd)
  trap testlib_cleanup EXIT
  trap 'exit 130' INT TERM
}
