#!/usr/bin/env bash
# tests/daemon: the daemon core's unit tests (cmocka), then an end-to-end
# run: hakmemd on a private segment and socket (the segment its own, a lock
# file deciding who owns the name), 8 clients of one binary and 2 of
# another registering their report regions over the socket, a kill -9 of
# the daemon mid-run, a restart that adopts the segment and its persisted
# state (the clients register again), and a clean SIGTERM.
#   bash tests/daemon/suite.sh BUILD
set -u
BUILD=${1:-build}
T=$BUILD/tests/daemon
fails=0
ok()   { echo "ok - $1"; }
fail() { echo "FAIL - $1: $2"; fails=$((fails + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else fail "$name" "${WHY:-check failed}"; fi; WHY=; }
wait_for() { local i; for ((i = 0; i < $1 * 10; i++)); do "${@:2}" >/dev/null 2>&1 && return 0; sleep 0.1; done; "${@:2}"; }

TMP=$(mktemp -d /tmp/hkd-suite.XXXXXX)
SHM=/hkd-e2e-$$
DPID=
CPIDS=()
cleanup() {
    [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null
    for p in "${CPIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -f "/dev/shm/${SHM#/}" "/dev/shm/${SHM#/}.lock"
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

# ---- unit tests: one line per cmocka test ----
for t in test_learner test_binlearn test_binaries test_bands test_segment test_registry test_register test_persist test_core test_hostile test_split test_domains test_keep; do
    if [ ! -x "$T/$t" ]; then fail "unit $t" "not built ($T/$t)"; continue; fi
    out=$(timeout 600 "$T/$t" 2>&1); rc=$?
    while read -r name; do ok "unit $t/$name"; done < <(sed -n 's/^\[       OK \] //p' <<<"$out")
    while read -r name; do
        [ -n "$name" ] && fail "unit $t/$name" "$(grep -A2 "RUN .*$name\$" <<<"$out" | grep -m1 -E 'ERROR|error' | tr -s ' ')"
    done < <(sed -n 's/^\[  FAILED  \] \([a-z_0-9]*\)$/\1/p' <<<"$out" | sort -u)
    [ $rc -ne 0 ] && ! grep -q FAILED <<<"$out" && fail "unit $t" "exited $rc"
done

# ---- a hostile segment under valgrind: no read outside what the daemon owns ----
if command -v valgrind >/dev/null && [ -x "$T/test_hostile" ]; then
    vout=$(HOSTILE_ROUNDS=6 valgrind -q --error-exitcode=9 "$T/test_hostile" 2>&1); vrc=$?
    if [ $vrc -eq 0 ]; then
        ok "unit test_hostile under valgrind"
    else
        fail "unit test_hostile under valgrind" "exit $vrc: $(grep -m1 -E '==[0-9]+== [A-Z]' <<<"$vout")"
    fi
else
    fail "unit test_hostile under valgrind" "valgrind or test_hostile missing (make deps; make all)"
fi

# ---- end to end ----
HAKMEMD=$BUILD/hakmemd
CTL=$BUILD/hakmemctl
A=$T/e2e_client_a
B=$T/e2e_client_b
for f in "$HAKMEMD" "$CTL"; do
    [ -x "$f" ] || { fail "e2e prerequisites" "$f not built"; echo "# daemon suite: $fails failed"; exit 1; }
done
mkdir -p "$TMP/state"
start_daemon() {
    "$HAKMEMD" --foreground --shm "$SHM" --socket "$TMP/ctl.sock" --state-dir "$TMP/state" \
        --interval 200 --debug >>"$TMP/daemon.log" 2>&1 &
    DPID=$!
    for _ in $(seq 50); do grep -q "running:" "$TMP/daemon.log" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
status_field() {   # name: the value hakmemctl status --json gives it
    timeout 10 "$CTL" --socket "$TMP/ctl.sock" status --json 2>/dev/null |
        sed -n "s/.*\"$1\": *\([0-9]*\).*/\1/p" | head -1
}
run_client() {   # binary tag duration
    HAKMEM_SHM=$SHM HAKMEM_STATS=1 "$1" "$3" >"$TMP/$2.out" 2>"$TMP/$2.err" &
    CPIDS+=($!)
}

WHY="daemon did not start: $(tail -3 "$TMP/daemon.log" 2>/dev/null)"
check "e2e daemon starts on a private segment" start_daemon
[ -e "/dev/shm/${SHM#/}" ] && ok "e2e segment exists" || fail "e2e segment exists" "/dev/shm/${SHM#/} missing"
mode=$(stat -c %a "/dev/shm/${SHM#/}" 2>/dev/null)
[ "$mode" = 640 ] && ok "e2e segment mode 0640 (clients only read it)" || fail "e2e segment mode 0640 (clients only read it)" "mode $mode"
lmode=$(stat -c '%a %u' "/dev/shm/${SHM#/}.lock" 2>/dev/null)
WHY="lock file: ${lmode:-missing}"
check "e2e lock file /dev/shm/${SHM#/}.lock is the daemon's alone (0600)" test "$lmode" = "600 $(id -u)"
second=$(timeout 10 "$HAKMEMD" --foreground --shm "$SHM" --no-socket --state-dir "$TMP/state2" 2>&1); src=$?
WHY="exit $src: $second"
check "e2e a second daemon on the name is refused at once" \
    bash -c "[ $src -eq 1 ] && grep -q 'another hakmemd holds /dev/shm/${SHM#/}.lock' <<<'$second'"
regs=$(status_field processes)
WHY="processes ${regs:-?} with no client registered"
check "e2e no registrations, no processes" test "${regs:-x}" = 0

for f in "$A" "$B"; do
    # The clients need the client half of ABI 2 (libclient): without it
    # nothing below can run.
    [ -x "$f" ] || { fail "e2e clients" "$f not built"; echo "# daemon suite: $fails failed"; exit 1; }
done
for i in 1 2 3 4 5 6 7 8; do run_client "$A" a$i 6000; done
for i in 1 2; do run_client "$B" b$i 6000; done

# Let a few intervals pass, then look at the merged view the daemon logs.
sleep 3.5
nproc=$(status_field processes)
WHY="the daemon counts ${nproc:-?} processes"
check "e2e all 10 clients registered (processes counted by registration)" test "${nproc:-0}" -eq 10
merged_a=$(grep -E "site [0-9a-f]+:[0-9a-f]+ module=[^ ]*e2e_client_a procs=8 " "$TMP/daemon.log" | head -1)
merged_b=$(grep -E "site [0-9a-f]+:[0-9a-f]+ module=[^ ]*e2e_client_b procs=2 " "$TMP/daemon.log" | head -1)
WHY="no site of e2e_client_a seen in 8 processes: $(grep -m3 'e2e_client_a' "$TMP/daemon.log")"
check "e2e one site key merged across the 8 processes of one binary" test -n "$merged_a"
WHY="no site of e2e_client_b seen in 2 processes"
check "e2e the other binary's sites are merged separately (2 processes)" test -n "$merged_b"
keys_a=$(grep -oE "site [0-9a-f]+:[0-9a-f]+ module=[^ ]*e2e_client_a" "$TMP/daemon.log" | awk '{print $2}' | sort -u)
keys_b=$(grep -oE "site [0-9a-f]+:[0-9a-f]+ module=[^ ]*e2e_client_b" "$TMP/daemon.log" | awk '{print $2}' | sort -u)
common=$(comm -12 <(echo "$keys_a") <(echo "$keys_b"))
WHY="keys shared by both binaries: $common"
check "e2e the two binaries never share a key" test -z "$common"
gen=$(grep -oE "generation [0-9]+" "$TMP/daemon.log" | tail -1 | awk '{print $2}')
WHY="generation ${gen:-none}"
check "e2e thresholds published" test "${gen:-0}" -gt 0

# kill -9 mid-run: the clients must not notice.
kill -9 "$DPID"; wait "$DPID" 2>/dev/null; DPID=
allok=1
for p in "${CPIDS[@]}"; do wait "$p" || allok=0; done
CPIDS=()
for f in "$TMP"/a*.out "$TMP"/b*.out; do grep -q "rounds ok" "$f" || allok=0; done
WHY="a client failed: $(cat "$TMP"/*.err | grep -v '^ ' | head -3)"
check "e2e all 10 clients finish correctly after the daemon was killed" test $allok = 1
applied=$(grep -l "(daemon)" "$TMP"/a*.err "$TMP"/b*.err 2>/dev/null | wc -l)
WHY="only $applied of 10 exit reports show a daemon policy"
check "e2e clients applied published thresholds (exit report)" test "$applied" -eq 10
# (A client that checked its connection after the kill says it is no longer
# registered; every one still read the daemon's tables.)
attached=$(grep -l "segment $SHM, generation [1-9]" "$TMP"/a*.err "$TMP"/b*.err 2>/dev/null | wc -l)
WHY="only $attached of 10 describe lines name the segment with a generation: $(grep -h 'daemon:' "$TMP"/a1.err)"
check "e2e shm client describe line" test "$attached" -eq 10
WHY="no state file in $TMP/state"
check "e2e learned state persisted before the kill" test -s "$TMP/state/state.pb"

# Restart: adopts the segment (and the tables in it) and the persisted
# state; the running client sees the new instance and registers again.
gen_before=$(grep -oE "generation [0-9]+" "$TMP/daemon.log" | tail -1 | awk '{print $2}')
: >"$TMP/daemon.log"
run_client "$A" r1 4000
sleep 0.3
WHY="restart failed: $(tail -3 "$TMP/daemon.log")"
check "e2e daemon restarts" start_daemon
WHY="$(grep -m1 -E 'segment' "$TMP/daemon.log")"
check "e2e restarted daemon adopts the segment" grep -q "adopted segment $SHM" "$TMP/daemon.log"
nload=$(sed -n 's/.*loaded learned state: \([0-9]*\) sites.*/\1/p' "$TMP/daemon.log")
WHY="loaded ${nload:-no} sites"
check "e2e restarted daemon loads its persisted state" test "${nload:-0}" -ge 7
run_client "$A" r2 2500
sleep 2
seen_after=$(grep -cE "module=[^ ]*e2e_client_a procs=2 " "$TMP/daemon.log")
WHY="the restarted daemon never saw both running clients"
check "e2e restarted daemon collects from a client that outlived the old one" test "$seen_after" -gt 0
ok2=1
for p in "${CPIDS[@]}"; do wait "$p" || ok2=0; done
CPIDS=()
grep -q "rounds ok" "$TMP/r1.out" && grep -q "rounds ok" "$TMP/r2.out" || ok2=0
WHY="$(head -3 "$TMP/r1.err" "$TMP/r2.err")"
check "e2e clients across the restart finish correctly" test $ok2 = 1
gen_r=$(sed -n 's/.*generation \([0-9]*\), [0-9]* sites applied.*/\1/p' "$TMP/r1.err")
WHY="generation seen by the surviving client ${gen_r:-none}, before restart $gen_before"
check "e2e surviving client picks up the restarted daemon's tables" test "${gen_r:-0}" -gt "${gen_before:-0}"

# Clean shutdown; the segment stays usable.
rm -f "$TMP/state/state.pb"
kill -TERM "$DPID"; wait "$DPID"; rc=$?; DPID=
WHY="exit status $rc"
check "e2e SIGTERM stops the daemon cleanly" test $rc -eq 0
WHY="no state file after SIGTERM: $(tail -2 "$TMP/daemon.log")"
check "e2e state saved at shutdown" test -s "$TMP/state/state.pb"
HAKMEM_SHM=$SHM HAKMEM_STATS=1 "$A" 500 >"$TMP/n.out" 2>"$TMP/n.err"; rc=$?
WHY="rc $rc: $(grep 'daemon:' "$TMP/n.err")"
check "e2e client runs on the orphaned segment without a daemon" \
    bash -c "[ $rc -eq 0 ] && grep -q 'not registered with the daemon at .*: no daemon; retrying; segment $SHM, generation [1-9]' '$TMP/n.err'"
HAKMEM_SHM=/hkd-e2e-none-$$ HAKMEM_STATS=1 "$A" 300 >"$TMP/x.out" 2>"$TMP/x.err"; rc=$?
WHY="rc $rc: $(grep 'daemon:' "$TMP/x.err")"
check "e2e client without a segment runs on defaults, silently" \
    bash -c "[ $rc -eq 0 ] && grep -q 'no segment; running on defaults' '$TMP/x.err' && ! grep -q '(daemon)' '$TMP/x.err' && [ \$(grep -c 'hakmem: shm' '$TMP/x.err') -eq 0 ]"
HAKMEM_MODE=baseline HAKMEM_SHM=$SHM HAKMEM_STATS=1 "$A" 300 >"$TMP/y.out" 2>"$TMP/y.err"; rc=$?
WHY="rc $rc: $(grep 'daemon:' "$TMP/y.err")"
check "e2e HAKMEM_MODE=baseline ignores the segment" \
    bash -c "[ $rc -eq 0 ] && ! grep -q '(daemon)' '$TMP/y.err' && ! grep -q 'registered with' '$TMP/y.err'"

# ---- per-binary learning, with real processes ----
# knob_probe prints, first thing in main, the binary arm and knobs in force.
P=$T/knob_probe
: >"$TMP/daemon.log"
rm -rf "$TMP/state"
mkdir -p "$TMP/state"
if [ ! -x "$P" ]; then
    fail "binaries prerequisites" "$P not built"
elif ! start_daemon; then
    fail "binaries: daemon starts" "$(tail -3 "$TMP/daemon.log")"
else
    probe() { HAKMEM_SHM=$SHM HAKMEM_SOCKET=$TMP/ctl.sock timeout 60 "$P" "$@"; }
    bins_json() { timeout 10 "$CTL" --socket "$TMP/ctl.sock" --json binaries --exe knob_probe; }
    first=$(probe 150 | head -1)
    WHY="its first line: $first"
    check "binaries: a binary the daemon has never seen runs its own defaults (arm -1)" \
        bash -c "[[ '$first' == 'arm -1 knobs '* ]]"
    known() { bins_json | python3 -c "import json,sys; sys.exit(len(json.load(sys.stdin)['binaries'])!=1)"; }
    check "binaries: the daemon knows the binary after one run" wait_for 5 known
    H=$(bins_json | python3 -c "import json,sys; print(json.load(sys.stdin)['binaries'][0]['binary'])")
    gen=$(status_field generation)
    timeout 10 "$CTL" --socket "$TMP/ctl.sock" pin-binary "$H" lean >/dev/null
    published() { [ "$(status_field generation)" -gt "$gen" ]; }
    wait_for 5 published
    first=$(probe 150 | head -1)
    WHY="its first line: $first (lean: purge 0, retained 0, partial reuse 3, BigCache 0)"
    check "binaries: a new process of a known binary runs its published arm from the start of main" \
        bash -c "[[ '$first' == 'arm 1 knobs 0 0 3 0 '*' 0 0 0' ]]"
    timeout 10 "$CTL" --socket "$TMP/ctl.sock" unpin-binary "$H" >/dev/null
    sleep 0.5
    # Runs one after another, as a build or a batch would: each is one
    # clean observation of the arm it started on.
    mismatch=0
    for i in $(seq 20); do
        want=$(bins_json | python3 -c "import json,sys; b=json.load(sys.stdin)['binaries'][0]; print([a['name'] for a in b['arms']].index(b['arm']))")
        got=$(probe 150 | head -1 | awk '{print $2}')
        # -1 (no entry) is the default arm, 0.
        [ "$got" = -1 ] && got=0
        [ "$got" = "$want" ] || mismatch=$((mismatch + 1))
        sleep 0.25
    done
    WHY="$mismatch of 20 runs started on another arm than the one published when they began"
    check "binaries: every run starts on the arm published for its binary" test "$mismatch" -le 2
    # Back to back, as a batch runs them: the published arm moves while
    # runs are still going, and each keeps the arm it started on.
    ignored_before=$(bins_json | python3 -c "import json,sys; print(json.load(sys.stdin)['binaries'][0]['ignored'])")
    for i in $(seq 12); do probe 150 >/dev/null; done
    sleep 0.5
    bins_json >"$TMP/bins.json"
    WHY="$(cat "$TMP/bins.json"); ignored before the batch: $ignored_before"
    check "binaries: the learner tried every arm, each run counted once for the arm it ran" python3 -c '
import json, sys
b = json.load(open(sys.argv[1]))["binaries"][0]
runs = sum(a["observations"] for a in b["arms"])
sys.exit(not (all(a["observations"] >= 3 for a in b["arms"]) and b["ignored"] - int(sys.argv[2]) <= 1
              and runs == b["observations"] >= 30))' "$TMP/bins.json" "$ignored_before"
    timeout 10 "$CTL" --socket "$TMP/ctl.sock" binaries >"$TMP/bins.txt"
    check "binaries: hakmemctl shows it" grep -q "knob_probe .* runs" "$TMP/bins.txt"
    runs_of() { bins_json | python3 -c "import json,sys; b=json.load(sys.stdin)['binaries']; print(b[0]['observations'] if b else 0)"; }
    before=$(runs_of)
    kill -TERM "$DPID"; wait "$DPID"; DPID=
    : >"$TMP/daemon.log"
    start_daemon
    WHY="runs before the restart $before, after $(runs_of); $(grep -m1 'loaded learned state' "$TMP/daemon.log")"
    check "binaries: what the learner knew comes back after a restart (state file)" test "$(runs_of)" = "$before"
    kill -TERM "$DPID"; wait "$DPID"; DPID=
fi

echo "# daemon suite: $fails failed"
[ $fails -eq 0 ]
