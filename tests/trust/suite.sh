#!/usr/bin/env bash
# tests/trust: the trust boundary, with real users.
#   1. A hostile member of the group hakmem (a real non-root user made for
#      the test) tries every attack on the daemon's segment, lock and
#      socket while root's client processes run under a learning daemon.
#      Root's processes keep their published policy and exact counts,
#      publication goes on, a restart after kill -9 succeeds, the daemon
#      stays under 256 MB through a flood of 10^6 fake keys, and nothing a
#      member wrote reaches a terminal or a metrics scrape raw.
#   2. Processes: a fork-heavy threaded program (children fork while the
#      dynamic loader is busy) finishes under the daemon; a client in its
#      own PID namespace is counted exactly; an exec chain holds one
#      registration.
# Users (and the group hakmem, if missing) are made here and removed at exit.
# usage (from the repo root): bash tests/trust/suite.sh BUILD
set -u
source "$(dirname "$0")/../lib.sh"
testlib_begin trust "${1:-build}"

HAKMEMD=$BUILD/hakmemd
CTL=$BUILD/hakmemctl
LIB=$BUILD/libhakmem.so
HOSTILE=$BUILD/tests/trust/hostile
CLIENT_A=$BUILD/tests/daemon/e2e_client_a
CLIENT_B=$BUILD/tests/daemon/e2e_client_b
FORKER=$BUILD/tests/fork_dlopen
need "$HAKMEMD" "$CTL" "$LIB" "$HOSTILE" "$CLIENT_A" "$CLIENT_B" "$FORKER"
if [ "$(id -u)" != 0 ]; then
  skip "trust" "this suite makes users: it needs root"
  finish
  exit 0
fi

# Everything a member must reach lives under a world-readable directory.
make_tmpdir T hktrust
chmod 755 "$T"
SHM=/hktrust-$$
track_shm "$SHM"
SOCK=$T/ctl.sock
DPID=

need_group hakmem
HOSTILE_USER=hktr-h$$
MEMBER_USER=hktr-m$$
OUTSIDER=hktr-o$$
add_user "$HOSTILE_USER" -U -G hakmem
add_user "$MEMBER_USER" -U -G hakmem
add_user "$OUTSIDER" -U
as() { local u=$1; shift; setpriv --reuid="$u" --regid="$(id -g "$u")" --init-groups "$@"; }
H() { as "$HOSTILE_USER" timeout -k 5 120 "$HOSTILE" "$@"; }

start_daemon() {
  "$HAKMEMD" --foreground --shm "$SHM" --socket "$SOCK" --state-dir "$T/state" --interval 200 \
    >>"$T/daemon.log" 2>&1 &
  DPID=$!
  track_pid "$DPID"
  wait_for 10 grep -q "running:" "$T/daemon.log"
}
status_field() { "$CTL" --socket "$SOCK" --json status 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$DPID/status" 2>/dev/null; }

# (Started here, not inside check: check runs its command in a subshell.)
start_daemon
WHY="$(tail -3 "$T/daemon.log")"
check "the daemon starts as root on a private segment and socket" kill -0 "$DPID"
chmod 755 "$T"

# ---- root's processes: a learning daemon's real clients ----
ROOT_RUN_MS=16000
ROOT_PIDS=()
for i in 1 2 3 4; do
  HAKMEM_SHM=$SHM HAKMEM_SOCKET=$SOCK HAKMEM_STATS=1 timeout 120 "$CLIENT_A" $ROOT_RUN_MS \
    >"$T/root$i.out" 2>"$T/root$i.err" &
  track_pid $!
  ROOT_PIDS+=($!)
done
# Root's policy: the large site pinned to a known arm, published for domain 0.
wait_for 10 bash -c "'$CTL' --socket '$SOCK' --json sites | python3 -c \"import json,sys; j=json.load(sys.stdin); sys.exit(not any(s['location'].endswith('0x1484') or 'site_large' in s.get('function','') for s in j['sites']))\""
LARGE_KEY=$("$CTL" --socket "$SOCK" --json sites | python3 -c "
import json,sys
j=json.load(sys.stdin)
print(next(s['site'] for s in j['sites'] if 'site_large' in s.get('function','')))")
check "root pins its large site to arm 3" "$CTL" --socket "$SOCK" pin "$LARGE_KEY" 3
published() {
  "$CTL" --socket "$SOCK" --json thresholds --top 0 | python3 -c "
import json,sys
j=json.load(sys.stdin)
s=[x for x in j['sites'] if x['site']=='$LARGE_KEY']
sys.exit(0 if s and s[0].get('pinned_arm',-1)==3 else 1)"
}
check "root's pinned arm is published" wait_for 5 published

# ---- the attacks, as a real member ----
ATT=$T/attacks
mkdir -p "$ATT"
H segment-write "$SHM" >"$ATT/segment" 2>&1
check "a member cannot open, map, remap or chmod the segment writable" \
  bash -c "[ \$(grep -c '^refused' '$ATT/segment') -eq 4 ] && ! grep -q '^done' '$ATT/segment'"
# Someone outside the group: no read, no registration.
timeout 30 setpriv --reuid="$OUTSIDER" --regid="$(id -g "$OUTSIDER")" --init-groups "$HOSTILE" segment-write "$SHM" >"$ATT/outsider" 2>&1
check "a user outside the group cannot even read the segment" grep -q "^refused open read-only" "$ATT/outsider"
timeout 30 setpriv --reuid="$OUTSIDER" --regid="$(id -g "$OUTSIDER")" --init-groups "$HOSTILE" registrations "$SOCK" 1 0 >"$ATT/outsider-reg" 2>&1
check "a user outside the group cannot register a process" grep -q "done registrations: 0 accepted" "$ATT/outsider-reg"
H lock "$SHM" >"$ATT/lock" 2>&1
check "a member cannot open the daemon's lock file" grep -q "^refused open lock file" "$ATT/lock"
H register-bad "$SOCK" >"$ATT/bad" 2>&1
check "a member's unsealed, wrong-sized, pipe, plain-file and missing regions are all refused" \
  bash -c "[ \$(grep -c '^refused' '$ATT/bad') -eq 6 ] && ! grep -q '^done' '$ATT/bad'"
check "a member cannot pin a site" bash -c "! as_out=\$(setpriv --reuid=$HOSTILE_USER --regid=\$(id -g $HOSTILE_USER) --init-groups '$CTL' --socket '$SOCK' pin '$LARGE_KEY' 0 2>&1) && grep -qi 'root or the daemon' <<<\"\$as_out\""

# 1,100 processes of the member, each holding a registration.
timeout 120 setpriv --reuid="$HOSTILE_USER" --regid="$(id -g "$HOSTILE_USER")" --init-groups \
  "$HOSTILE" registrations "$SOCK" 1100 3 >"$ATT/regs" 2>&1
regs_capped() {
  read -r accepted refused < <(sed -n 's/done registrations: \([0-9]*\) accepted, \([0-9]*\) refused.*/\1 \2/p' "$ATT/regs")
  [ -n "$accepted" ] && [ "$accepted" -eq 1024 ] && [ "$refused" -ge 1 ]
}
WHY="$(cat "$ATT/regs")"
check "a member's registrations stop at its cap (1,024 per user)" regs_capped

# Long attacks, all at once, while root's clients run.
H hold-segment "$SHM" 14 >"$ATT/holdseg" 2>&1 &
track_pid $!
H hold-read "$SOCK" "$SHM" 14 >"$ATT/holdread" 2>&1 &
track_pid $!
H stall-seq "$SOCK" 14 >"$ATT/stall" 2>&1 &
track_pid $!
H mimic "$SOCK" "${LARGE_KEY%%:*}" "${LARGE_KEY##*:}" 14 >"$ATT/mimic" 2>&1 &
track_pid $!
H strings "$SOCK" 14 >"$ATT/strings" 2>&1 &
track_pid $!
H conns "$SOCK" 64 14 >"$ATT/conns" 2>&1 &
track_pid $!
H flood "$SOCK" 32 1000000 60 >"$ATT/flood" 2>&1 &
FLOOD=$!
track_pid "$FLOOD"

# While they run: the daemon's RSS, root's and another member's answers,
# and publication.
sleep 2
check "root is answered while a member holds 64 connections" timeout 5 "$CTL" --socket "$SOCK" status
check "another member is answered too" timeout 5 setpriv --reuid="$MEMBER_USER" --regid="$(id -g "$MEMBER_USER")" --init-groups "$CTL" --socket "$SOCK" status
# Two publications in a row: the second must overwrite the copy the
# member claims to be reading, which it may do once the read has been held
# longer than the reader timeout.
MEDIUM_KEY=$("$CTL" --socket "$SOCK" --json sites --top 0 --exe e2e_client_a | python3 -c "
import json,sys
j=json.load(sys.stdin)
print(next(s['site'] for s in j['sites'] if 'site_medium' in s.get('function','')))")
generation_past() { [ "$(status_field generation)" -gt "$1" ]; }
GEN1=$(status_field generation)
check "root pins another site while a member holds a read and a flush open" "$CTL" --socket "$SOCK" pin "$MEDIUM_KEY" 4
check "that is published" wait_for 8 generation_past "$GEN1"
GEN2=$(status_field generation)
check "root pins it again" "$CTL" --socket "$SOCK" pin "$MEDIUM_KEY" 6
check "and that is published too: the member's endless read holds nothing (reader timeout)" wait_for 8 generation_past "$GEN2"
peak=0
while kill -0 "$FLOOD" 2>/dev/null; do
  r=$(rss_kib)
  [ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r
  sleep 0.2
done
WHY="flood: $(cat "$ATT/flood"); daemon peak RSS ${peak} KiB"
check "the flood showed 10^6 fake keys" grep -q "done flood: 1000000 keys from 32 processes, 32 of them" "$ATT/flood"
WHY="daemon peak RSS $((peak / 1024)) MB during the flood"
check "the daemon stays under 256 MB through a flood of 10^6 fake keys" test "$peak" -lt $((256 * 1024))
echo "# daemon peak RSS during the flood: $((peak / 1024)) MB"

# ---- root's processes: their policy and their counts ----
for p in "${ROOT_PIDS[@]}"; do wait_pid "$p" 150; done
sleep 1
check "root's clients finished correctly" bash -c "[ \$(grep -l 'rounds ok' '$T'/root*.out | wc -l) -eq 4 ]"
check "root's clients ran root's pinned arm on the pinned site (exit report)" \
  bash -c "[ \$(grep -l 'e2e_client_a+0x1484 .* large>=1024K slots=0 thp=on (daemon)' '$T'/root*.err | wc -l) -eq 4 ]"
# The daemon's totals for root's medium and large sites equal what the
# clients counted themselves (those are never sampled).
counts_match() {
  python3 - "$T" "$1" <<'EOF'
import json, re, subprocess, sys, glob
tmp, ctl_json = sys.argv[1], sys.argv[2]
mine = {}
for f in glob.glob(tmp + "/root*.err"):
    for line in open(f, errors="replace"):
        # site module+offset allocs bytes frees size~ ...: medium and large
        # sites (64K and up) are never sampled, so their counts are exact.
        m = re.match(r"\s*\d+\s+e2e_client_a\+(0x[0-9a-f]+)\s+(\d+)\s+\S+\s+\d+\s+(\d+)K\s", line)
        if m and int(m.group(3)) >= 64:
            mine[int(m.group(1), 16)] = mine.get(int(m.group(1), 16), 0) + int(m.group(2))
j = json.loads(open(ctl_json).read())
theirs = {s["offset"]: s["allocs"] for s in j["sites"] if s.get("domain", 0) == 0 and s["exe"] == "e2e_client_a"}
big = mine
bad = {hex(o): (n, theirs.get(o)) for o, n in big.items() if theirs.get(o) != n}
print("clients", {hex(o): n for o, n in big.items()}, "daemon", {hex(o): theirs.get(o) for o in big})
sys.exit(1 if bad or len(big) < 3 else 0)
EOF
}
"$CTL" --socket "$SOCK" --json sites --top 0 >"$T/sites.json"
check "the daemon's totals for root's sites equal the clients' own counts" counts_match "$T/sites.json"

# ---- strings a member wrote ----
"$CTL" --socket "$SOCK" procs >"$T/procs.txt" 2>&1
"$CTL" --socket "$SOCK" sites --top 0 >"$T/sites.txt" 2>&1
check "no control byte a member wrote reaches hakmemctl's output" \
  bash -c "! LC_ALL=C grep -q \$'[\\x01-\\x08\\x0b-\\x1f\\x7f]' '$T/procs.txt' '$T/sites.txt'"
"$CTL" --socket "$SOCK" metrics >"$T/metrics.txt" 2>&1
if command -v promtool >/dev/null; then
  check "the metrics still parse (promtool)" promtool check metrics <"$T/metrics.txt"
else
  fail "the metrics still parse (promtool)" "promtool is not installed (make deps installs prometheus)"
fi

# ---- a restart after kill -9, with a member holding what it can ----
H hold-segment "$SHM" 10 >"$ATT/holdseg2" 2>&1 &
track_pid $!
sleep 0.3
kill_pid "$DPID"
DPID=
: >"$T/daemon.log"
start_daemon
WHY="$(tail -3 "$T/daemon.log")"
check "a restart after kill -9 succeeds while a member holds the segment" grep -q "running:" "$T/daemon.log"
check "the restarted daemon adopted the segment" grep -q "adopted segment $SHM" "$T/daemon.log"

# ---- processes ----
WHY="$(tail -3 "$T/fork.err" 2>/dev/null)"
check "1,000 forks while the loader is busy finish under the learning daemon" \
  bash -c "HAKMEM_SHM=$SHM HAKMEM_SOCKET=$SOCK LD_PRELOAD=$LIB timeout 180 '$FORKER' 1000 >'$T/fork.out' 2>'$T/fork.err' && grep -q '1000 forks done, 1000 children exited 0' '$T/fork.out'"

# A client in its own PID namespace: registered under the pid the daemon
# sees, its counts exact (binary B runs nowhere else in this suite).
if unshare --pid --fork --mount-proc true 2>/dev/null; then
  timeout 120 unshare --pid --fork --mount-proc env HAKMEM_SHM=$SHM HAKMEM_SOCKET=$SOCK HAKMEM_STATS=1 \
    timeout 60 "$CLIENT_B" 3000 >"$T/ns.out" 2>"$T/ns.err" &
  NSP=$!
  track_pid "$NSP"
  in_ns_registered() { "$CTL" --socket "$SOCK" --json procs | python3 -c "
import json,sys
j=json.load(sys.stdin)
sys.exit(0 if any(p['exe'].endswith('e2e_client_b') and p['pid']>1 for p in j) else 1)"; }
  check "a client in its own PID namespace is registered under the daemon's pid for it" wait_for 5 in_ns_registered
  wait_pid "$NSP" 90
  sleep 1
  "$CTL" --socket "$SOCK" --json sites --top 0 >"$T/sites-ns.json"
  ns_counts() {
    python3 - "$T" <<'EOF'
import json, re, sys
tmp = sys.argv[1]
mine = {}
for line in open(tmp + "/ns.err", errors="replace"):
    m = re.match(r"\s*\d+\s+e2e_client_b\+(0x[0-9a-f]+)\s+(\d+)\s+\S+\s+\d+\s+(\d+)K\s", line)
    if m and int(m.group(3)) >= 64:
        mine[int(m.group(1), 16)] = int(m.group(2))
j = json.load(open(tmp + "/sites-ns.json"))
theirs = {s["offset"]: s["allocs"] for s in j["sites"] if s["exe"] == "e2e_client_b"}
big = mine
print("client", big, "daemon", {o: theirs.get(o) for o in big})
sys.exit(1 if len(big) < 3 or any(theirs.get(o) != n for o, n in big.items()) else 0)
EOF
  }
  check "its counts are exact" ns_counts
else
  fail "PID namespace" "unshare --pid is not available here"
fi

# An exec chain: each image registers, the exec closes the one before.
n_procs() { "$CTL" --socket "$SOCK" --json procs | python3 -c "import json,sys; print(len(json.load(sys.stdin)))"; }
base=$(n_procs)
# (A sleep allocates only at its start: it registers then, not 10 ms on.)
HAKMEM_REGISTER_AFTER_MS=0 HAKMEM_SHM=$SHM HAKMEM_SOCKET=$SOCK LD_PRELOAD=$LIB bash -c 'exec bash -c "exec sleep 60"' &
EXP=$!
track_pid "$EXP"
one_registration() {
  "$CTL" --socket "$SOCK" --json procs | python3 -c "
import json,sys
j=json.load(sys.stdin)
mine=[p for p in j if p['pid']==$EXP]
print(mine)
sys.exit(0 if len(mine)==1 and mine[0]['exe'].endswith('sleep') else 1)"
}
# Each image registers in turn, as fast as the machine runs them: wait
# for the last one's, then for the earlier ones' to be gone.
check "bash -c 'exec bash -c \"exec sleep 60\"' holds one registration, the sleep's" wait_for 20 one_registration
one_more() { test "$(n_procs)" -eq $((base + 1)); }
wait_for 10 one_more
WHY="processes $(n_procs), before $base"
check "and only one more than before it" one_more
stop_pid "$EXP" 10

finish
