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
source "$(dirname "$0")/../lib.sh"
testlib_begin systemd "${1:-build}"
SRC=$REPO/tests/systemd
JC="python3 $REPO/tests/ctl/jcheck.py"
for f in hakmemd hakmemctl hakmemd.service hakmemd.socket hakmem-sysusers.conf hakmem-tmpfiles.conf; do
  need "$BUILD/$f"
done
for c in systemd-analyze systemd-sysusers systemd-socket-activate systemd-nspawn nsenter man; do
  command -v "$c" >/dev/null || { fail "prerequisites" "$c is not installed (make deps installs it)"; finish; exit 1; }
done
make_tmpdir T hksd
chmod 755 "$T"
NS=""
L=""
# The container, when one was booted (NS: systemd-nspawn's pid, L: its
# systemd's): powered off from inside, else stopped by nspawn (SIGTERM),
# else killed.
shut_container() {
  local i
  [ -n "$NS" ] || return 0
  [ -n "$L" ] && timeout 20 nsenter -t "$L" -a systemctl poweroff >/dev/null 2>&1
  for ((i = 0; i < 150; i++)); do kill -0 "$NS" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$NS" 10
  NS=""
}
at_exit shut_container
CTL=$BUILD/hakmemctl

# ---------------------------------------------------------------- 1. verify
# systemd-analyze exits 0 on unknown keys and bad values and only warns, so
# any output at all is a failure.
if timeout 60 systemd-analyze verify --man=no "$BUILD/hakmemd.service" "$BUILD/hakmemd.socket" >"$T/verify.out" 2>&1 \
   && [ ! -s "$T/verify.out" ]; then
  ok "systemd-analyze verify: hakmemd.service and hakmemd.socket, no warnings"
else
  fail "systemd-analyze verify" "$(head -c 600 "$T/verify.out")"
fi
# A unit file with a mistake must make the same check fail (the check can fail).
sed 's/^Type=notify/Type=notifyy/' "$BUILD/hakmemd.service" >"$T/hakmemd.service"
cp "$BUILD/hakmemd.socket" "$T/"
timeout 60 systemd-analyze verify --man=no "$T/hakmemd.service" "$T/hakmemd.socket" >"$T/verify-bad.out" 2>&1
check "systemd-analyze verify reports a broken unit (control)" test -s "$T/verify-bad.out"
rm -f "$T/hakmemd.service" "$T/hakmemd.socket"
# systemd-sysusers against an empty root: exit 0, the user and group
# created, and not one diagnostic ("FILE:LINE: ...") about any line.
sysusers_clean() {
  local root out rc
  root=$(mktemp -d "$T/sysroot.XXXXXX")
  mkdir -p "$root/etc"
  out=$(timeout 30 systemd-sysusers --root="$root" --dry-run "$1" 2>&1)
  rc=$?
  echo "$out"
  [ "$rc" -eq 0 ] && grep -q "^Creating group 'hakmem'" <<<"$out" && grep -q "^Creating user 'hakmem'" <<<"$out" &&
    ! grep -qE ':[0-9]+: |[Ff]ailed|[Ee]rror|[Ww]arning' <<<"$out"
}
check "sysusers snippet: the user and group hakmem, no diagnostic" sysusers_clean "$BUILD/hakmem-sysusers.conf"
for bogus in 'x hakmem - -' 'u bad:name - "y"' 'g hakmem 500-300'; do
  { cat "$BUILD/hakmem-sysusers.conf"; echo "$bogus"; } >"$T/sysusers-bad.conf"
  if sysusers_clean "$T/sysusers-bad.conf" >/dev/null; then
    fail "sysusers check fails on a bogus line (control): '$bogus'" "passed"
  else
    ok "sysusers check fails on a bogus line (control): '$bogus'"
  fi
done

# ---------------------------------------------------------------- install
# make install into a DESTDIR, as a packager runs it: every file, a usable
# pkg-config file (a program builds and runs against the installed
# library), the unit rendered for the prefix, man pages that man(1) formats
# without warnings, and one version everywhere.  (It renders the build's
# hakmem.pc for /usr; that is put back for the default prefix after.)
IR=$T/root
VERSION=$(sed -n 's/^#define HAKMEM_VERSION "\(.*\)"/\1/p' "$REPO/include/hakmem.h")
# (Not a job of the make that may be running this suite.)
submake() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL timeout 300 make -s -C "$REPO" BUILD="$BUILD" "$@"; }
if submake install PREFIX=/usr DESTDIR="$IR" >"$T/install.log" 2>&1; then
  ok "make install PREFIX=/usr DESTDIR=..."
  missing=""
  for f in usr/lib/libhakmem.so usr/lib/libhakmem.a usr/include/hakmem.h usr/lib/pkgconfig/hakmem.pc \
           usr/sbin/hakmemd usr/bin/hakmemctl usr/lib/systemd/system/hakmemd.service \
           usr/lib/systemd/system/hakmemd.socket usr/lib/sysusers.d/hakmem.conf \
           usr/lib/tmpfiles.d/hakmem.conf usr/share/man/man8/hakmemd.8 usr/share/man/man1/hakmemctl.1; do
    [ -e "$IR/$f" ] || missing="$missing $f"
  done
  if [ -z "$missing" ]; then ok "install: every file in place"; else fail "install: every file in place" "missing:$missing"; fi
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
    fail "install: pkg-config builds a program" "flags '$PC_FLAGS'; $(cat "$T/pc.log" "$T/pc.out" 2>/dev/null | head -3)"
  fi
  for m in usr/share/man/man8/hakmemd.8 usr/share/man/man1/hakmemctl.1; do
    out=$(LC_ALL=C.UTF-8 MANWIDTH=80 timeout 60 man --warnings -l "$IR/$m" 2>&1 >/dev/null)
    if [ -z "$out" ]; then ok "man page formats without warnings: ${m##*/}"; else fail "man page ${m##*/}" "$out"; fi
  done
  WHY="include/hakmem.h says ${VERSION:-nothing}: $("$IR/usr/sbin/hakmemd" --version 2>&1); $("$IR/usr/bin/hakmemctl" --version 2>&1); $(head -1 "$IR/usr/share/man/man8/hakmemd.8")"
  check "one version everywhere: hakmemd and hakmemctl --version, both man pages, pkg-config" bash -c "
    [ -n '$VERSION' ] && [ \"\$('$IR/usr/sbin/hakmemd' --version)\" = 'hakmemd $VERSION' ] &&
    '$IR/usr/bin/hakmemctl' --version | grep -q '^hakmemctl $VERSION ' &&
    head -1 '$IR/usr/share/man/man8/hakmemd.8' | grep -qF '\"hakmem $VERSION\"' &&
    head -1 '$IR/usr/share/man/man1/hakmemctl.1' | grep -qF '\"hakmem $VERSION\"' &&
    grep -qx 'Version: $VERSION' '$IR/usr/lib/pkgconfig/hakmem.pc'"
  # The script refuses a pkg-config file made for another prefix (the
  # build's now says /usr).
  PREFIX=/usr/local DESTDIR="$T/root2" bash "$REPO/scripts/install.sh" "$BUILD" >/dev/null 2>"$T/install2.err"
  rc=$?
  WHY="exit $rc: $(cat "$T/install2.err")"
  check "install refuses a pkg-config file rendered for another prefix, in one line" \
    bash -c "[ $rc -ne 0 ] && [ \$(wc -l <'$T/install2.err') = 1 ] &&
             grep -q 'hakmem.pc says libdir=/usr/lib, not /usr/local/lib' '$T/install2.err'"
else
  fail "make install" "$(tail -3 "$T/install.log")"
fi
submake "$BUILD/hakmem.pc" >/dev/null 2>&1 ||
  fail "the build's hakmem.pc rendered again for the default prefix" "make failed"
# What a packager's `make` and `make install` run: the product, nothing of
# the tests (no cmocka, no sanitizer, no fuzzer).
submake -n BUILD="$T/fresh" all install DESTDIR="$T/root3" >"$T/plan.txt" 2>&1
WHY="$(grep -m3 -E 'cmocka|fsanitize|/tests/|/fuzz/' "$T/plan.txt")"
check "make and make install build the product only (nothing of the tests, cmocka or sanitizers)" \
  bash -c "grep -q 'hakmemd' '$T/plan.txt' && ! grep -qE 'cmocka|fsanitize|/tests/|/fuzz/' '$T/plan.txt'"
# On a machine without a build dependency (dpkg's database without
# liburcu-dev, in a mount namespace of its own), make stops at once with
# one line that names it and says make deps.
python3 -c '
import re, sys
s = open("/var/lib/dpkg/status").read()
open(sys.argv[1], "w").write("\n\n".join(b for b in s.split("\n\n") if not re.match(r"Package: liburcu-dev\n", b)))' "$T/status"
timeout 60 unshare -m --propagation private bash -c "mount --bind '$T/status' /var/lib/dpkg/status &&
  env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C '$REPO' BUILD='$T/fresh'" >"$T/nodeps.out" 2>&1
rc=$?
WHY="exit $rc: $(cat "$T/nodeps.out")"
check "make without liburcu-dev stops in one line naming it and make deps" \
  bash -c "[ $rc -ne 0 ] && [ \$(grep -vc '^make: Entering\|^make: Leaving' '$T/nodeps.out') = 1 ] &&
           grep -q 'missing build dependencies: liburcu-dev; install them with .make deps.' '$T/nodeps.out' && ! test -e '$T/fresh'"

# ---------------------------------------------------------------- 2. socket activation
SA=$T/sa
mkdir -p "$SA"
SHM_SA=/hksd-sa-$$
track_shm "$SHM_SA"
systemd-socket-activate -l "$SA/ctl.sock" --fdname=ctl \
  env HAKMEMD_LOG=stderr "$BUILD/hakmemd" --foreground --shm "$SHM_SA" --socket "$SA/ctl.sock" \
  --state-dir "$SA/state" --interval 100 >"$SA/out" 2>"$SA/log" &
SAP=$!
track_pid "$SAP"
if wait_for 10 test -S "$SA/ctl.sock"; then
  # Without --accept the daemon is exec'd on the first connection.
  check "socket activation: hakmemctl status through the passed socket" \
    bash -c "'$CTL' --socket '$SA/ctl.sock' --json --timeout 10000 status | $JC 'j[\"segment\"]==\"$SHM_SA\"'"
  check "the daemon used the passed socket, not its own" grep -q "control socket passed by systemd" "$SA/log"
  check "socket activation: the daemon is the activated process" bash -c "'$CTL' --socket '$SA/ctl.sock' --json status | $JC 'j[\"pid\"]==$SAP'"
else
  fail "systemd-socket-activate listens" "$(cat "$SA/log")"
fi
stop_pid "$SAP"

# ---------------------------------------------------------------- 3. fake manager
FM=$T/fm
mkdir -p "$FM"
SHM_FM=/hksd-fm-$$
track_shm "$SHM_FM"
timeout 60 python3 "$SRC/fake_manager.py" "$FM/run.json" 2000000 3 -- \
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
  fail "fake manager run" "no result; log: $(tail -5 "$FM/log")"
fi
# At 65,536 sites with --metrics-file (a 200 MB exposition every interval)
# the main loop still pings the watchdog at least every half period: the
# file is written on its own thread, a write still running when the next is
# due is skipped, and the interval keeps its pace.
W=$FM/big
mkdir -p "$W/state" "$W/prom"
python3 "$REPO/tests/ctl/gen_policy.py" 65536 "$W/state/state.pb" --state
SHM_W=/hksd-wd-$$
track_shm "$SHM_W"
timeout 120 python3 "$SRC/fake_manager.py" "$W/run.json" 2000000 20 -- \
  env HAKMEMD_LOG=stderr "$BUILD/hakmemd" --foreground --shm "$SHM_W" --socket "$W/ctl.sock" \
  --state-dir "$W/state" --interval 1000 --metrics-file "$W/prom/hakmem.prom" 2>"$W/log" &
FMP=$!
track_pid "$FMP"
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
wait_pid "$FMP" 60
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
  fail "fake manager run at 65,536 sites" "no result; log: $(tail -5 "$W/log")"
fi
rm -rf "$W"

timeout 60 python3 "$SRC/fake_manager.py" "$FM/hang.json" 1000000 4 --hang-file "$FM/hang" --hang-after 1.0 -- \
  env HAKMEMD_LOG=stderr "$BUILD/hakmemd" --foreground --shm "$SHM_FM" --socket "$FM/ctl2.sock" \
  --state-dir "$FM/state" --interval 100 2>"$FM/hang.log"
if [ -s "$FM/hang.json" ]; then
  R="$FM/hang.json"
  check "hang hook: the daemon consumed the hang file and logged it" \
    bash -c "$JC 'j[\"hang_file_consumed\"]' < '$R' && grep -q 'test hang requested' '$FM/hang.log'"
  check "hang hook: pings before the hang, then silence longer than the watchdog" \
    $JC 'any(e[2]=="WATCHDOG=1" and e[0]<j["hang_at"] for e in j["events"]) and all(e[0]<j["hang_at"]+0.5 for e in j["events"] if e[2]=="WATCHDOG=1") and j["exit"]==-9' <"$R"
else
  fail "fake manager hang run" "no result; log: $(tail -5 "$FM/hang.log")"
fi

# ---------------------------------------------------------------- 4. container
# What booting a container needs that no package gives: root, and a
# cgroup hierarchy.  Anything else that stops the boot is a failure.
skip_reason=""
! mountpoint -q /sys/fs/cgroup && skip_reason="/sys/fs/cgroup is not mounted"
[ "$(id -u)" != 0 ] && skip_reason="not root"
if [ -n "$skip_reason" ]; then
  skip "a real 'systemctl start hakmemd' in a container booted with systemd" "$skip_reason"
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
  IN() { timeout 60 nsenter -t "$L" -a "$@"; }
  booted=0
  if [ -n "$L" ]; then
    for _ in $(seq 600); do
      st=$(IN systemctl is-system-running 2>/dev/null)
      case "$st" in running|degraded) booted=1; break ;; esac
      sleep 0.1
    done
  fi
  if [ "$booted" != 1 ]; then
    fail "container boots with systemd as PID 1" "state '${st:-none}'; $(tail -5 "$C/boot.log" | tr '\n' ' ')"
  else
    ok "container boots with systemd as PID 1"
    check "sysusers created user and group hakmem" IN getent passwd hakmem
    check "systemctl start hakmemd.socket" IN systemctl start hakmemd.socket
    check "socket unit made /run/hakmem/ctl.sock 0660 hakmem:hakmem" \
      timeout 60 bash -c "[ \"\$(nsenter -t $L -a stat -c '%a %U %G' /run/hakmem/ctl.sock)\" = '660 hakmem hakmem' ]"
    check "hakmemctl status answers through the socket unit (activates hakmemd)" \
      timeout 60 bash -c "nsenter -t $L -a /opt/hakmem/bin/hakmemctl --timeout 20000 --json status | $JC 'j[\"segment\"]==\"/hakmem\"'"
    check "systemctl start hakmemd (already active: a no-op that succeeds)" IN systemctl start hakmemd
    check "hakmemd.service is active" IN systemctl is-active hakmemd
    check "hakmemd runs as user hakmem" timeout 60 bash -c "[ \"\$(nsenter -t $L -a ps -o user= -p \$(nsenter -t $L -a systemctl show -p MainPID --value hakmemd))\" = hakmem ]"
    check "StatusText reports processes, sites, generation" \
      wait_for 10 timeout 60 bash -c "nsenter -t $L -a systemctl show -p StatusText --value hakmemd | grep -q 'processes, .* sites, generation'"
    check "the watchdog is armed" timeout 60 bash -c "[ \"\$(nsenter -t $L -a systemctl show -p WatchdogUSec --value hakmemd)\" = 2s ]"
    check "the daemon's log lines are in journalctl -u hakmemd" \
      wait_for 10 timeout 60 bash -c "nsenter -t $L -a journalctl -u hakmemd -o cat | grep -q 'control socket passed by systemd' && nsenter -t $L -a journalctl -u hakmemd -o cat | grep -q '^running: shm /hakmem'"
    check "log levels reach the journal as priorities" \
      timeout 60 bash -c "nsenter -t $L -a journalctl -u hakmemd -p info -o cat | grep -q 'running: shm'"
    check "the host reaches the control socket through /proc/PID/root" \
      "$CTL" --socket "/proc/$L/root/run/hakmem/ctl.sock" status
    check "the segment is readable by group hakmem only, written by the daemon: mode 0640" \
      timeout 60 bash -c "[ \"\$(nsenter -t $L -a stat -c '%a %U %G' /dev/shm/hakmem)\" = '640 hakmem hakmem' ]"
    if [ -e "$BUILD/libhakmem.so" ] && [ -e "$BUILD/tests/ctl/alloc_sites" ]; then
      IN env LD_PRELOAD=/opt/hakmem/bin/libhakmem.so /opt/hakmem/bin/tests/ctl/alloc_sites 1 >/dev/null 2>&1
      check "a client process reaches the sandboxed daemon's segment" \
        wait_for 10 timeout 60 bash -c "nsenter -t $L -a /opt/hakmem/bin/hakmemctl --json sites --exe alloc_sites | $JC 'len(j[\"sites\"])>=3'"
    fi

    # Hang the main loop: the watchdog kills it (SIGABRT) and Restart=
    # brings it back with a new pid; the socket stays and answers.
    PID1=$(IN systemctl show -p MainPID --value hakmemd)
    NR1=$(IN systemctl show -p NRestarts --value hakmemd)
    IN touch /run/hakmem/hang
    if wait_for 30 timeout 60 bash -c "[ \"\$(nsenter -t $L -a systemctl show -p NRestarts --value hakmemd)\" -gt '$NR1' ] && nsenter -t $L -a systemctl is-active hakmemd"; then
      ok "a hung hakmemd is killed by the watchdog and restarted"
    else
      fail "watchdog restart" "NRestarts $(IN systemctl show -p NRestarts --value hakmemd), state $(IN systemctl is-active hakmemd)"
    fi
    check "the journal records the watchdog timeout and the test hang" \
      timeout 60 bash -c "nsenter -t $L -a journalctl -u hakmemd -o cat | grep -qi 'watchdog timeout' && nsenter -t $L -a journalctl -u hakmemd -o cat | grep -q 'test hang requested'"
    check "the restarted daemon has a new pid and answers" \
      timeout 60 bash -c "[ \"\$(nsenter -t $L -a systemctl show -p MainPID --value hakmemd)\" != '$PID1' ] && nsenter -t $L -a /opt/hakmem/bin/hakmemctl --timeout 20000 status >/dev/null"
    check "systemctl stop hakmemd: STOPPING, clean exit" \
      timeout 60 bash -c "nsenter -t $L -a systemctl stop hakmemd && nsenter -t $L -a journalctl -u hakmemd -o cat | grep -q '^stopped'"
  fi
  shut_container
fi

finish
