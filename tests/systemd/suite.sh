#!/usr/bin/env bash
# hakmemd under systemd:
#   1. the unit files pass systemd-analyze verify with no output at all
#   2. socket activation through systemd-socket-activate (the fd by name)
#   3. READY/STATUS/WATCHDOG/STOPPING through a fake service manager, and a
#      hung main loop (test hook HAKMEMD_TEST_HANG_FILE) stops the pings
#   4. a real `systemctl start` in a container booted with systemd as PID 1
#      (systemd-nspawn over the host's /usr): socket activation through
#      hakmemd.socket, hakmemctl status, StatusText, the journal, a client
#      process on the shared segment, and a hang killed by the watchdog and
#      restarted.  Skipped, loudly, only where no container can boot.
# usage (from the repo root): bash tests/systemd/suite.sh BUILD
set -u

BUILD=${1:-build}
if [ ! -d "$BUILD" ]; then
  echo "FAIL - systemd: build directory $BUILD missing"
  exit 1
fi
BUILD=$(cd "$BUILD" && pwd)
SRC=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$SRC/../.." && pwd)
JC="python3 $REPO/tests/ctl/jcheck.py"
T=$(mktemp -d /tmp/hksd.XXXXXX)
chmod 755 "$T"
PIDS=()
SHMS=()
NS=""
fails=0
passes=0

cleanup() {
  local p s
  if [ -n "$NS" ] && kill -0 "$NS" 2>/dev/null; then
    [ -n "${L:-}" ] && nsenter -t "$L" -a systemctl poweroff >/dev/null 2>&1
    for _ in $(seq 100); do kill -0 "$NS" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NS" 2>/dev/null
    wait "$NS" 2>/dev/null
  fi
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  for s in "${SHMS[@]}"; do rm -f "/dev/shm$s" "/dev/shm$s.lock"; done
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { echo "ok - $1"; passes=$((passes + 1)); }
bad() { echo "FAIL - $1: $2"; fails=$((fails + 1)); }
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$(echo "$out" | tail -3 | tr '\n' ' ')"; fi
}
wait_for() {
  local n=$(($1 * 10))
  shift
  while [ "$n" -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; n=$((n - 1)); done
  return 1
}

for f in hakmemd hakmemctl hakmemd.service hakmemd.socket hakmem-sysusers.conf hakmem-tmpfiles.conf; do
  if [ ! -e "$BUILD/$f" ]; then
    bad "systemd files" "$BUILD/$f missing (make all first)"
    echo "systemd: $passes passed, $fails failed"
    exit 1
  fi
done
CTL=$BUILD/hakmemctl

# ---------------------------------------------------------------- 1. verify
# systemd-analyze exits 0 on unknown keys and bad values and only warns, so
# any output at all is a failure.
if systemd-analyze verify --man=no "$BUILD/hakmemd.service" "$BUILD/hakmemd.socket" >"$T/verify.out" 2>&1 \
   && [ ! -s "$T/verify.out" ]; then
  ok "systemd-analyze verify: hakmemd.service and hakmemd.socket, no warnings"
else
  bad "systemd-analyze verify" "$(head -c 600 "$T/verify.out")"
fi
# A unit file with a mistake must make the same check fail (the check can fail).
sed 's/^Type=notify/Type=notifyy/' "$BUILD/hakmemd.service" >"$T/hakmemd.service"
cp "$BUILD/hakmemd.socket" "$T/"
systemd-analyze verify --man=no "$T/hakmemd.service" "$T/hakmemd.socket" >"$T/verify-bad.out" 2>&1
check "systemd-analyze verify reports a broken unit (control)" test -s "$T/verify-bad.out"
rm -f "$T/hakmemd.service" "$T/hakmemd.socket"
if command -v systemd-sysusers >/dev/null; then
  check "sysusers snippet parses" bash -c "systemd-sysusers --dry-run '$BUILD/hakmem-sysusers.conf' 2>&1 | grep -vq 'Failed\\|rror'"
fi

# ---------------------------------------------------------------- install
# make install's script into a DESTDIR: every file, a usable pkg-config
# file (a program builds and runs against the installed library), the unit
# rendered for the prefix, man pages that man(1) formats without warnings.
IR=$T/root
if PREFIX=/usr DESTDIR="$IR" bash "$REPO/scripts/install.sh" "$BUILD" >"$T/install.log" 2>&1; then
  ok "scripts/install.sh PREFIX=/usr DESTDIR=..."
  missing=""
  for f in usr/lib/libhakmem.so usr/lib/libhakmem.a usr/include/hakmem.h usr/lib/pkgconfig/hakmem.pc \
           usr/sbin/hakmemd usr/bin/hakmemctl usr/lib/systemd/system/hakmemd.service \
           usr/lib/systemd/system/hakmemd.socket usr/lib/sysusers.d/hakmem.conf \
           usr/lib/tmpfiles.d/hakmem.conf usr/share/man/man8/hakmemd.8 usr/share/man/man1/hakmemctl.1; do
    [ -e "$IR/$f" ] || missing="$missing $f"
  done
  if [ -z "$missing" ]; then ok "install: every file in place"; else bad "install: every file in place" "missing:$missing"; fi
  sed "s|^ExecStart=$BUILD/hakmemd |ExecStart=/usr/sbin/hakmemd |" "$BUILD/hakmemd.service" >"$T/expected.service"
  check "install: the unit's ExecStart is the installed daemon" \
    cmp "$T/expected.service" "$IR/usr/lib/systemd/system/hakmemd.service"
  printf '%s\n' '#include <hakmem.h>' '#include <stdio.h>' '#include <stdlib.h>' \
    'int main(void) {' '    void *p = malloc(3 << 20);' '    hakmem_stats st;' '    hakmem_get_stats(&st);' \
    '    free(p);' '    printf("%s %llu\n", HAKMEM_VERSION, (unsigned long long)st.large_allocs);' \
    '    return st.large_allocs ? 0 : 1;' '}' >"$T/pc.c"
  PC_FLAGS=$(PKG_CONFIG_PATH="$IR/usr/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$IR" pkg-config --cflags --libs hakmem 2>&1)
  # shellcheck disable=SC2086
  if cc -o "$T/pc" "$T/pc.c" $PC_FLAGS >"$T/pc.log" 2>&1 \
     && HAKMEM_SHM=/hksd-none-$$ LD_LIBRARY_PATH="$IR/usr/lib" "$T/pc" >"$T/pc.out" 2>&1; then
    ok "install: pkg-config --cflags --libs hakmem builds a program that runs on the installed library"
  else
    bad "install: pkg-config builds a program" "flags '$PC_FLAGS'; $(cat "$T/pc.log" "$T/pc.out" 2>/dev/null | head -3)"
  fi
  for m in usr/share/man/man8/hakmemd.8 usr/share/man/man1/hakmemctl.1; do
    out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$IR/$m" 2>&1 >/dev/null)
    if [ -z "$out" ]; then ok "man page formats without warnings: ${m##*/}"; else bad "man page ${m##*/}" "$out"; fi
  done
else
  bad "scripts/install.sh" "$(tail -3 "$T/install.log")"
fi

# ---------------------------------------------------------------- 2. socket activation
SA=$T/sa
mkdir -p "$SA"
SHM_SA=/hksd-sa-$$
SHMS+=("$SHM_SA")
systemd-socket-activate -l "$SA/ctl.sock" --fdname=ctl \
  env HAKMEMD_LOG=stderr "$BUILD/hakmemd" --foreground --shm "$SHM_SA" --socket "$SA/ctl.sock" \
  --state-dir "$SA/state" --interval 100 >"$SA/out" 2>"$SA/log" &
SAP=$!
PIDS+=("$SAP")
if wait_for 10 test -S "$SA/ctl.sock"; then
  # Without --accept the daemon is exec'd on the first connection.
  check "socket activation: hakmemctl status through the passed socket" \
    bash -c "'$CTL' --socket '$SA/ctl.sock' --json --timeout 10000 status | $JC 'j[\"segment\"]==\"$SHM_SA\"'"
  check "the daemon used the passed socket, not its own" grep -q "control socket passed by systemd" "$SA/log"
  check "socket activation: the daemon is the activated process" bash -c "'$CTL' --socket '$SA/ctl.sock' --json status | $JC 'j[\"pid\"]==$SAP'"
else
  bad "systemd-socket-activate listens" "$(cat "$SA/log")"
fi
kill -TERM "$SAP" 2>/dev/null
wait "$SAP" 2>/dev/null

# ---------------------------------------------------------------- 3. fake manager
FM=$T/fm
mkdir -p "$FM"
SHM_FM=/hksd-fm-$$
SHMS+=("$SHM_FM")
python3 "$SRC/fake_manager.py" "$FM/run.json" 2000000 3 -- \
  env HAKMEMD_LOG=stderr "$BUILD/hakmemd" --foreground --shm "$SHM_FM" --socket "$FM/ctl.sock" \
  --state-dir "$FM/state" --interval 100 2>"$FM/log"
if [ -s "$FM/run.json" ]; then
  R="$FM/run.json"
  check "notify: every datagram comes from the daemon's pid" $JC 'j["events"] and all(e[1]==j["pid"] for e in j["events"])' <"$R"
  check "notify: READY=1 once" $JC '[e[2] for e in j["events"]].count("READY=1")==1' <"$R"
  check "notify: STATUS= every interval with processes/sites/generation" \
    $JC 'len([e for e in j["events"] if e[2].startswith("STATUS=") and "processes" in e[2] and "sites" in e[2] and "generation" in e[2]])>=5' <"$R"
  check "notify: WATCHDOG=1 pings, each within WATCHDOG_USEC of the last" \
    $JC 'len([e for e in j["events"] if e[2]=="WATCHDOG=1"])>=3 and max(b-a for a,b in zip(*(lambda t:(t,t[1:]))([e[0] for e in j["events"] if e[2] in ("READY=1","WATCHDOG=1")])))<2.0' <"$R"
  check "notify: STOPPING=1 on SIGTERM, then a clean exit" \
    $JC '[e[2] for e in j["events"]][-1]=="STOPPING=1" and j["exit"]==0' <"$R"
else
  bad "fake manager run" "no result; log: $(tail -5 "$FM/log")"
fi
# At 65,536 sites with --metrics-file (a 200 MB exposition every interval)
# the main loop still pings the watchdog at least every half period: the
# file is written on its own thread, a write still running when the next is
# due is skipped, and the interval keeps its pace.
W=$FM/big
mkdir -p "$W/state" "$W/prom"
python3 "$REPO/tests/ctl/gen_policy.py" 65536 "$W/state/state.pb" --state
SHM_W=/hksd-wd-$$
SHMS+=("$SHM_W")
python3 "$SRC/fake_manager.py" "$W/run.json" 2000000 20 -- \
  env HAKMEMD_LOG=stderr "$BUILD/hakmemd" --foreground --shm "$SHM_W" --socket "$W/ctl.sock" \
  --state-dir "$W/state" --interval 1000 --metrics-file "$W/prom/hakmem.prom" 2>"$W/log" &
FMP=$!
PIDS+=("$FMP")
st() { timeout 20 "$CTL" --socket "$W/ctl.sock" --timeout 10000 --json status 2>/dev/null; }
iv1="" iv2=""
if wait_for 10 st; then
  sleep 2
  iv1="$(st | $JC 'j["intervals"]' --print) $(date +%s.%N)"
  sleep 8
  iv2="$(st | $JC 'j["intervals"]' --print) $(date +%s.%N)"
  last_ns=$(st | $JC 'j["last_interval_ns"]' --print)
  # The writer's own counts, live (the file holds those of when it began).
  timeout 60 "$CTL" --socket "$W/ctl.sock" --timeout 30000 metrics | grep '^hakmem_metrics_file_' >"$W/writer.txt"
fi
timeout 60 tail --pid="$FMP" -f /dev/null
wait "$FMP" 2>/dev/null
R="$W/run.json"
if [ -s "$R" ] && [ -n "$iv2" ]; then
  gaps=$($JC '(lambda t: "%.3f %d" % (max(b - a for a, b in zip(t, t[1:])), len(t)))([e[0] for e in j["events"] if e[2] in ("READY=1", "WATCHDOG=1")])' --print <"$R")
  read -r n1 t1 <<<"$iv1"
  read -r n2 t2 <<<"$iv2"
  echo "info - 65,536 sites, --metrics-file, WATCHDOG_USEC=2 s: largest gap between pings ${gaps% *} s over ${gaps#* } pings;" \
    "$((n2 - n1)) intervals in $(python3 -c "print(round($t2 - $t1, 2))") s (interval 1000 ms, the last took $((last_ns / 1000)) us)"
  echo "info - metrics file writer: $(tr '\n' ' ' <"$W/writer.txt")"
  check "watchdog at 65,536 sites with --metrics-file: pings never more than half of WATCHDOG_USEC apart" \
    $JC 'max(b-a for a,b in zip(*(lambda t:(t,t[1:]))([e[0] for e in j["events"] if e[2] in ("READY=1","WATCHDOG=1")])))<1.0 and [e[2] for e in j["events"]][-1]=="STOPPING=1" and j["exit"]==0' <"$R"
  check "the intervals keep their pace while the metrics file is written" \
    python3 -c "import sys; sys.exit(not ($n2 - $n1 >= 0.8 * ($t2 - $t1)))"
  check "the metrics file holds all 65,536 sites" bash -c "[ \$(grep -c '^hakmem_site_alloc_bytes_total{' '$W/prom/hakmem.prom') = 65536 ]"
  # (Skips happen only when a write outlasts the interval, as 200 MB do.)
  check "a write still running when the next is due is skipped, counted and logged once" \
    bash -c "grep -q '^hakmem_metrics_file_writes_total{result=\"ok\"} [1-9]' '$W/writer.txt' && { grep -q '^hakmem_metrics_file_last_write_duration_seconds 0\\.' '$W/writer.txt' || { grep -q '^hakmem_metrics_file_writes_total{result=\"skipped\"} [1-9]' '$W/writer.txt' && [ \$(grep -c 'a write still runs when the next is due' '$W/log') = 1 ]; }; }"
else
  bad "fake manager run at 65,536 sites" "no result; log: $(tail -5 "$W/log")"
fi
rm -rf "$W"

python3 "$SRC/fake_manager.py" "$FM/hang.json" 1000000 4 --hang-file "$FM/hang" --hang-after 1.0 -- \
  env HAKMEMD_LOG=stderr "$BUILD/hakmemd" --foreground --shm "$SHM_FM" --socket "$FM/ctl2.sock" \
  --state-dir "$FM/state" --interval 100 2>"$FM/hang.log"
if [ -s "$FM/hang.json" ]; then
  R="$FM/hang.json"
  check "hang hook: the daemon consumed the hang file and logged it" \
    bash -c "$JC 'j[\"hang_file_consumed\"]' < '$R' && grep -q 'test hang requested' '$FM/hang.log'"
  check "hang hook: pings before the hang, then silence longer than the watchdog" \
    $JC 'any(e[2]=="WATCHDOG=1" and e[0]<j["hang_at"] for e in j["events"]) and all(e[0]<j["hang_at"]+0.5 for e in j["events"] if e[2]=="WATCHDOG=1") and j["exit"]==-9' <"$R"
else
  bad "fake manager hang run" "no result; log: $(tail -5 "$FM/hang.log")"
fi

# ---------------------------------------------------------------- 4. container
skip_reason=""
command -v systemd-nspawn >/dev/null || skip_reason="systemd-nspawn is not installed (package systemd-container)"
[ -z "$skip_reason" ] && ! mountpoint -q /sys/fs/cgroup && skip_reason="/sys/fs/cgroup is not mounted"
[ -z "$skip_reason" ] && [ "$(id -u)" != 0 ] && skip_reason="not root"
if [ -n "$skip_reason" ]; then
  echo "######################################################################"
  echo "# SKIPPED: the real 'systemctl start hakmemd' test in a container:"
  echo "#   $skip_reason"
  echo "######################################################################"
else
  C=$T/ct
  mkdir -p "$C/dropin"
  # The unit as installed, ExecStart under /opt/hakmem (a path no
  # ProtectHome= or ProtectSystem= can hide, wherever the build tree is).
  sed 's|@SBINDIR@|/opt/hakmem/bin|g' "$REPO/systemd/hakmemd.service.in" >"$C/hakmemd.service"
  # Test-only drop-in: a short watchdog and the hang hook.
  cat >"$C/dropin/test.conf" <<'EOF'
[Service]
WatchdogSec=2s
Environment=HAKMEMD_TEST_HANG_FILE=/run/hakmem/hang
EOF
  systemd-nspawn -D / --volatile=yes --register=no --keep-unit -q \
    --bind-ro="$BUILD":/opt/hakmem/bin \
    --bind-ro="$C/hakmemd.service":/etc/systemd/system/hakmemd.service \
    --bind-ro="$BUILD/hakmemd.socket":/etc/systemd/system/hakmemd.socket \
    --bind-ro="$C/dropin":/etc/systemd/system/hakmemd.service.d \
    --bind-ro="$BUILD/hakmem-sysusers.conf":/etc/sysusers.d/hakmem.conf \
    --bind-ro="$BUILD/hakmem-tmpfiles.conf":/etc/tmpfiles.d/hakmem.conf \
    --boot -- systemd.firstboot=off systemd.unit=basic.target >"$C/boot.log" 2>&1 &
  NS=$!
  L=""
  for _ in $(seq 200); do
    L=$(ps --ppid "$NS" -o pid=,comm= 2>/dev/null | awk '$2=="systemd"{print $1}')
    [ -n "$L" ] && break
    kill -0 "$NS" 2>/dev/null || break
    sleep 0.05
  done
  IN() { nsenter -t "$L" -a "$@"; }
  booted=0
  if [ -n "$L" ]; then
    for _ in $(seq 600); do
      st=$(IN systemctl is-system-running 2>/dev/null)
      case "$st" in running|degraded) booted=1; break ;; esac
      sleep 0.1
    done
  fi
  if [ "$booted" != 1 ]; then
    bad "container boots with systemd as PID 1" "state '${st:-none}'; $(tail -5 "$C/boot.log" | tr '\n' ' ')"
  else
    ok "container boots with systemd as PID 1"
    check "sysusers created user and group hakmem" IN getent passwd hakmem
    check "systemctl start hakmemd.socket" IN systemctl start hakmemd.socket
    check "socket unit made /run/hakmem/ctl.sock 0660 hakmem:hakmem" \
      bash -c "[ \"\$(nsenter -t $L -a stat -c '%a %U %G' /run/hakmem/ctl.sock)\" = '660 hakmem hakmem' ]"
    check "hakmemctl status answers through the socket unit (activates hakmemd)" \
      bash -c "nsenter -t $L -a /opt/hakmem/bin/hakmemctl --timeout 20000 --json status | $JC 'j[\"segment\"]==\"/hakmem\"'"
    check "systemctl start hakmemd (already active: a no-op that succeeds)" IN systemctl start hakmemd
    check "hakmemd.service is active" IN systemctl is-active hakmemd
    check "hakmemd runs as user hakmem" bash -c "[ \"\$(nsenter -t $L -a ps -o user= -p \$(nsenter -t $L -a systemctl show -p MainPID --value hakmemd))\" = hakmem ]"
    check "StatusText reports processes, sites, generation" \
      wait_for 10 bash -c "nsenter -t $L -a systemctl show -p StatusText --value hakmemd | grep -q 'processes, .* sites, generation'"
    check "the watchdog is armed" bash -c "[ \"\$(nsenter -t $L -a systemctl show -p WatchdogUSec --value hakmemd)\" = 2s ]"
    check "the daemon's log lines are in journalctl -u hakmemd" \
      wait_for 10 bash -c "nsenter -t $L -a journalctl -u hakmemd -o cat | grep -q 'control socket passed by systemd' && nsenter -t $L -a journalctl -u hakmemd -o cat | grep -q '^running: shm /hakmem'"
    check "log levels reach the journal as priorities" \
      bash -c "nsenter -t $L -a journalctl -u hakmemd -p info -o cat | grep -q 'running: shm'"
    check "the host reaches the control socket through /proc/PID/root" \
      "$CTL" --socket "/proc/$L/root/run/hakmem/ctl.sock" status
    check "the segment is readable by group hakmem only, written by the daemon: mode 0640" \
      bash -c "[ \"\$(nsenter -t $L -a stat -c '%a %U %G' /dev/shm/hakmem)\" = '640 hakmem hakmem' ]"
    if [ -e "$BUILD/libhakmem.so" ] && [ -e "$BUILD/tests/ctl/alloc_sites" ]; then
      IN env LD_PRELOAD=/opt/hakmem/bin/libhakmem.so /opt/hakmem/bin/tests/ctl/alloc_sites 1 >/dev/null 2>&1
      check "a client process reaches the sandboxed daemon's segment" \
        wait_for 10 bash -c "nsenter -t $L -a /opt/hakmem/bin/hakmemctl --json sites --exe alloc_sites | $JC 'len(j[\"sites\"])>=3'"
    fi

    # Hang the main loop: the watchdog kills it (SIGABRT) and Restart=
    # brings it back with a new pid; the socket stays and answers.
    PID1=$(IN systemctl show -p MainPID --value hakmemd)
    NR1=$(IN systemctl show -p NRestarts --value hakmemd)
    IN touch /run/hakmem/hang
    if wait_for 30 bash -c "[ \"\$(nsenter -t $L -a systemctl show -p NRestarts --value hakmemd)\" -gt '$NR1' ] && nsenter -t $L -a systemctl is-active hakmemd"; then
      ok "a hung hakmemd is killed by the watchdog and restarted"
    else
      bad "watchdog restart" "NRestarts $(IN systemctl show -p NRestarts --value hakmemd), state $(IN systemctl is-active hakmemd)"
    fi
    check "the journal records the watchdog timeout and the test hang" \
      bash -c "nsenter -t $L -a journalctl -u hakmemd -o cat | grep -qi 'watchdog timeout' && nsenter -t $L -a journalctl -u hakmemd -o cat | grep -q 'test hang requested'"
    check "the restarted daemon has a new pid and answers" \
      bash -c "[ \"\$(nsenter -t $L -a systemctl show -p MainPID --value hakmemd)\" != '$PID1' ] && nsenter -t $L -a /opt/hakmem/bin/hakmemctl --timeout 20000 status >/dev/null"
    check "systemctl stop hakmemd: STOPPING, clean exit" \
      bash -c "nsenter -t $L -a systemctl stop hakmemd && nsenter -t $L -a journalctl -u hakmemd -o cat | grep -q '^stopped'"
  fi
  [ -n "$L" ] && IN systemctl poweroff >/dev/null 2>&1
  for _ in $(seq 150); do kill -0 "$NS" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$NS" 2>/dev/null
  wait "$NS" 2>/dev/null
  NS=""
fi

echo "systemd: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
