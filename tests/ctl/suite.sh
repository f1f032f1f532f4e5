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
source "$(dirname "$0")/../lib.sh"
testlib_begin ctl "${1:-build}"
SRC=$REPO/tests/ctl
JC="python3 $SRC/jcheck.py"
for b in hakmemctl hakmemd tests/ctl/fake_hakmemd tests/ctl/ctl_probe tests/ctl/alloc_sites tests/ctl/test_ctl_unit; do
  need "$BUILD/$b"
done
# The metrics checks use a real parser of the exposition format.
command -v promtool >/dev/null || { fail "prerequisites" "promtool is not installed (make deps installs prometheus)"; finish; exit 1; }
# A short path: core_api.h carries at most 63 bytes of a module path, and
# other users must be able to reach the binaries and sockets.
make_tmpdir T hkctl
chmod 755 "$T"
mkdir -p "$T/bin"
for b in hakmemctl hakmemd tests/ctl/fake_hakmemd tests/ctl/ctl_probe tests/ctl/alloc_sites tests/ctl/test_ctl_unit; do
  cp "$BUILD/$b" "$T/bin/"
done
chmod 755 "$T/bin"/*
CTL=$T/bin/hakmemctl
PROBE=$T/bin/ctl_probe
PROMTOOL=$(command -v promtool)
promtool() { timeout 120 "$PROMTOOL" "$@"; }
MERGE_PIDS=()

# expect_rc NAME RC PATTERN COMMAND...: the command exits RC, prints exactly
# one line on stderr, and that line matches PATTERN (grep -E).
expect_rc() {
  local name=$1 want=$2 pat=$3 rc
  shift 3
  "$@" >"$T/out" 2>"$T/err"
  rc=$?
  if [ "$rc" != "$want" ]; then
    fail "$name" "exit $rc, expected $want; stderr: $(head -c 300 "$T/err")"
  elif [ "$(wc -l <"$T/err")" != 1 ]; then
    fail "$name" "expected one line on stderr, got: $(head -c 300 "$T/err")"
  elif ! grep -Eq -- "$pat" "$T/err"; then
    fail "$name" "stderr does not match /$pat/: $(cat "$T/err")"
  else
    ok "$name"
  fi
}

# ---------------------------------------------------------------- 1. unit
run_cmocka "unit: framing, JSON writer, symbolizer" 120 "$T/bin/test_ctl_unit"

# ---------------------------------------------------------------- 2. fake core
F=$T/f
mkdir -p "$F"
HAKMEMD_CTL_TIMEOUT_MS=1000 HAKMEMD_LOG=stderr "$T/bin/fake_hakmemd" "$F/ctl.sock" "$F/metrics.prom" 2>"$F/log" &
FAKE=$!
track_pid "$FAKE"
if ! wait_for 10 "$CTL" --socket "$F/ctl.sock" status; then
  fail "fake daemon starts" "$(cat "$F/log")"
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

  # Binaries: the fake core feeds the real per-binary box runs of two
  # binaries, one of whose "compact" arm is 30% cheaper.
  C --json binaries >"$F/bin.json"
  check "binaries --json: two, the cheaper arm chosen, the price named" \
    $JC 'len(j["binaries"])==2 and j["memory_weight_ns"]>0 and j["binaries"][0]["choice"]=="compact" and j["binaries"][0]["settled"] and abs(j["binaries"][0]["arms"][4]["cost_ratio"]-0.7)<0.02 and j["binaries"][1]["choice"]=="default" and j["binaries"][1]["domain"]==1000' <"$F/bin.json"
  # Nothing races here (the fake's first binary chose its cheapest arm, the
  # other's arms cost the same): each says so with a null, not an arm.
  check "binaries --json: no arm racing, as null" \
    $JC 'all("racing" in b and b["racing"] is None for b in j["binaries"])' <"$F/bin.json"
  # The arm published now may be a recheck's (one run in eight), whichever
  # the choice.
  check "binaries human: the arms, the choice, the odd name escaped" \
    bash -c "'$CTL' --socket '$F/ctl.sock' binaries | grep -q 'fake-server .* arm [a-z-]* (settled on compact)' && '$CTL' --socket '$F/ctl.sock' binaries | grep -qF 'o\\x0ad\"q' && ! '$CTL' --socket '$F/ctl.sock' binaries | LC_ALL=C grep -q \$'\\x1b'"
  check "binaries: the command of each, none as null and as -" bash -c "$JC 'j[\"binaries\"][0][\"command\"] is None and j[\"binaries\"][1][\"command\"]==\"worker\"' <'$F/bin.json' && '$CTL' --socket '$F/ctl.sock' binaries | grep -q 'fake-server  *-  *live' && '$CTL' --socket '$F/ctl.sock' binaries | grep -q ' worker  *live'"
  check "pin-binary --command: that command's arm" bash -c "'$CTL' --socket '$F/ctl.sock' pin-binary b1a0000000000001 --user 1000 --command worker compact | grep -q 'binary b1a0000000000001 (command worker) pinned to arm 4' && '$CTL' --socket '$F/ctl.sock' --json binaries | $JC 'j[\"binaries\"][1][\"pinned\"]==\"compact\"' && '$CTL' --socket '$F/ctl.sock' unpin-binary b1a0000000000001 --user 1000 --command worker >/dev/null"
  expect_rc "pin-binary --command of a command it has not run: exit 1" 1 "not found" C pin-binary b1a0000000000001 --user 1000 --command other lean
  expect_rc "pin-binary --command none of a binary whose runs all name one: exit 1" 1 "not found" C pin-binary b1a0000000000001 --user 1000 --command '' lean
  expect_rc "pin-binary --command that is no command (a path): exit 1" 1 "invalid argument" C pin-binary b1a0000000000001 --user 1000 --command a/b 0
  check "binaries --exe filters" bash -c "'$CTL' --socket '$F/ctl.sock' --json binaries --exe fake-server | $JC 'len(j[\"binaries\"])==1'"
  check "pin-binary by arm name" bash -c "'$CTL' --socket '$F/ctl.sock' pin-binary b1a0000000000000 lean && '$CTL' --socket '$F/ctl.sock' --json binaries | $JC 'j[\"binaries\"][0][\"pinned\"]==\"lean\" and j[\"binaries\"][0][\"arm\"]==\"lean\"'"
  check "unpin-binary: the choice runs again" bash -c "'$CTL' --socket '$F/ctl.sock' unpin-binary b1a0000000000000 && '$CTL' --socket '$F/ctl.sock' --json binaries | $JC 'j[\"binaries\"][0][\"pinned\"] is None and j[\"binaries\"][0][\"arm\"]==\"compact\"'"
  expect_rc "pin-binary of an unknown binary: exit 1" 1 "not found" C pin-binary 1234 0
  expect_rc "pin-binary to an arm that does not exist: exit 1" 1 "invalid argument" C pin-binary b1a0000000000000 9
  expect_rc "pin-binary of another user's binary needs --user" 1 "not found" C pin-binary b1a0000000000001 lean
  check "reset-binary of one binary" bash -c "'$CTL' --socket '$F/ctl.sock' reset-binary b1a0000000000001 --user 1000 | grep -q 'reset the learning of 1 binary'"
  check "unpin" bash -c "'$CTL' --socket '$F/ctl.sock' unpin '$KEY' && '$CTL' --socket '$F/ctl.sock' --json sites | $JC '[s[\"pinned_arm\"] for s in j[\"sites\"] if s[\"site\"]==\"$KEY\"]==[-1]'"
  check "sites --json and thresholds name each site's user (every fake site is root's)" \
    bash -c "$JC 'all(s[\"domain\"]==0 for s in j[\"sites\"])' <'$F/sites.json' && '$CTL' --socket '$F/ctl.sock' thresholds | grep -q '^SITE  *USER ' && '$CTL' --socket '$F/ctl.sock' thresholds | grep -q '^[0-9a-f]*:[0-9a-f]*  *root '"
  expect_rc "pin --user names that user's site: another user's is not found" 1 "not found" C pin --user 4242 "$KEY" 1
  check "pin --user root, unpin --user 0: root's site" bash -c "'$CTL' --socket '$F/ctl.sock' pin --user root '$KEY' 1 && '$CTL' --socket '$F/ctl.sock' --json sites | $JC '[s[\"pinned_arm\"] for s in j[\"sites\"] if s[\"site\"]==\"$KEY\"]==[1]' && '$CTL' --socket '$F/ctl.sock' unpin --user 0 '$KEY'"
  expect_rc "reset --site KEY --user of another user: not found" 1 "not found" C reset --site "$KEY" --user 4242
  expect_rc "reset --user without --site: exit 2" 2 "goes with --site" C reset --user root
  expect_rc "pin --user of no such user: exit 2" 2 "no user" C pin --user no-such-user-here "$KEY" 1
  check "status --json counts users and what the limits did" \
    bash -c "'$CTL' --socket '$F/ctl.sock' --json status | $JC 'j[\"domains\"]==1 and all(k in j for k in (\"sites_archived\",\"sites_refused\",\"sites_evicted\"))'"
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
  check "metrics: the binaries, their arms and the published one" bash -c "grep -q '^hakmem_binary_runs_total{exe=\"fake-server\",binary=\"b1a0000000000000\",command=\"\",domain=\"0\"} 24' '$F/metrics.txt' && grep -q '^hakmem_binary_arm_current{exe=\"fake-server\",binary=\"b1a0000000000000\",command=\"\",domain=\"0\",arm=\"compact\"} 1' '$F/metrics.txt' && grep -q '^hakmem_binary_runs_total{.*binary=\"b1a0000000000001\",command=\"worker\",domain=\"1000\"} [0-9]' '$F/metrics.txt' && grep -q '^hakmem_binary_arm_cost_ratio{.*arm=\"compact\"} 0.7' '$F/metrics.txt'"
  check "metrics name sites by exe and key" grep -q "^hakmem_site_alloc_bytes_total{exe=\"fake_hakmemd\",site=\"$KEY\",domain=\"0\"} [0-9]" "$F/metrics.txt"
  check "metrics say whether each site has settled and whether it is thin" bash -c "grep -q '^hakmem_site_settled{exe=\"fake_hakmemd\",site=\"$KEY\",domain=\"0\"} [01]\$' '$F/metrics.txt' && grep -q '^hakmem_site_thin{exe=\"fake_hakmemd\",site=\"$KEY\",domain=\"0\"} [01]\$' '$F/metrics.txt' && grep -q '^hakmem_site_pinned_arm{exe=\"fake_hakmemd\",site=\"$KEY\",domain=\"0\"} -\?[0-9]\$' '$F/metrics.txt'"
  check "metrics carry per-user families" bash -c "grep -q '^hakmem_domain_sites{domain=\"0\"} 3\$' '$F/metrics.txt' && grep -q '^hakmem_domain_sites_refused_total{domain=\"0\"} 0\$' '$F/metrics.txt' && grep -q '^hakmem_sites_archived 0\$' '$F/metrics.txt'"
  check "metrics escape label values" grep -q 'hakmem_process_sites{exe="other \\"quoted\\"",pid=' "$F/metrics.txt"
  check "metrics file written by the server side, accepted by promtool" promtool check metrics <"$F/metrics.prom"
  check "metrics --json" bash -c "'$CTL' --socket '$F/ctl.sock' --json metrics | $JC 'j[\"text\"].startswith(\"# HELP hakmem_build_info\")'"
  check "watch --count 2 (human)" bash -c "'$CTL' --socket '$F/ctl.sock' watch --count 2 --interval 200 > '$F/watch.txt' && [ \$(grep -c '^hakmemd 0.1.0-fake' '$F/watch.txt') = 2 ] && grep -q 'fake_site_vm' '$F/watch.txt'"
  check "watch --json: one document per refresh" bash -c "'$CTL' --socket '$F/ctl.sock' --json watch --count 3 --interval 100 | $JC --lines '[d[\"round\"] for d in j]==[0,1,2] and all(len(d[\"sites\"])==3 for d in j)'"

  check "fleet (human, --json): a daemon without a fleet learns alone" \
    bash -c "'$CTL' --socket '$F/ctl.sock' fleet | grep -qx 'no fleet: this host learns alone (hakmemd --fleet-endpoints joins one)' && '$CTL' --socket '$F/ctl.sock' --json fleet | $JC 'j == {\"configured\": False}'"

  expect_rc "no command: exit 2" 2 "no command" "$CTL" --socket "$F/ctl.sock"
  expect_rc "unknown command: exit 2" 2 "unknown command" C frobnicate
  expect_rc "bad option value: exit 2" 2 "--top needs a number" C sites --top many
  expect_rc "bad site key: exit 2" 2 "not a site key" C pin nokey 1
  expect_rc "extra argument: exit 2" 2 "takes no arguments" C status extra
  check "--help exits 0" bash -c "'$CTL' --help | grep -q '^usage: hakmemctl'"
  check "--help names --version, which prints the version" \
    bash -c "'$CTL' --help | grep -q -- '--version' && '$CTL' --version | grep -q '^hakmemctl [0-9][0-9.]* (control protocol [0-9]*)\$'"

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
  wait_pid "$SP" 30
  wait_pid "$PP" 30
  check "a silent client is disconnected by the timeout" grep -qx closed "$F/silent.out"
  check "a half-sent frame is disconnected by the timeout" grep -qx closed "$F/partial.out"
  "$PROBE" "$F/ctl.sock" idle 20000 >"$F/idle.out"
  check "a keep-alive connection idle after an answer is closed by the timeout" \
    bash -c "head -1 '$F/idle.out' | grep -q '^ok 10' && tail -1 '$F/idle.out' | grep -qx closed"

  # Fill every connection slot: the next client gets a BUSY answer (not a
  # hang); once the timeout frees them, service resumes.
  "$PROBE" "$F/ctl.sock" hold 64 >"$F/hold.out" &
  HP=$!
  track_pid "$HP"
  if wait_for 10 grep -q 'held 64' "$F/hold.out"; then
    sleep 0.1
    expect_rc "connection cap: the 65th client is told busy" 1 "busy" C status
    check "service resumes after idle connections time out" wait_for 15 "$CTL" --socket "$F/ctl.sock" status
  else
    fail "connection cap" "could not open 64 connections"
  fi
  stop_pid "$HP"

  stop_pid "$FAKE"
  check "fake daemon stops cleanly and removes its socket" test ! -e "$F/ctl.sock"
fi

# ---------------------------------------------------------------- 2b. answers in parts
# 20,000 sites on the fake core: every answer that grows with the sites
# comes as a stream of bounded frames, the order by bytes survives the
# bounded top-N choice, and a client that does not stream still gets one
# frame or a clear TOO_LARGE.
M=$T/many
mkdir -p "$M"
FAKE_CORE_SITES=20000 FAKE_CORE_FROZEN=1 HAKMEMD_LOG=stderr "$T/bin/fake_hakmemd" "$M/ctl.sock" 2>"$M/log" &
MANY=$!
track_pid "$MANY"
if ! wait_for 10 "$CTL" --socket "$M/ctl.sock" status; then
  fail "fake daemon with 20,000 sites starts" "$(cat "$M/log")"
else
  MC() { timeout 120 "$CTL" --socket "$M/ctl.sock" --timeout 30000 "$@"; }
  MC --json sites --top 0 >"$M/all.json"
  check "sites --top 0: all 20,000 sites, each once, largest bytes first" \
    $JC 'j["total"]==20000 and len(j["sites"])==20000 and len({s["site"] for s in j["sites"]})==20000 and all(a["bytes"]>=b["bytes"] for a,b in zip(j["sites"],j["sites"][1:])) and j["sites"][0]["bytes"]>j["sites"][-1]["bytes"]' <"$M/all.json"
  MC --json sites --top 50 >"$M/top.json"
  check "sites --top 50: the 50 largest, as in the full list" python3 -c '
import json, sys
a = json.load(open(sys.argv[1]))["sites"]; t = json.load(open(sys.argv[2]))
sys.exit(not (t["total"] == 20000 and [s["site"] for s in t["sites"]] == [s["site"] for s in a[:50]]))' "$M/all.json" "$M/top.json"
  check "sites --top 0 (human) lists all" bash -c "'$CTL' --socket '$M/ctl.sock' --timeout 30000 sites --top 0 | tail -1 | grep -qx '(20000 of 20000 sites, by bytes)'"
  check "thresholds --top 0 lists all" bash -c "'$CTL' --socket '$M/ctl.sock' --timeout 30000 thresholds --top 0 > '$M/th.txt' && [ \$(wc -l <'$M/th.txt') = 20002 ] && tail -1 '$M/th.txt' | grep -qx '(20000 of 20000 sites)'"
  MC metrics >"$M/metrics.txt"
  check "metrics of 20,000 sites (some 50 MB) accepted by promtool" promtool check metrics <"$M/metrics.txt"
  check "metrics carry every site" bash -c "[ \$(grep -c '^hakmem_site_alloc_bytes_total{' '$M/metrics.txt') = 20000 ]"
  MC --json metrics >"$M/metrics.json"
  check "metrics --json carries the same text (but the uptime)" python3 -c '
import json, sys
same = lambda t: [l for l in t.splitlines() if not l.startswith("hakmem_daemon_uptime_seconds ")]
sys.exit(same(json.load(open(sys.argv[1]))["text"]) != same(open(sys.argv[2]).read()))' "$M/metrics.json" "$M/metrics.txt"
  # The raw protocol: more on every part but the last (the probe stops at
  # the first part without it), each frame bounded.
  "$PROBE" "$M/ctl.sock" stream metrics >"$M/s-metrics"
  check "metrics stream: many parts, none over 256 KiB of text, all of it (the uptime aside)" \
    bash -c "read -r _ p _ _ _ b _ f <'$M/s-metrics' && d=\$((b - \$(stat -c %s '$M/metrics.txt'))) && [ \$p -gt 100 ] && [ \${d#-} -lt 100 ] && [ \$f -le 262200 ]"
  "$PROBE" "$M/ctl.sock" stream sites >"$M/s-sites"
  check "sites stream: pages of at most 128 sites" \
    bash -c "read -r _ p _ n _ _ _ f <'$M/s-sites' && [ \$n = 20000 ] && [ \$p -ge 157 ] && [ \$f -lt 1048576 ]"
  MC export "$M/pol.bin" >/dev/null
  "$PROBE" "$M/ctl.sock" stream export >"$M/s-export"
  check "export: pieces that concatenate to the whole policy" \
    bash -c "read -r _ p _ _ _ b _ _ <'$M/s-export' && [ \$p -gt 1 ] && [ \$b = \$(stat -c %s '$M/pol.bin') ] && head -c 8 '$M/pol.bin' | grep -q FAKEPOL1"
  check "a client that does not stream: TOO_LARGE past one frame, not a cut answer" \
    bash -c "'$PROBE' '$M/ctl.sock' legacy metrics | grep -q '^error 3 metrics: the answer exceeds one frame' && '$PROBE' '$M/ctl.sock' legacy sites | grep -q '^error 3 sites: '"
  check "a client that does not stream: one frame when the answer fits" \
    bash -c "'$PROBE' '$M/ctl.sock' legacy export | grep -qx 'ok 13 more 0'"
  check "the daemon answers after all that" "$CTL" --socket "$M/ctl.sock" status
fi
stop_pid "$MANY"

# Not running: no socket at all, and a socket nobody listens on.
expect_rc "daemon not running: exit 3" 3 "not reachable" "$CTL" --socket "$T/none.sock" status
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$T/stale.sock"
expect_rc "stale socket (nobody listening): exit 3" 3 "not reachable.*refused" "$CTL" --socket "$T/stale.sock" status
expect_rc "HAKMEM_SOCKET is honoured" 3 "$T/none2.sock" env HAKMEM_SOCKET="$T/none2.sock" "$CTL" status

# ---------------------------------------------------------------- 3. authorization
# The daemon runs as its own user (hkctl-d, primary group hakmem), as under
# systemd; hkctl-m is a member of hakmem, hkctl-p has it as its primary
# group (SO_PEERCRED's gid, not the supplementary groups); hkctl-o is not.
need_group hakmem
add_user hkctl-d -g hakmem
add_user hkctl-p -g hakmem
add_user hkctl-m -U -G hakmem
add_user hkctl-m2 -U -G hakmem
add_user hkctl-o -U
as() { local u=$1; shift; setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups "$@"; }
A=$T/auth
mkdir -p "$A/state"
chown -R hkctl-d:hakmem "$A"
chmod 755 "$A"
SHM_AUTH=/hkctl-auth-$$
track_shm "$SHM_AUTH"
# setpriv directly (not through a function), so $! is the daemon itself.
setpriv --reuid=hkctl-d --regid="$(id -g hkctl-d)" --init-groups env HAKMEMD_LOG=stderr "$T/bin/hakmemd" --foreground --shm "$SHM_AUTH" --socket "$A/ctl.sock" \
  --state-dir "$A/state" --interval 200 2>"$T/auth.log" &
AUTHD=$!
track_pid "$AUTHD"
if ! wait_for 10 test -S "$A/ctl.sock"; then
  fail "daemon as its own user starts" "$(cat "$T/auth.log")"
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
  check "group member may read binaries" as hkctl-m "$CTL" --socket "$A/ctl.sock" binaries
  expect_rc "group member may not pin a binary" 1 "permission denied: pin-binary" as hkctl-m "$CTL" --socket "$A/ctl.sock" pin-binary 1234 0
  expect_rc "group member may not reset binaries" 1 "permission denied: reset-binary" as hkctl-m "$CTL" --socket "$A/ctl.sock" reset-binary
  check "a user whose primary group is hakmem may read" as hkctl-p "$CTL" --socket "$A/ctl.sock" status
  expect_rc "a user whose primary group is hakmem may not reset" 1 "permission denied: reset changes the daemon" as hkctl-p "$CTL" --socket "$A/ctl.sock" reset
  expect_rc "a user whose primary group is hakmem may not pin" 1 "permission denied: pin" as hkctl-p "$CTL" --socket "$A/ctl.sock" pin 1:2 0
  expect_rc "outsider is shut out by the socket's mode: exit 1" 1 "permission denied on .*join group hakmem" as hkctl-o "$CTL" --socket "$A/ctl.sock" status
  # Even with the socket opened to everyone, SO_PEERCRED still refuses.
  chmod 666 "$A/ctl.sock"
  expect_rc "outsider refused by SO_PEERCRED even on an open socket" 1 "permission denied: status: only root" as hkctl-o "$CTL" --socket "$A/ctl.sock" status
  expect_rc "outsider may not change either" 1 "permission denied" as hkctl-o "$CTL" --socket "$A/ctl.sock" reset
  chmod 660 "$A/ctl.sock"
  check "refusals are logged with the uid" bash -c "grep -q 'refused reset from uid $UM ' '$T/auth.log' && grep -q 'refused import from uid $UM ' '$T/auth.log' && grep -q 'refused status from uid $UO ' '$T/auth.log'"
  check "changes are logged with the uid" grep -q "learned policy reset by uid $(id -u hkctl-d)" "$T/auth.log"

  # Connection limits.  One member's 64 keep-alive clients get its share
  # (8) and BUSY for the rest; meanwhile root, the daemon's user and another
  # member are served.  (setpriv directly, so that $! is the probe.)  Each
  # refused descriptor must stay the daemon's until its linger ends: closed
  # at once, the number went to the next connection, which the linger's
  # close then cut, and fewer than 8 stayed served.
  setpriv --reuid=hkctl-m --regid="$(id -g hkctl-m)" --init-groups "$PROBE" "$A/ctl.sock" keepalive 64 3000 >"$T/ka.out" &
  KA=$!
  track_pid "$KA"
  if wait_for 20 grep -q '^served' "$T/ka.out"; then
    check "one member's 64 keep-alive connections: 8 served, 56 told busy" grep -qx 'served 8 busy 56' "$T/ka.out"
    check "meanwhile root is served" AC status
    check "meanwhile another member is served" as hkctl-m2 "$CTL" --socket "$A/ctl.sock" status
    check "meanwhile the daemon's user is served" as hkctl-d "$CTL" --socket "$A/ctl.sock" status
    expect_rc "meanwhile the member itself is told busy" 1 "busy: uid $UM already has 8 control connections" \
      as hkctl-m "$CTL" --socket "$A/ctl.sock" status
  else
    fail "keep-alive connections of one member" "$(cat "$T/ka.out")"
  fi
  wait_pid "$KA" 30
  check "the member's 8 connections stay served while they talk" grep -qx 'alive 8' "$T/ka.out"
  check "refusals are logged, at most one line a second" bash -c "n=\$(grep -c 'refused connection of uid $UM' '$T/auth.log'); [ \$n -ge 1 ] && [ \$n -le 6 ]"

fi
stop_pid "$AUTHD"

# Capacity kept for root and the daemon's user: with the per-uid share
# lifted, one member takes all it may (56 of 64), and then only root and
# the daemon's user are still served.
setpriv --reuid=hkctl-d --regid="$(id -g hkctl-d)" --init-groups env HAKMEMD_LOG=stderr HAKMEMD_CTL_CONNS_PER_UID=64 \
  "$T/bin/hakmemd" --foreground --shm "$SHM_AUTH" --socket "$A/ctl.sock" --state-dir "$A/state" --interval 200 \
  2>"$T/auth2.log" &
AUTHD=$!
track_pid "$AUTHD"
if ! wait_for 10 test -S "$A/ctl.sock"; then
  fail "daemon as its own user starts again" "$(cat "$T/auth2.log")"
else
  setpriv --reuid=hkctl-m --regid="$(id -g hkctl-m)" --init-groups "$PROBE" "$A/ctl.sock" keepalive 64 2000 >"$T/ka2.out" &
  KA=$!
  track_pid "$KA"
  if wait_for 20 grep -q '^served' "$T/ka2.out"; then
    check "without a per-uid share a member gets 56 of 64 connections" grep -qx 'served 56 busy 8' "$T/ka2.out"
    check "the 8 kept: root is served" "$CTL" --socket "$A/ctl.sock" status
    check "the 8 kept: the daemon's user is served" as hkctl-d "$CTL" --socket "$A/ctl.sock" status
    expect_rc "the 8 kept: another member is told busy" 1 "busy: the control connections left are kept for root" \
      as hkctl-m2 "$CTL" --socket "$A/ctl.sock" status
  else
    fail "keep-alive connections without a per-uid share" "$(cat "$T/ka2.out")"
  fi
  wait_pid "$KA" 30
fi
stop_pid "$AUTHD"

# ---------------------------------------------------------------- 4. end to end
LIB=$BUILD/libhakmem.so
E=$T/e2e
mkdir -p "$E/a" "$E/b"
SHM_A=/hkctl-a-$$
SHM_B=/hkctl-b-$$
track_shm "$SHM_A" "$SHM_B"
HAKMEMD_LOG=stderr "$T/bin/hakmemd" --foreground --shm "$SHM_A" --socket "$E/a/ctl.sock" --state-dir "$E/a/state" \
  --interval 100 --metrics-file "$E/a/hakmem.prom" 2>"$E/a/log" &
DA=$!
track_pid "$DA"
EA() { "$CTL" --socket "$E/a/ctl.sock" "$@"; }
EB() { "$CTL" --socket "$E/b/ctl.sock" "$@"; }
if ! wait_for 10 EA status; then
  fail "hakmemd A starts" "$(cat "$E/a/log")"
elif [ ! -e "$LIB" ]; then
  fail "end to end" "$LIB missing: no client can report sites"
else
  # Two long-lived clients and one short one: whether the library flushes
  # its sites while running or only at exit, the daemon sees sites while
  # live processes are attached.
  CLIENTS=()
  for secs in 20 20 1; do
    HAKMEM_SHM=$SHM_A LD_PRELOAD=$LIB "$T/bin/alloc_sites" $secs >/dev/null 2>&1 &
    CLIENTS+=($!)
    track_pid $!
  done
  CP=${CLIENTS[0]}
  if ! wait_for 15 bash -c "'$CTL' --socket '$E/a/ctl.sock' --json sites --exe alloc_sites | $JC 'len(j[\"sites\"])>=3'"; then
    fail "real clients' sites reach hakmemd" "after 15 s: $(EA --json status 2>&1) $(EA --json procs 2>&1 | head -c 300)"
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
      fail "pin (real)" "site $VM has no arms in hakmemd's answer"
    fi
    check "watch (real)" bash -c "'$CTL' --socket '$E/a/ctl.sock' watch --count 2 --interval 150 | grep -q site_vm"
    check "reset --site (real)" EA reset --site "$VM"
    expect_rc "reset of an unknown site (real): exit 1" 1 "not found" EA reset --site 123:456

    # Export on A, import into a fresh B: B publishes the same thresholds.
    for c in "${CLIENTS[@]}"; do stop_pid "$c"; done
    same=0
    for _ in 1 2 3 4 5; do
      EA --json sites --top 0 >"$E/ta1.json"
      EA export "$E/policy.bin" >/dev/null
      EA --json sites --top 0 >"$E/ta2.json"
      if cmp -s "$E/ta1.json" "$E/ta2.json"; then same=1; break; fi
      sleep 0.3
    done
    check "export (real) writes a policy" test -s "$E/policy.bin"
    [ "$same" = 1 ] || fail "export snapshot" "A's thresholds kept changing around the export"
    HAKMEMD_LOG=stderr "$T/bin/hakmemd" --foreground --shm "$SHM_B" --socket "$E/b/ctl.sock" --state-dir "$E/b/state" \
      --interval 100 2>"$E/b/log" &
    DB=$!
    track_pid "$DB"
    if ! wait_for 10 EB status; then
      fail "hakmemd B starts" "$(cat "$E/b/log")"
    else
      check "B starts cold (no sites)" bash -c "'$CTL' --socket '$E/b/ctl.sock' --json thresholds --top 0 | $JC 'len(j[\"sites\"])==0'"
      check "import (real) into B" bash -c "'$CTL' --socket '$E/b/ctl.sock' import '$E/policy.bin' | grep -Eq 'imported the policy of [1-9][0-9]* sites'"
      # Per site: the thresholds, and each arm's pulls and mean reward.
      if wait_for 10 bash -c "'$CTL' --socket '$E/b/ctl.sock' --json sites --top 0 > '$E/tb.json' && python3 '$SRC/same_learning.py' '$E/ta1.json' '$E/tb.json'"; then
        ok "B publishes the thresholds learned on A, with every arm's pulls and mean"
      else
        fail "B publishes the thresholds learned on A, with every arm's pulls and mean" \
          "$(python3 "$SRC/same_learning.py" "$E/ta1.json" "$E/tb.json" 2>&1 | head -c 400)"
      fi
      B_EXPORT_OK=0
      EB export "$E/policy-b.bin" >/dev/null && B_EXPORT_OK=1
      [ "$B_EXPORT_OK" = 1 ] && ok "B exports again after import" || fail "B exports again after import" "export failed"
    fi
  fi
  # Resets on A, its clients gone (so nothing learns meanwhile): one site
  # forgets its pulls and the others keep theirs; then a pin, and a reset
  # of everything forgets all pulls and releases the pin.
  EA --json sites --top 0 >"$E/r0.json"
  EA reset --site "$VM" >/dev/null
  EA --json sites --top 0 >"$E/r1.json"
  check "reset --site (real): that site forgets its pulls, the others keep theirs" \
    python3 "$SRC/same_learning.py" "$E/r0.json" "$E/r1.json" --forgot "$VM"
  OTHER=$($JC '[s["site"] for s in j["sites"] if s["site"] != "'"$VM"'"][0]' --print <"$E/r1.json")
  EA pin "$OTHER" 2 >/dev/null
  EA reset >/dev/null
  EA --json sites --top 0 >"$E/r2.json"
  check "reset (real, all): every site forgets its pulls, the pin is released" \
    python3 "$SRC/same_learning.py" "$E/r1.json" "$E/r2.json" --forgot all
fi
stop_pid "$DA"
expect_rc "after hakmemd stops: exit 3" 3 "not reachable" EA status

# ---------------------------------------------------------------- 4b. import into a daemon with sites
# Two generated policies that share 5 of their sites: imported one after
# the other, the daemon holds all 15, the shared ones with the pulls of
# both added and the means weighted by them (what another daemon that
# imported only the second one shows is the second one's part).
G=$T/merge
mkdir -p "$G/m" "$G/n"
python3 "$SRC/gen_policy.py" 10 "$G/p1.pol"
python3 "$SRC/gen_policy.py" 10 "$G/p2.pol" --first 5 --salt 1
SHM_M=/hkctl-merge-$$
SHM_N=/hkctl-merge2-$$
track_shm "$SHM_M" "$SHM_N"
for d in "m $SHM_M" "n $SHM_N"; do
  set -- $d
  HAKMEMD_LOG=stderr "$T/bin/hakmemd" --foreground --shm "$2" --socket "$G/$1/ctl.sock" \
    --state-dir "$G/$1/state" --interval 3600000 2>"$G/$1/log" &
  track_pid $!
  MERGE_PIDS+=($!)
done
GM() { "$CTL" --socket "$G/m/ctl.sock" "$@"; }
GN() { "$CTL" --socket "$G/n/ctl.sock" "$@"; }
if ! wait_for 10 GM status || ! wait_for 10 GN status; then
  fail "import into a daemon with sites: the daemons start" "$(tail -2 "$G/m/log" "$G/n/log")"
else
  GM import "$G/p1.pol" >/dev/null && GM --json sites --top 0 >"$G/one.json"
  GN import "$G/p2.pol" >/dev/null && GN --json sites --top 0 >"$G/two.json"
  GM import "$G/p2.pol" >/dev/null && GM --json sites --top 0 >"$G/both.json"
  check "import into a daemon that has sites: all 15, the 5 shared with pulls added and means weighted" bash -c "
    $JC 'len(j[\"sites\"])==15' <'$G/both.json' && python3 '$SRC/same_learning.py' '$G/one.json' '$G/both.json' --plus '$G/two.json'"
fi
for p in "${MERGE_PIDS[@]}"; do stop_pid "$p"; done

# ---------------------------------------------------------------- 5. state files
# Whatever sits at state.pb, startup goes on: a FIFO (opening it used to
# block startup, with SIGTERM then ignored), a symlink, a directory, a
# device is set aside with one warning, and the daemon still stops on
# SIGTERM and saves.
SF=$T/sf
n=0
for kind in fifo symlink dir device; do
  n=$((n + 1))
  D=$SF/$kind
  mkdir -p "$D/state"
  echo precious >"$D/target"
  case $kind in
    fifo) mkfifo "$D/state/state.pb" ;;
    symlink) ln -s "$D/target" "$D/state/state.pb" ;;
    dir) mkdir "$D/state/state.pb" ;;
    device) mknod "$D/state/state.pb" c 1 3 ;;     # what /dev/null is
  esac
  SHM_SF=/hkctl-sf$n-$$
  track_shm "$SHM_SF"
  HAKMEMD_LOG=stderr "$T/bin/hakmemd" --foreground --shm "$SHM_SF" --socket "$D/ctl.sock" --state-dir "$D/state" \
    --interval 100 2>"$D/log" &
  P=$!
  track_pid "$P"
  if wait_for 10 "$CTL" --socket "$D/ctl.sock" status; then
    ok "a $kind at state.pb: the daemon starts"
  else
    fail "a $kind at state.pb: the daemon starts" "$(tail -3 "$D/log")"
  fi
  check "a $kind at state.pb: one warning line, set aside" \
    bash -c "[ \$(grep -c 'warning' '$D/log') = 1 ] && grep -q 'state file in $D/state is not a regular file; set aside as $D/state/state.pb.corrupt-' '$D/log'"
  case $kind in
    fifo) check "the FIFO is what was set aside" bash -c "test -p '$D'/state/state.pb.corrupt-*" ;;
    symlink) check "the symlink is what was set aside, its target untouched" \
               bash -c "test -L '$D'/state/state.pb.corrupt-* && [ \"\$(cat '$D/target')\" = precious ]" ;;
    dir) check "the directory is what was set aside" bash -c "test -d '$D'/state/state.pb.corrupt-*" ;;
    device) check "the device is what was set aside" bash -c "test -c '$D'/state/state.pb.corrupt-*" ;;
  esac
  stop_pid "$P" 10
  if [ $? -ne 137 ]; then
    ok "a $kind at state.pb: SIGTERM stops the daemon"
  else
    fail "a $kind at state.pb: SIGTERM stops the daemon" "still running after 10 s"
  fi
  check "a $kind at state.pb: a regular state file saved at exit" bash -c "test -f '$D/state/state.pb' && ! test -L '$D/state/state.pb'"
done

# Temp files a save killed mid-write left behind are removed at start: only
# ours (the pattern, a regular file, our uid, a writer no longer running).
D=$SF/orphans
mkdir -p "$D/state" "$D/m"
dead=""
for p in $(seq 4194000 -1 4100000); do [ -e "/proc/$p" ] || { dead=$p; break; }; done
touch "$D/state/.state.pb.tmp.$dead.0badf00d" "$D/state/.state.pb.tmp.$dead" "$D/m/.hakmem.prom.tmp.$dead.cafe0001"
touch "$D/state/.state.pb.tmp.$$.1ive" "$D/state/.state.pb.tmp.$dead.notours" "$D/state/unrelated.tmp.$dead"
chown hkctl-o "$D/state/.state.pb.tmp.$dead.notours" 2>/dev/null
ln -s "$D/m" "$D/state/.state.pb.tmp.$dead.link"
SHM_OR=/hkctl-orphans-$$
track_shm "$SHM_OR"
HAKMEMD_LOG=stderr "$T/bin/hakmemd" --foreground --shm "$SHM_OR" --socket "$D/ctl.sock" --state-dir "$D/state" \
  --interval 100 --metrics-file "$D/m/hakmem.prom" 2>"$D/log" &
P=$!
track_pid "$P"
if wait_for 10 "$CTL" --socket "$D/ctl.sock" status; then
  check "orphaned temp files of a killed save are removed at start" \
    bash -c "! test -e '$D/state/.state.pb.tmp.$dead.0badf00d' && ! test -e '$D/state/.state.pb.tmp.$dead' && grep -q 'removed 2 temp files an interrupted save left' '$D/log'"
  check "the metrics file's orphan is removed too" bash -c "! test -e '$D/m/.hakmem.prom.tmp.$dead.cafe0001'"
  check "a live writer's, another user's, a symlink and unrelated files are left" \
    bash -c "test -e '$D/state/.state.pb.tmp.$$.1ive' && test -e '$D/state/.state.pb.tmp.$dead.notours' && test -L '$D/state/.state.pb.tmp.$dead.link' && test -e '$D/state/unrelated.tmp.$dead'"
  check "the metrics file is written, no temp file left beside it" \
    wait_for 10 bash -c "test -s '$D/m/hakmem.prom' && [ \$(ls -A '$D/m' | grep -c tmp) = 0 ]"
else
  fail "daemon with orphaned temp files starts" "$(tail -3 "$D/log")"
fi
stop_pid "$P"

# ---------------------------------------------------------------- 6. strings from clients and imports
# An executable whose name holds a newline, a double quote, a backslash,
# ESC and a byte that is not UTF-8: its name reaches procs and sites as the
# module path, its control bytes already '?' (the daemon cleans what a
# client writes at registration and collection).  Human output shows the
# rest escaped, --json as a JSON string, metrics as a valid label, and an
# imported odd path is cleaned at the door.
O=$T/odd
mkdir -p "$O/b"
ODD=$(printf 'o\nd"q\\b\033[31m\377x')
ODD_TTY='o?d"q\\b?[31m\xffx'
cp "$T/bin/alloc_sites" "$O/b/$ODD"
chmod 755 "$O" "$O/b"
SHM_O=/hkctl-odd-$$
track_shm "$SHM_O"
HAKMEMD_LOG=stderr "$T/bin/hakmemd" --foreground --shm "$SHM_O" --socket "$O/ctl.sock" --state-dir "$O/state" \
  --interval 100 2>"$O/log" &
DO=$!
track_pid "$DO"
OC() { "$CTL" --socket "$O/ctl.sock" "$@"; }
# tty_clean FILE TEXT...: each TEXT is in FILE, which is valid UTF-8 with no
# control character but newlines.
tty_clean() {
  local f=$1 t
  shift
  for t in "$@"; do grep -qF -- "$t" "$f" || { echo "no '$t' in $f"; return 1; }; done
  python3 -c '
import sys
t = open(sys.argv[1], "rb").read().decode("utf-8")
bad = [c for c in t if (ord(c) < 32 and c != "\n") or 127 <= ord(c) < 160]
sys.exit("control characters: %r" % bad[:5] if bad else 0)' "$f"
}
if ! wait_for 10 OC status || [ ! -e "$LIB" ]; then
  fail "strings: hakmemd starts" "$(tail -3 "$O/log")"
else
  HAKMEM_SHM=$SHM_O LD_PRELOAD=$LIB "$O/b/$ODD" 20 >/dev/null 2>&1 &
  OP=$!
  track_pid "$OP"
  if ! wait_for 15 bash -c "'$CTL' --socket '$O/ctl.sock' --json sites | $JC 'len(j[\"sites\"])>=3'"; then
    fail "strings: the odd client's sites reach hakmemd" "$(OC procs 2>&1 | head -3)"
  else
    OC procs >"$O/procs.txt"
    check "procs: the odd executable cleaned and escaped, on one line" \
      bash -c "$(declare -f tty_clean); tty_clean '$O/procs.txt' '$ODD_TTY' && [ \$(wc -l <'$O/procs.txt') = 2 ]"
    OC sites >"$O/sites.txt"
    OC thresholds >"$O/th.txt"
    check "sites: the module cleaned and escaped" tty_clean "$O/sites.txt" "$ODD_TTY+0x"
    check "thresholds: the module cleaned and escaped" tty_clean "$O/th.txt" "$ODD_TTY+0x"
    OC --json procs >"$O/procs.json"
    check "procs --json: the name as a JSON string (the bad byte as U+FFFD)" python3 -c '
import json, sys
sys.exit(not any(p["exe"].endswith("/o?d\"q\\b?[31m\ufffdx") for p in json.load(open(sys.argv[1]))))' "$O/procs.json"
    OC metrics >"$O/metrics.txt"
    check "metrics with the odd name accepted by promtool" promtool check metrics <"$O/metrics.txt"
    check "metrics: the label escaped as the format says, the bad byte replaced" python3 -c '
import sys
t = open(sys.argv[1], encoding="utf-8").read()
sys.exit(not ("hakmem_process_sites{exe=\"o?d\\\"q\\\\b?[31m\ufffdx\",pid=" in t))' "$O/metrics.txt"
  fi
  python3 "$SRC/gen_policy.py" 4 "$O/odd.pol" --odd-module
  check "an imported odd module path is taken" bash -c "'$CTL' --socket '$O/ctl.sock' import '$O/odd.pol' | grep -q 'of 4 sites'"
  OC --json sites --top 0 >"$O/sites.json"
  check "and cleaned at the door: controls and bad bytes become '?'" python3 -c '
import json, sys
sys.exit(not any(s["module"] == "/opt/odd?name\"q\\b?[31mred?end" for s in json.load(open(sys.argv[1]))["sites"]))' "$O/sites.json"
  OC sites --top 0 >"$O/sites2.txt"
  check "sites: the imported path shown with its backslash escaped" tty_clean "$O/sites2.txt" 'odd?name"q\\b?[31mred?end+0x'
  OC metrics >"$O/metrics2.txt"
  check "metrics with the imported path accepted by promtool" promtool check metrics <"$O/metrics2.txt"
  stop_pid "$OP"
fi
stop_pid "$DO"

# ---------------------------------------------------------------- 7. 65,536 sites
# The design point, in a real hakmemd loaded from a generated state file:
# metrics, sites --top 0, thresholds --top 0, export, import (and three
# metrics at once) all succeed, and the daemon's peak RSS during each grows
# by at most PEAK_BOUND_MIB over its RSS before (VmHWM, reset through
# /proc/PID/clear_refs before each).  The whole answers are 30-216 MB; a
# request holds a page of sites or a piece of text, and `sites` 16 bytes
# a site for its order.
PEAK_BOUND_MIB=32
N=65536
B=$T/big
mkdir -p "$B/state" "$B/fresh"
python3 "$SRC/gen_policy.py" $N "$B/state/state.pb" --state
python3 "$SRC/gen_policy.py" $N "$B/gen.pol"
SHM_BIG=/hkctl-big-$$
SHM_FRESH=/hkctl-fresh-$$
track_shm "$SHM_BIG" "$SHM_FRESH"
# A long interval: no learning interval or periodic save runs meanwhile.
HAKMEMD_LOG=stderr "$T/bin/hakmemd" --foreground --shm "$SHM_BIG" --socket "$B/ctl.sock" --state-dir "$B/state" \
  --interval 3600000 2>"$B/log" &
DB=$!
track_pid "$DB"
BC() { timeout 300 "$CTL" --socket "$B/ctl.sock" --timeout 60000 "$@"; }
# peak NAME PID COMMAND...: runs COMMAND (its output in $B/out); ok when it
# succeeds and the daemon PID grew by at most PEAK_BOUND_MIB meanwhile.
peak() {
  local name=$1 pid=$2 rss0 hwm rc d
  shift 2
  echo 5 >"/proc/$pid/clear_refs"
  rss0=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")
  "$@" >"$B/out" 2>"$B/err"
  rc=$?
  hwm=$(awk '/^VmHWM/{print $2}' "/proc/$pid/status")
  d=$(((hwm - rss0) / 1024))
  echo "info - $name: daemon RSS ${rss0} kB before, peak ${hwm} kB (+${d} MiB)"
  if [ "$rc" != 0 ]; then
    fail "$name" "exit $rc: $(head -c 300 "$B/err")"
  elif [ "$d" -gt "$PEAK_BOUND_MIB" ]; then
    fail "$name" "the daemon grew by $d MiB (bound $PEAK_BOUND_MIB MiB)"
  else
    ok "$name: the daemon grew by $d MiB (bound $PEAK_BOUND_MIB)"
  fi
}
if ! wait_for 30 bash -c "'$CTL' --socket '$B/ctl.sock' --json sites --top 1 | $JC 'j[\"total\"]==$N'"; then
  fail "hakmemd with $N sites starts" "$(tail -3 "$B/log")"
elif ! echo 5 2>/dev/null >"/proc/$DB/clear_refs"; then
  echo "######################################################################"
  echo "# SKIPPED: peak RSS at $N sites: /proc/$DB/clear_refs is not writable"
  echo "######################################################################"
else
  echo "info - hakmemd with $N sites: RSS $(awk '/^VmRSS/{print $2}' "/proc/$DB/status") kB after loading them"
  peak "metrics of $N sites" "$DB" BC metrics
  check "metrics: every site, accepted by promtool" \
    bash -c "[ \$(grep -c '^hakmem_site_alloc_bytes_total{' '$B/out') = $N ] && timeout 120 promtool check metrics <'$B/out'"
  echo "info - metrics text of $N sites: $(stat -c %s "$B/out") bytes"
  peak "sites --top 0 of $N sites" "$DB" BC sites --top 0
  check "sites --top 0: all of them" bash -c "tail -1 '$B/out' | grep -qx '($N of $N sites, by bytes)'"
  peak "sites --json --top 0 of $N sites" "$DB" BC --json sites --top 0
  check "sites --json --top 0: all of them, largest bytes first" \
    $JC "j['total']==$N and len(j['sites'])==$N and all(a['bytes']>=b['bytes'] for a,b in zip(j['sites'],j['sites'][1:]))" <"$B/out"
  peak "thresholds --top 0 of $N sites" "$DB" BC thresholds --top 0
  check "thresholds --top 0: all of them" bash -c "tail -1 '$B/out' | grep -qx '($N of $N sites)'"
  peak "export of $N sites" "$DB" BC export "$B/export.pol"
  check "export: a policy of all of them" bash -c "[ \$(stat -c %s '$B/export.pol') -gt 20000000 ] && grep -q 'exported the learned policy' '$B/out'"
  BC --json thresholds --top 0 >"$B/ta.json"
  peak "import of $N sites (merged into the same ones)" "$DB" BC import "$B/gen.pol"
  check "import: all of them" grep -qx "imported the policy of $N sites" "$B/out"
  peak "three metrics of $N sites at once" "$DB" bash -c "
    for i in 1 2 3; do timeout 300 '$CTL' --socket '$B/ctl.sock' --timeout 60000 metrics >'$B/m'\$i & done; wait
    for i in 1 2 3; do [ \$(grep -c '^hakmem_site_alloc_bytes_total{' '$B/m'\$i) = $N ] || exit 1; done"
  rm -f "$B"/m[123]
  # The export imported into a daemon that knew nothing: the same thresholds.
  HAKMEMD_LOG=stderr "$T/bin/hakmemd" --foreground --shm "$SHM_FRESH" --socket "$B/fresh/ctl.sock" \
    --state-dir "$B/fresh/state" --interval 3600000 2>"$B/fresh/log" &
  DF=$!
  track_pid "$DF"
  if wait_for 10 "$CTL" --socket "$B/fresh/ctl.sock" status; then
    echo 5 >"/proc/$DF/clear_refs"
    r0=$(awk '/^VmRSS/{print $2}' "/proc/$DF/status")
    check "import of $N new sites (a 30 MB policy, in parts)" \
      bash -c "timeout 300 '$CTL' --socket '$B/fresh/ctl.sock' --timeout 60000 import '$B/export.pol' | grep -qx 'imported the policy of $N sites'"
    echo "info - import of $N new sites: daemon RSS $r0 kB before, peak $(awk '/^VmHWM/{print $2}' "/proc/$DF/status") kB (the new site table included)"
    timeout 300 "$CTL" --socket "$B/fresh/ctl.sock" --timeout 60000 --json thresholds --top 0 >"$B/tb.json"
    check "the imported daemon publishes the same thresholds for all $N sites" python3 -c '
import json, sys
a = {s["site"]: s["thresholds"] for s in json.load(open(sys.argv[1]))["sites"]}
b = {s["site"]: s["thresholds"] for s in json.load(open(sys.argv[2]))["sites"]}
sys.exit(not (len(a) == int(sys.argv[3]) and a == b))' "$B/ta.json" "$B/tb.json" $N
  else
    fail "fresh hakmemd starts" "$(tail -3 "$B/fresh/log")"
  fi
  stop_pid "$DF"
fi
stop_pid "$DB"
rm -rf "$B"

finish
