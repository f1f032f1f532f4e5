#!/usr/bin/env bash
# `make run`: a daemon on a private segment and socket, the published
# scenarios run as several processes under the allocator, and what the
# daemon learned from them.  Cleans up everything it started.
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."

case $build in /*) ;; *) build=$PWD/$build ;; esac
lib=$build/libhakmem.so
scen=$build/bench/scenarios
hakmemd=$build/hakmemd
ctl=$build/hakmemctl
for f in "$lib" "$scen"; do
  [ -x "$f" ] || [ -f "$f" ] || { echo "run: $f is missing (make run builds it)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/hakmem-demo.XXXXXX)
shm=/hakmem-demo-$$
sock=$work/ctl.sock
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  rm -f "/dev/shm${shm}" "/dev/shm${shm}.lock"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

section() { printf '\n== %s ==\n' "$*"; }

if [ -x "$hakmemd" ]; then
  section "starting hakmemd on segment $shm, socket $sock (interval 200 ms)"
  "$hakmemd" --foreground --shm "$shm" --socket "$sock" --state-dir "$work/state" \
             --interval 200 >"$work/hakmemd.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
  [ -S "$sock" ] || { echo "run: hakmemd did not come up:"; cat "$work/hakmemd.log"; exit 1; }
  section "hakmemctl status (before any client)"
  "$ctl" --socket "$sock" status
else
  section "hakmemd is not built: the clients run on their defaults"
fi

# Operations per scenario: enough for each process to run some 30-60 ms of
# CPU.  A process registers with the daemon only once 10 ms old
# (HAKMEM_REGISTER_AFTER_MS) and the daemon counts a binary's run from
# 20 ms of CPU: the scenarios' own short defaults would teach it nothing.
declare -A ops=([json]=200000 [mir]=30000 [vm]=4000 [mixed]=30000)

run_clients() {
  local round=$1
  local pids=()
  for s in json mir vm mixed; do
    LD_PRELOAD=$lib HAKMEM_SHM=$shm HAKMEM_SOCKET=$sock "$scen" --scenario "$s" --ops "${ops[$s]}" --seed "$round" \
      >"$work/$s.$round.out" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
}

section "round 1: JSON, MIR, VM and MIXED as four processes under LD_PRELOAD=$lib"
run_clients 1
cat "$work"/*.1.out
if [ -n "$daemon_pid" ]; then
  sleep 0.5
  section "hakmemctl sites after round 1 (what the daemon merged)"
  "$ctl" --socket "$sock" sites --top 10
fi

# More rounds until the daemon has tried every arm that matters for the
# sites and for the binary, and publishes the best (at most 40 rounds).
# Most runs settle in 5; a site whose best arms are close keeps UCB
# exploring longer (past 20 rounds in about one run in twenty).
section "rounds 2 and on: the daemon keeps learning until it has settled"
r=1 verdict="no daemon"
while [ "$r" -lt 40 ]; do
  r=$((r + 1))
  run_clients "$r"
  [ -n "$daemon_pid" ] || { [ "$r" -ge 6 ] && break; continue; }
  sleep 0.5
  if verdict=$("$ctl" --socket "$sock" --json sites --top 0 | python3 scripts/settled.py) &&
     binaries=$("$ctl" --socket "$sock" --json binaries | python3 scripts/settled.py); then
    verdict="$verdict; $binaries"
    break
  fi
done
echo "after round $r: $verdict"
cat "$work"/*."$r".out

section "one more MIXED run with the exit report (HAKMEM_STATS=1)"
LD_PRELOAD=$lib HAKMEM_SHM=$shm HAKMEM_SOCKET=$sock HAKMEM_STATS=1 "$scen" --scenario mixed --ops "${ops[mixed]}" --seed 7

if [ -n "$daemon_pid" ]; then
  sleep 0.5
  section "hakmemctl status, sites and binaries after learning"
  "$ctl" --socket "$sock" status
  "$ctl" --socket "$sock" sites --top 10
  "$ctl" --socket "$sock" binaries
  section "hakmemd log (last lines)"
  tail -n 8 "$work/hakmemd.log"
fi
