#!/usr/bin/env bash
# Control protocol, authorization and hakmemctl, against live daemons:
#   1. unit tests (framing, JSON writer, symbolizer)
#   2. protocol tests on the real control server over a test-only fake core
#      (every command with rich data, --json parsed back, oversized frames,
#      garbage, silent and half-sent clients, the connection cap)
#   3. authorization with real uids on the real hakmemd run as its own user
#      (test users and, if missing, the group hakmem are created and removed)
#   4. end to end on the real hakmemd with real client processes
#      (libhakmem.so): every command, metrics through promtool and the
#      --metrics-file, pin/unpin/reset, export on one daemon and import into
#      a fresh one with the same thresholds published, a daemon not running.
# usage (from the repo root): bash tests/ctl/suite.sh BUILD
set -u

BUILD=${1:-build}
if [ ! -d "$BUILD" ]; then
  echo "FAIL - ctl: build directory $BUILD missing"
  exit 1
fi
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")" && pwd)
JC="python3 $SRC/jcheck.py"
# A short path: core_api.h carries at most 63 bytes of a module path, and
# other users must be able to reach the binaries and sockets.
T=$(mktemp -d /tmp/hkctl.XXXXXX)
chmod 755 "$T"
mkdir -p "$T/bin"
PIDS=()
USERS_MADE=()
GROUP_MADE=0
SHMS=()
fails=0
passes=0

cleanup() {
  local p u s
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  for u in "${USERS_MADE[@]}"; do userdel "$u" 2>/dev/null; groupdel "$u" 2>/dev/null; done
  [ "$GROUP_MADE" = 1 ] && groupdel hakmem 2>/dev/null
  for s in "${SHMS[@]}"; do rm -f "/dev/shm$s"; done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { echo "ok - $1"; passes=$((passes + 1)); }
bad() { echo "FAIL - $1: $2"; fails=$((fails + 1)); }
# check NAME COMMAND...: ok when the command succeeds, else FAIL with its output.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$(echo "$out" | tail -3 | tr '\n' ' ')"; fi
}
# expect_rc NAME RC PATTERN COMMAND...: the command exits RC, prints exactly
# one line on stderr, and that line matches PATTERN (grep -E).
expect_rc() {
  local name=$1 want=$2 pat=$3 rc
  shift 3
  "$@" >"$T/out" 2>"$T/err"
  rc=$?
  if [ "$rc" != "$want" ]; then
    bad "$name" "exit $rc, expected $want; stderr: $(head -c 300 "$T/err")"
  elif [ "$(wc -l <"$T/err")" != 1 ]; then
    bad "$name" "expected one line on stderr, got: $(head -c 300 "$T/err")"
  elif ! grep -Eq -- "$pat" "$T/err"; then
    bad "$name" "stderr does not match /$pat/: $(cat "$T/err")"
  else
    ok "$name"
  fi
}
wait_for() {  # wait_for SECONDS COMMAND...: polls until the command succeeds
  local n=$(($1 * 10))
  shift
  while [ "$n" -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; n=$((n - 1)); done
  return 1
}

for b in hakmemctl hakmemd tests/ctl/fake_hakmemd tests/ctl/ctl_probe tests/ctl/alloc_sites tests/ctl/test_ctl_unit; do
  if [ ! -x "$BUILD/$b" ]; then
    bad "ctl binaries" "$BUILD/$b missing (make all first)"
    echo "$passes passed, $fails failed"
    exit 1
  fi
  cp "$BUILD/$b" "$T/bin/"
done
chmod 755 "$T/bin"/*
# The metrics checks use a real parser of the exposition format.
command -v promtool >/dev/null || bad "promtool available" "install Debian's package prometheus (scripts/deps.sh)"
CTL=$T/bin/hakmemctl
PROBE=$T/bin/ctl_probe

# ---------------------------------------------------------------- 1. unit
check "unit: framing, JSON writer, symbolizer (cmocka)" "$T/bin/test_ctl_unit"

# ---------------------------------------------------------------- 2. fake core
F=$T/f
mkdir -p "$F"
HAKMEMD_CTL_TIMEOUT_MS=1000 HAKMEMD_LOG=stderr "$T/bin/fake_hakmemd" "$F/ctl.sock" "$F/metrics.prom" 2>"$F/log" &
FAKE=$!
PIDS+=("$FAKE")
if ! wait_for 10 "$CTL" --socket "$F/ctl.sock" status; then
  bad "fake daemon starts" "$(cat "$F/log")"
else
  C() { "$CTL" --socket "$F/ctl.sock" "$@"; }
  check "status --json parses, names version and protocol" \
    bash -c "'$CTL' --socket '$F/ctl.sock' --json status | $JC 'j[\"version\"]==\"0.1.0-fake\" and j[\"protocol_version\"]==1 and j[\"sites\"]==3 and j[\"segment\"]==\"/fake\"'"
  check "status human" bash -c "'$CTL' --socket '$F/ctl.sock' status | grep -q '^segment *\\/fake'"
  check "procs --json lists the processes" \
    bash -c "'$CTL' --socket '$F/ctl.sock' procs --json | $JC 'len(j)==2 and j[0][\"pid\"]==$FAKE and j[0][\"page_faults\"]==1026 and j[1][\"exe\"]==\"/usr/bin/other \\\"quoted\\\"\"'"
  check "procs human" bash -c "'$CTL' --socket '$F/ctl.sock' procs | grep -q '^$FAKE .*fake_hakmemd'"
  C --json sites >"$F/sites.json"
  check "sites --json: three sites by bytes, symbolized, with arms" \
    $JC '[s["function"] for s in j["sites"]]==["fake_site_vm+0x4","fake_site_mir+0x4","fake_site_json+0x4"] and j["total"]==3 and all(len(s["arms"])==3 and s["arms"][2]["name"]=="large=1M,slots=0,thp=off" for s in j["sites"]) and j["sites"][0]["bigcache"]["hit_rate"]==0.9 and j["sites"][0]["sizes"]["p50_bucket"]==2097152 and j["sites"][0]["exe"]=="fake_hakmemd"' <"$F/sites.json"
  check "sites human shows function, hit rate and arms" \
    bash -c "'$CTL' --socket '$F/ctl.sock' sites | grep -q 'fake_site_vm+0x4' && '$CTL' --socket '$F/ctl.sock' sites | grep -q 'bigcache hit 90.0%' && '$CTL' --socket '$F/ctl.sock' sites | grep -q 'large=256K,slots=4,thp=off'"
  check "sites --top 1" bash -c "'$CTL' --socket '$F/ctl.sock' sites --top 1 --json | $JC 'len(j[\"sites\"])==1 and j[\"total\"]==3'"
  check "sites --exe NAME filters by module" bash -c "'$CTL' --socket '$F/ctl.sock' sites --exe fake_hakmemd --json | $JC 'len(j[\"sites\"])==3' && '$CTL' --socket '$F/ctl.sock' sites --exe nosuch --json | $JC 'len(j[\"sites\"])==0'"
  check "sites --pid P filters by the process's executable" bash -c "'$CTL' --socket '$F/ctl.sock' --json sites --pid $FAKE | $JC 'len(j[\"sites\"])==3'"
  expect_rc "sites --pid of no attached process: exit 1" 1 "not found" C sites --pid 999999
  check "thresholds --json" bash -c "'$CTL' --socket '$F/ctl.sock' thresholds --json | $JC 'all(s[\"thresholds\"][\"large_threshold\"] in (262144,1048576) for s in j[\"sites\"]) and all(\"arms\" not in s for s in j[\"sites\"])'"
  check "thresholds human" bash -c "'$CTL' --socket '$F/ctl.sock' thresholds | grep -q 'fake_site_json+0x4 .* 256K'"

  KEY=$($JC 'j["sites"][2]["site"]' --print <"$F/sites.json")
  check "pin by arm name" C pin "$KEY" "large=1M,slots=0,thp=off"
  check "pinned arm and its thresholds are published" \
    bash -c "'$CTL' --socket '$F/ctl.sock' --json thresholds | $JC '[ (s[\"pinned_arm\"], s[\"thresholds\"][\"large_threshold\"], s[\"thresholds\"][\"bigcache_slots\"]) for s in j[\"sites\"] if s[\"site\"]==\"$KEY\"]==[(2,1048576,0)]'"
  check "pin by index" bash -c "'$CTL' --socket '$F/ctl.sock' pin '$KEY' 1 && '$CTL' --socket '$F/ctl.sock' --json sites | $JC '[s[\"pinned_arm\"] for s in j[\"sites\"] if s[\"site\"]==\"$KEY\"]==[1]'"
  expect_rc "pin to an arm that does not exist: exit 1" 1 "invalid argument" C pin "$KEY" 7
  expect_rc "pin an unknown arm name: exit 1" 1 "no arm named" C pin "$KEY" nosucharm
  expect_rc "pin an unknown site: exit 1" 1 "not found" C pin 1234:5 0
  check "unpin" bash -c "'$CTL' --socket '$F/ctl.sock' unpin '$KEY' && '$CTL' --socket '$F/ctl.sock' --json sites | $JC '[s[\"pinned_arm\"] for s in j[\"sites\"] if s[\"site\"]==\"$KEY\"]==[-1]'"
  C pin "$KEY" 2 >/dev/null
  check "reset --site forgets the site (pin released)" bash -c "'$CTL' --socket '$F/ctl.sock' reset --site '$KEY' && '$CTL' --socket '$F/ctl.sock' --json sites | $JC '[s[\"pinned_arm\"] for s in j[\"sites\"] if s[\"site\"]==\"$KEY\"]==[-1]'"
  expect_rc "reset an unknown site: exit 1" 1 "not found" C reset --site 1:2
  C pin "$KEY" 2 >/dev/null
  check "reset (all)" bash -c "'$CTL' --socket '$F/ctl.sock' reset && '$CTL' --socket '$F/ctl.sock' --json sites | $JC 'all(s[\"pinned_arm\"]==-1 for s in j[\"sites\"])'"
  check "export FILE" bash -c "'$CTL' --socket '$F/ctl.sock' export '$F/pol.bin' && head -c 8 '$F/pol.bin' | grep -q FAKEPOL1"
  check "import FILE" bash -c "'$CTL' --socket '$F/ctl.sock' import '$F/pol.bin' | grep -q 'imported the policy of 3 sites'"
  printf 'not a policy' >"$F/bad.bin"
  expect_rc "import of a file that is no policy: exit 1" 1 "invalid argument" C import "$F/bad.bin"
  expect_rc "import of a missing file: exit 1" 1 "cannot read" C import "$F/missing.bin"
  C metrics >"$F/metrics.txt"
  check "metrics accepted by promtool check metrics" promtool check metrics <"$F/metrics.txt"
  check "metrics name sites by exe and key" grep -q "^hakmem_site_alloc_bytes_total{exe=\"fake_hakmemd\",site=\"$KEY\",domain=\"0\"} [0-9]" "$F/metrics.txt"
  check "metrics say whether each site has settled and whether it is thin" bash -c "grep -q '^hakmem_site_settled{exe=\"fake_hakmemd\",site=\"$KEY\",domain=\"0\"} [01]\$' '$F/metrics.txt' && grep -q '^hakmem_site_thin{exe=\"fake_hakmemd\",site=\"$KEY\",domain=\"0\"} [01]\$' '$F/metrics.txt' && grep -q '^hakmem_site_pinned_arm{exe=\"fake_hakmemd\",site=\"$KEY\",domain=\"0\"} -\?[0-9]\$' '$F/metrics.txt'"
  check "metrics escape label values" grep -q 'hakmem_process_sites{exe="other \\"quoted\\"",pid=' "$F/metrics.txt"
  check "metrics file written by the server side, accepted by promtool" promtool check metrics <"$F/metrics.prom"
  check "metrics --json" bash -c "'$CTL' --socket '$F/ctl.sock' --json metrics | $JC 'j[\"text\"].startswith(\"# HELP hakmem_build_info\")'"
  check "watch --count 2 (human)" bash -c "'$CTL' --socket '$F/ctl.sock' watch --count 2 --interval 200 > '$F/watch.txt' && [ \$(grep -c '^hakmemd 0.1.0-fake' '$F/watch.txt') = 2 ] && grep -q 'fake_site_vm' '$F/watch.txt'"
  check "watch --json: one document per refresh" bash -c "'$CTL' --socket '$F/ctl.sock' --json watch --count 3 --interval 100 | $JC --lines '[d[\"round\"] for d in j]==[0,1,2] and all(len(d[\"sites\"])==3 for d in j)'"

  expect_rc "no command: exit 2" 2 "no command" "$CTL" --socket "$F/ctl.sock"
  expect_rc "unknown command: exit 2" 2 "unknown command" C frobnicate
  expect_rc "bad option value: exit 2" 2 "--top needs a number" C sites --top many
  expect_rc "bad site key: exit 2" 2 "not a site key" C pin nokey 1
  expect_rc "extra argument: exit 2" 2 "takes no arguments" C status extra
  check "--help exits 0" bash -c "'$CTL' --help | grep -q '^usage: hakmemctl'"

  check "frame over the maximum: TOO_LARGE reply" bash -c "'$PROBE' '$F/ctl.sock' toolarge | grep -q '^error 3 frame of 4194305 bytes exceeds'"
  check "garbage payload: BAD_REQUEST reply" bash -c "'$PROBE' '$F/ctl.sock' garbage | grep -q '^error 1 '"
  check "raw garbage bytes (HTTP): answered, not fatal" bash -c "'$PROBE' '$F/ctl.sock' http | grep -q '^error 3 '"
  check "unknown protocol version: UNSUPPORTED_VERSION reply" bash -c "'$PROBE' '$F/ctl.sock' version | grep -q '^error 2 '"
  check "request with no command: BAD_REQUEST reply" bash -c "'$PROBE' '$F/ctl.sock' nocommand | grep -q '^error 1 '"
  check "several requests on one connection" bash -c "[ \$('$PROBE' '$F/ctl.sock' multi | grep -c '^ok 10') = 3 ]"
  check "daemon survives bad input and logs it" bash -c "C() { :; }; '$CTL' --socket '$F/ctl.sock' status >/dev/null && grep -q 'not a request' '$F/log' && grep -q 'exceeds\\|byte frame' '$F/log'"

  # A client that connects and never sends: others are served meanwhile,
  # and the daemon closes it after its per-connection timeout (1 s here).
  "$PROBE" "$F/ctl.sock" silent 20000 >"$F/silent.out" &
  SP=$!
  "$PROBE" "$F/ctl.sock" partial 20000 >"$F/partial.out" &
  PP=$!
  sleep 0.2
  check "others are served while a client stays silent" C status
  wait "$SP" "$PP"
  check "a silent client is disconnected by the timeout" grep -qx closed "$F/silent.out"
  check "a half-sent frame is disconnected by the timeout" grep -qx closed "$F/partial.out"

  # Fill every connection slot: the next client gets a BUSY answer (not a
  # hang); once the timeout frees them, service resumes.
  "$PROBE" "$F/ctl.sock" hold 64 >"$F/hold.out" &
  HP=$!
  PIDS+=("$HP")
  if wait_for 10 grep -q 'held 64' "$F/hold.out"; then
    sleep 0.1
    expect_rc "connection cap: the 65th client is told busy" 1 "busy" C status
    check "service resumes after idle connections time out" wait_for 15 "$CTL" --socket "$F/ctl.sock" status
  else
    bad "connection cap" "could not open 64 connections"
  fi
  kill "$HP" 2>/dev/null
  wait "$HP" 2>/dev/null

  kill -TERM "$FAKE"
  wait "$FAKE"
  check "fake daemon stops cleanly and removes its socket" test ! -e "$F/ctl.sock"
fi

# Not running: no socket at all, and a socket nobody listens on.
expect_rc "daemon not running: exit 3" 3 "not reachable" "$CTL" --socket "$T/none.sock" status
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$T/stale.sock"
expect_rc "stale socket (nobody listening): exit 3" 3 "not reachable.*refused" "$CTL" --socket "$T/stale.sock" status
expect_rc "HAKMEM_SOCKET is honoured" 3 "$T/none2.sock" env HAKMEM_SOCKET="$T/none2.sock" "$CTL" status

# ---------------------------------------------------------------- 3. authorization
# The daemon runs as its own user (hkctl-d, primary group hakmem), as under
# systemd; hkctl-m is a member of hakmem; hkctl-o is not.
if ! getent group hakmem >/dev/null; then
  groupadd --system hakmem && GROUP_MADE=1
fi
for u in hkctl-d hkctl-m hkctl-o; do
  if id "$u" >/dev/null 2>&1; then userdel "$u" 2>/dev/null; groupdel "$u" 2>/dev/null; fi
done
useradd --system --no-create-home --shell /usr/sbin/nologin -g hakmem hkctl-d && USERS_MADE+=(hkctl-d)
useradd --system --no-create-home --shell /usr/sbin/nologin -U -G hakmem hkctl-m && USERS_MADE+=(hkctl-m)
useradd --system --no-create-home --shell /usr/sbin/nologin -U hkctl-o && USERS_MADE+=(hkctl-o)
as() { local u=$1; shift; setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups "$@"; }
A=$T/auth
mkdir -p "$A/state"
chown -R hkctl-d:hakmem "$A"
chmod 755 "$A"
SHM_AUTH=/hkctl-auth-$$
SHMS+=("$SHM_AUTH")
# setpriv directly (not through a function), so $! is the daemon itself.
setpriv --reuid=hkctl-d --regid="$(id -g hkctl-d)" --init-groups env HAKMEMD_LOG=stderr "$T/bin/hakmemd" --foreground --shm "$SHM_AUTH" --socket "$A/ctl.sock" \
  --state-dir "$A/state" --interval 200 2>"$T/auth.log" &
AUTHD=$!
PIDS+=("$AUTHD")
if ! wait_for 10 test -S "$A/ctl.sock"; then
  bad "daemon as its own user starts" "$(cat "$T/auth.log")"
else
  UM=$(id -u hkctl-m)
  UO=$(id -u hkctl-o)
  AC() { "$CTL" --socket "$A/ctl.sock" "$@"; }
  check "socket is mode 0660, group hakmem" bash -c "[ \"\$(stat -c '%a %G' '$A/ctl.sock')\" = '660 hakmem' ]"
  check "root may read" AC status
  check "root may change (reset)" AC reset
  check "the daemon's user may read" as hkctl-d "$CTL" --socket "$A/ctl.sock" status
  check "the daemon's user may change (reset)" as hkctl-d "$CTL" --socket "$A/ctl.sock" reset
  for c in status procs sites thresholds metrics; do
    check "group member may read: $c" as hkctl-m "$CTL" --socket "$A/ctl.sock" $c
  done
  check "group member may export" bash -c "setpriv --reuid=hkctl-m --regid=\$(id -g hkctl-m) --init-groups '$CTL' --socket '$A/ctl.sock' export - > '$T/auth-pol.bin' && [ -s '$T/auth-pol.bin' ]"
  expect_rc "group member may not reset: refused, exit 1" 1 "permission denied: reset changes the daemon" as hkctl-m "$CTL" --socket "$A/ctl.sock" reset
  expect_rc "group member may not reset a site" 1 "permission denied" as hkctl-m "$CTL" --socket "$A/ctl.sock" reset --site 1:2
  expect_rc "group member may not import" 1 "permission denied: import" as hkctl-m "$CTL" --socket "$A/ctl.sock" import "$T/auth-pol.bin"
  expect_rc "group member may not pin" 1 "permission denied: pin" as hkctl-m "$CTL" --socket "$A/ctl.sock" pin 1:2 0
  expect_rc "group member may not unpin" 1 "permission denied" as hkctl-m "$CTL" --socket "$A/ctl.sock" unpin 1:2
  expect_rc "outsider is shut out by the socket's mode: exit 1" 1 "permission denied on .*join group hakmem" as hkctl-o "$CTL" --socket "$A/ctl.sock" status
  # Even with the socket opened to everyone, SO_PEERCRED still refuses.
  chmod 666 "$A/ctl.sock"
  expect_rc "outsider refused by SO_PEERCRED even on an open socket" 1 "permission denied: status: only root" as hkctl-o "$CTL" --socket "$A/ctl.sock" status
  expect_rc "outsider may not change either" 1 "permission denied" as hkctl-o "$CTL" --socket "$A/ctl.sock" reset
  chmod 660 "$A/ctl.sock"
  check "refusals are logged with the uid" bash -c "grep -q 'refused reset from uid $UM ' '$T/auth.log' && grep -q 'refused import from uid $UM ' '$T/auth.log' && grep -q 'refused status from uid $UO ' '$T/auth.log'"
  check "changes are logged with the uid" grep -q "learned policy reset by uid $(id -u hkctl-d)" "$T/auth.log"
fi
kill -TERM "$AUTHD" 2>/dev/null
wait "$AUTHD" 2>/dev/null

# ---------------------------------------------------------------- 4. end to end
LIB=$BUILD/libhakmem.so
E=$T/e2e
mkdir -p "$E/a" "$E/b"
SHM_A=/hkctl-a-$$
SHM_B=/hkctl-b-$$
SHMS+=("$SHM_A" "$SHM_B")
HAKMEMD_LOG=stderr "$T/bin/hakmemd" --foreground --shm "$SHM_A" --socket "$E/a/ctl.sock" --state-dir "$E/a/state" \
  --interval 100 --metrics-file "$E/a/hakmem.prom" 2>"$E/a/log" &
DA=$!
PIDS+=("$DA")
EA() { "$CTL" --socket "$E/a/ctl.sock" "$@"; }
EB() { "$CTL" --socket "$E/b/ctl.sock" "$@"; }
if ! wait_for 10 EA status; then
  bad "hakmemd A starts" "$(cat "$E/a/log")"
elif [ ! -e "$LIB" ]; then
  bad "end to end" "$LIB missing: no client can report sites"
else
  # Two long-lived clients and one short one: whether the library flushes
  # its sites while running or only at exit, the daemon sees sites while
  # live processes are attached.
  CLIENTS=()
  for secs in 20 20 1; do
    HAKMEM_SHM=$SHM_A LD_PRELOAD=$LIB "$T/bin/alloc_sites" $secs >/dev/null 2>&1 &
    CLIENTS+=($!)
    PIDS+=($!)
  done
  CP=${CLIENTS[0]}
  if ! wait_for 15 bash -c "'$CTL' --socket '$E/a/ctl.sock' --json sites --exe alloc_sites | $JC 'len(j[\"sites\"])>=3'"; then
    bad "real clients' sites reach hakmemd" "after 15 s: $(EA --json status 2>&1) $(EA --json procs 2>&1 | head -c 300)"
  else
    ok "real clients' sites reach hakmemd"
    check "status --json (real)" bash -c "'$CTL' --socket '$E/a/ctl.sock' --json status | $JC 'j[\"segment\"]==\"$SHM_A\" and j[\"processes\"]>=1 and j[\"sites\"]>=3 and j[\"interval_ms\"]==100 and j[\"learning\"]'"
    check "procs --json (real) lists a client" bash -c "'$CTL' --socket '$E/a/ctl.sock' --json procs | $JC 'any(p[\"pid\"]==$CP and \"alloc_sites\" in p[\"exe\"] for p in j)'"
    check "procs human (real)" bash -c "'$CTL' --socket '$E/a/ctl.sock' procs | grep -q '^$CP '"
    EA --json sites --exe alloc_sites >"$E/sites.json"
    check "sites --json (real): the three call sites, symbolized" \
      $JC '{f["function"].split("+")[0] for f in j["sites"] if f["function"]} >= {"site_json","site_mir","site_vm"}' <"$E/sites.json"
    check "sites --pid (real)" bash -c "'$CTL' --socket '$E/a/ctl.sock' --json sites --pid $CP | $JC 'len(j[\"sites\"])>=3'"
    check "sites human (real)" bash -c "'$CTL' --socket '$E/a/ctl.sock' sites --exe alloc_sites | grep -q 'site_vm'"
    check "thresholds (real)" bash -c "'$CTL' --socket '$E/a/ctl.sock' --json thresholds | $JC 'all(s[\"thresholds\"][\"large_threshold\"]>0 for s in j[\"sites\"])'"
    EA metrics >"$E/metrics.txt"
    check "metrics (real) accepted by promtool" promtool check metrics <"$E/metrics.txt"
    check "metrics (real) carry per-site bytes" grep -q '^hakmem_site_alloc_bytes_total{exe="alloc_sites",site="[0-9a-f]*:[0-9a-f]*",domain="[0-9]*"} [1-9]' "$E/metrics.txt"
    check "--metrics-file (real) accepted by promtool" promtool check metrics <"$E/a/hakmem.prom"
    check "--metrics-file carries the sites" grep -q '^hakmem_site_alloc_bytes_total{exe="alloc_sites"' "$E/a/hakmem.prom"
    VM=$($JC '[s["site"] for s in j["sites"] if (s["function"] or "").startswith("site_vm")][0]' --print <"$E/sites.json")
    NARMS=$($JC '[len(s["arms"]) for s in j["sites"] if s["site"]=="'"$VM"'"][0]' --print <"$E/sites.json")
    if [ "${NARMS:-0}" -gt 0 ] 2>/dev/null; then
      check "pin (real)" bash -c "'$CTL' --socket '$E/a/ctl.sock' pin '$VM' 0 && '$CTL' --socket '$E/a/ctl.sock' --json sites --top 0 | $JC '[s[\"pinned_arm\"] for s in j[\"sites\"] if s[\"site\"]==\"$VM\"]==[0]'"
      check "unpin (real)" bash -c "'$CTL' --socket '$E/a/ctl.sock' unpin '$VM' && '$CTL' --socket '$E/a/ctl.sock' --json sites --top 0 | $JC '[s[\"pinned_arm\"] for s in j[\"sites\"] if s[\"site\"]==\"$VM\"]==[-1]'"
      expect_rc "pin (real) to an arm out of range: exit 1" 1 "invalid argument|not found" EA pin "$VM" 99
    else
      bad "pin (real)" "site $VM has no arms in hakmemd's answer"
    fi
    check "watch (real)" bash -c "'$CTL' --socket '$E/a/ctl.sock' watch --count 2 --interval 150 | grep -q site_vm"
    check "reset --site (real)" EA reset --site "$VM"
    expect_rc "reset of an unknown site (real): exit 1" 1 "not found" EA reset --site 123:456

    # Export on A, import into a fresh B: B publishes the same thresholds.
    for c in "${CLIENTS[@]}"; do kill -TERM "$c" 2>/dev/null; wait "$c" 2>/dev/null; done
    same=0
    for _ in 1 2 3 4 5; do
      EA --json thresholds --top 0 >"$E/ta1.json"
      EA export "$E/policy.bin" >/dev/null
      EA --json thresholds --top 0 >"$E/ta2.json"
      if cmp -s "$E/ta1.json" "$E/ta2.json"; then same=1; break; fi
      sleep 0.3
    done
    check "export (real) writes a policy" test -s "$E/policy.bin"
    [ "$same" = 1 ] || bad "export snapshot" "A's thresholds kept changing around the export"
    HAKMEMD_LOG=stderr "$T/bin/hakmemd" --foreground --shm "$SHM_B" --socket "$E/b/ctl.sock" --state-dir "$E/b/state" \
      --interval 100 2>"$E/b/log" &
    DB=$!
    PIDS+=("$DB")
    if ! wait_for 10 EB status; then
      bad "hakmemd B starts" "$(cat "$E/b/log")"
    else
      check "B starts cold (no sites)" bash -c "'$CTL' --socket '$E/b/ctl.sock' --json thresholds --top 0 | $JC 'len(j[\"sites\"])==0'"
      check "import (real) into B" bash -c "'$CTL' --socket '$E/b/ctl.sock' import '$E/policy.bin' | grep -Eq 'imported the policy of [1-9][0-9]* sites'"
      cat >"$E/cmp.py" <<'EOF'
import json, sys
a = {s["site"]: s["thresholds"] for s in json.load(open(sys.argv[1]))["sites"]}
b = {s["site"]: s["thresholds"] for s in json.load(open(sys.argv[2]))["sites"]}
missing = [k for k in a if k not in b]
diff = [k for k in a if k in b and a[k] != b[k]]
if missing or diff or not a:
    print("missing", missing, "different", [(k, a[k], b.get(k)) for k in diff])
    sys.exit(1)
EOF
      if wait_for 10 bash -c "'$CTL' --socket '$E/b/ctl.sock' --json thresholds --top 0 > '$E/tb.json' && python3 '$E/cmp.py' '$E/ta1.json' '$E/tb.json'"; then
        ok "B publishes the thresholds learned on A"
      else
        bad "B publishes the thresholds learned on A" "$(python3 "$E/cmp.py" "$E/ta1.json" "$E/tb.json" 2>&1 | head -c 400)"
      fi
      B_EXPORT_OK=0
      EB export "$E/policy-b.bin" >/dev/null && B_EXPORT_OK=1
      [ "$B_EXPORT_OK" = 1 ] && ok "B exports again after import" || bad "B exports again after import" "export failed"
    fi
  fi
  check "reset (real, all)" EA reset
fi
kill -TERM "$DA" 2>/dev/null
wait "$DA" 2>/dev/null
expect_rc "after hakmemd stops: exit 3" 3 "not reachable" EA status

echo "ctl: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
