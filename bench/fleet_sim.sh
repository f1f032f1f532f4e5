#!/usr/bin/env bash
# A simulated fleet on this machine: a 3-member etcd cluster with TLS (as
# tests/fleet starts it) and N real hakmemd processes, each a host with its
# own segment, socket and state directory, seeded with K learned sites
# each.  bench/fleet_sim.py measures a steady window (puts and bytes a
# second, etcd's database, the CPU of the members and of the hosts) and how
# long a site settled on one host takes until every other host publishes
# its arm, and writes the README's table.
#
# usage: bash bench/fleet_sim.sh [--hosts N] [--sites N] [--seconds N] [--sync-ms MS]
#                                [--probes N] [--build DIR] [--out DIR]
#                                [--readme FILE | --no-readme] [--smoke]
#   --hosts N     hakmemd processes (default 100)
#   --sites N     learned sites a host (default 1024: the design point, 4096,
#                 reads four times as much, more than 2 cores serve)
#   --seconds N   the steady window (default 180), rounded up to whole refresh
#                 periods (12 syncs), after every host reads all the others
#                 and a refresh period of moving counts
#   --sync-ms MS  each host's --fleet-sync (default 5000, the daemon's)
#   --probes N    sites propagated from one host to all (default 5)
#   --build DIR   the build (default build; make builds it)
#   --out DIR     results (default bench/results/fleet-sim)
#   --readme FILE where the table goes, between <!-- bench:fleet-sim -->
#                 markers (default README.md); --no-readme writes none
#   --smoke       4 hosts, 64 sites, --sync-ms 500, a window of 6 s, 2 probes,
#                 no README: checks the pipeline (tests/bench)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
HOSTS=100 SITES=1024 SECONDS_=180 SYNC_MS=5000 PROBES=5
BUILD=build OUT=bench/results/fleet-sim README=README.md SMOKE= RUNS=1
die() { echo "fleet-sim: $*" >&2; exit 1; }
# shellcheck source=bench/side_run.sh
source "$ROOT/bench/side_run.sh"
ARGS="$*"
number() { [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive number"; }
while [ $# -gt 0 ]; do
  case $1 in
    --hosts) number "$@"; HOSTS=$2; shift 2; continue ;;
    --sites) number "$@"; SITES=$2; shift 2; continue ;;
    --seconds) number "$@"; SECONDS_=$2; shift 2; continue ;;
    --sync-ms) number "$@"; SYNC_MS=$2; shift 2; continue ;;
    --probes) number "$@"; PROBES=$2; shift 2; continue ;;
    --runs) die "unknown option '$1' (--help lists them)" ;;
    -h|--help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
  side_option "$@"
  [ "$SIDE_SHIFT" -gt 0 ] || die "unknown option '$1' (--help lists them)"
  [ "$1" = --smoke ] && HOSTS=4 SITES=64 SECONDS_=5 SYNC_MS=500 PROBES=2
  shift "$SIDE_SHIFT"
done
[ "$HOSTS" -ge 2 ] || die "--hosts needs at least 2 (one learns, the others take it)"
side_need hakmemd hakmemctl
for tool in etcd etcdctl openssl python3; do
  command -v $tool >/dev/null || die "$tool is not installed (make deps installs it)"
done
# tests/lib.sh: pids, segments and the temporary directory removed at exit.
# shellcheck source=tests/lib.sh
source "$ROOT/tests/lib.sh"
# The hosts first, so that the members see their leases revoked and stop at once.
stop_all() {
  local p
  while read -r _ p _; do ours "$p" && kill -TERM "$p" 2>/dev/null; done <"$TMP/hosts"
  while read -r _ p _; do wait_pid "$p" 20; done <"$TMP/hosts"
  for i in 0 1 2; do [ -n "${MPID[$i]:-}" ] && stop_member "$i"; done
}
at_exit stop_all
trap testlib_cleanup EXIT
trap 'exit 130' INT TERM
make_tmpdir TMP hkd-fleet-sim
: >"$TMP/hosts"
echo "fleet-sim: pid $$, temporary files in $TMP" >&2
# shellcheck source=tests/fleet/etcd_cluster.sh
source "$ROOT/tests/fleet/etcd_cluster.sh"
certs || die "cannot make the certificates with openssl"
for i in 0 1 2; do start_member $i; done
wait_secs 60 cluster_healthy >/dev/null || die "the etcd members did not become healthy: $(tail -3 "$TMP/m0.log")"
: >"$TMP/members"
for i in 0 1 2; do echo "https://127.0.0.1:${PORTS[$i]} ${MPID[$i]}" >>"$TMP/members"; done
echo "fleet-sim: 3 etcd members up; starting $HOSTS hosts (--fleet-sync $SYNC_MS)" >&2

FLEET=sim$$
for ((h = 0; h < HOSTS; h++)); do
  id=$(printf 'h%03d' "$h")
  mkdir -p "$TMP/$id/state"
  track_shm "/hkd-fleet-sim-$$-$id"
  "$BUILD/hakmemd" --foreground --shm "/hkd-fleet-sim-$$-$id" --socket "$TMP/$id/ctl.sock" \
    --state-dir "$TMP/$id/state" --fleet-endpoints "$ENDPOINTS" --fleet-name "$FLEET" --host-id "$id" \
    --fleet-cacert "$TMP/ca.crt" --fleet-cert "$TMP/host.crt" --fleet-key "$TMP/host.key" \
    --fleet-sync "$SYNC_MS" >>"$TMP/$id.log" 2>&1 &
  track_pid $!
  echo "$id $! $TMP/$id/ctl.sock" >>"$TMP/hosts"
done
while read -r id pid sock; do
  wait_secs 60 grep -q "fleet: joined etcd as host $id" "$TMP/$id.log" >/dev/null ||
    die "host $id did not join the fleet: $(tail -2 "$TMP/$id.log")"
done <"$TMP/hosts"
echo "fleet-sim: every host joined" >&2

mkdir -p "$OUT/sections"
rm -f "$OUT/sections/fleet-sim.md"
# In the background, so that a signal reaches the trap (and the cleanup) at once.
timeout $((3600 + 10 * HOSTS + SECONDS_ + 120 * PROBES)) python3 bench/fleet_sim.py \
  --hosts-file "$TMP/hosts" --members-file "$TMP/members" --tls "$TMP" --ctl "$BUILD/hakmemctl" --tmp "$TMP" \
  --sites "$SITES" --seconds "$SECONDS_" --sync-ms "$SYNC_MS" --probes "$PROBES" --out "$OUT" \
  --command "bash bench/fleet_sim.sh${ARGS:+ $ARGS}" &
track_pid $!
wait $! || die "no figures"
side_publish
