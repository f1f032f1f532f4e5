#!/usr/bin/env bash
# Makes the hakmemctl samples of README.md from a real run: a private
# hakmemd (interval 200 ms) and one program, myserver (tests/ctl/alloc_sites:
# 64 KiB, 256 KiB and 2 MiB blocks from three sites), under libhakmem.so.
# Once the daemon has settled, each command the README shows runs, and
# OUTDIR/NAME.md gets the fenced block of sample NAME: the commands as a
# reader types them and what they printed.  `make docs` splices them into
# README.md between <!-- sample:NAME:begin/end --> (bench/readme_tables.py);
# tests/docs compares them with README.md (scripts/readme_samples.py).
# Names that are this run's own are shown as a reader's would be: the
# segment as /hkdoc, the work directory as /tmp/hkdoc.
# usage: scripts/readme_samples.sh BUILD OUTDIR
set -u -o pipefail
[ $# -eq 2 ] || { echo "usage: scripts/readme_samples.sh BUILD OUTDIR" >&2; exit 64; }
die() {
  echo "readme_samples: $*" >&2
  exit 1
}
[ -d "$1" ] || die "no build directory $1 (make docs builds it)"
BUILD=$(cd "$1" && pwd)
mkdir -p "$2" && OUT=$(cd "$2" && pwd) || exit 1
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD
source tests/lib.sh
for f in libhakmem.so hakmemd hakmemctl tests/ctl/alloc_sites; do
  [ -e "$BUILD/$f" ] || die "$BUILD/$f is not built (make docs builds it)"
done
trap testlib_cleanup EXIT
trap 'exit 130' INT TERM

make_tmpdir W hkdoc
SHM=/hkdoc-$$
ABSENT=$W/absent/ctl.sock
cp "$BUILD/tests/ctl/alloc_sites" "$W/myserver" || exit 1

# start_daemon DIR SHM: a private hakmemd with its socket and state in DIR.
start_daemon() {
  mkdir -p "$1"
  "$BUILD/hakmemd" --foreground --shm "$2" --socket "$1/ctl.sock" --state-dir "$1/state" \
    --interval 200 >"$1/hakmemd.log" 2>&1 &
  track_pid $!
  track_shm "$2"
  wait_for 10 test -S "$1/ctl.sock" >/dev/null || die "hakmemd did not start: $(tail -n 3 "$1/hakmemd.log")"
}

SOCK=$W/a/ctl.sock
ctl() { timeout 10 "$BUILD/hakmemctl" --socket "$SOCK" "$@"; }
# jget EXPR: EXPR of the JSON document on stdin (as j), printed.
jget() { python3 -c "import json, sys; j = json.load(sys.stdin); print($1)"; }
site_bytes_metric() { ctl metrics | grep hakmem_site_alloc_bytes_total; }
generation() { ctl --json status | jget 'j["generation"]'; }
took_a_run() { [ "$(ctl --json binaries | jget 'any(b["observations"] for b in j["binaries"])')" = True ]; }
# settled_state: each site's published thresholds, one line, when the
# daemon is settled (fails otherwise), from one view of its sites.
settled_state() {
  ctl --json sites --top 0 | python3 -c '
import json, sys
sys.path.insert(0, "scripts")
from settled import sites_verdict
sites = json.load(sys.stdin)["sites"]
print(" ".join(sorted("%s=%s" % (s["site"], json.dumps(s["thresholds"], sort_keys=True)) for s in sites)))
sys.exit(sites_verdict(sites)[0])'
}

# What a reader's run would print: this run's names replaced by theirs.
reader_view() {
  local t=$1
  t=${t//"$ABSENT"/\/run\/hakmem\/ctl.sock}
  t=${t//"$W"/\/tmp\/hkdoc}
  t=${t//"$SHM"/\/hkdoc}
  printf '%s\n' "$t"
}

# begin NAME ... end: one sample.  show [--rc N] SHOWN COMMAND...: runs
# COMMAND, which must exit N (default 0; any other status is then shown
# too), and adds "$ SHOWN" and what it printed on stdout and stderr.
begin() {
  CUR=$STAGE/$1.md
  printf '```\n' >"$CUR"
}
show() {
  local want=0 text rc
  if [ "$1" = --rc ]; then want=$2; shift 2; fi
  local shown=$1
  shift
  text=$("$@" 2>&1)
  rc=$?
  [ "$rc" = "$want" ] || die "'$shown' exited $rc, not $want: $(head -c 300 <<<"$text")"
  printf '$ %s\n' "$shown" >>"$CUR"
  reader_view "$text" >>"$CUR"
  [ "$want" = 0 ] || printf '$ echo $?\n%s\n' "$rc" >>"$CUR"
}
end() { printf '```\n' >>"$CUR"; }

# The exit report of one short run with no daemon (the socket is absent).
STAGE=$OUT
begin report
show "HAKMEM_STATS=1 LD_PRELOAD=libhakmem.so ./myserver 1" \
  env HAKMEM_STATS=1 LD_PRELOAD="$BUILD/libhakmem.so" HAKMEM_SHM="$SHM-none" HAKMEM_SOCKET="$ABSENT" \
  timeout 20 "$W/myserver" 1
end

start_daemon "$W/a" "$SHM"
LD_PRELOAD=$BUILD/libhakmem.so HAKMEM_SHM=$SHM HAKMEM_SOCKET=$SOCK "$W/myserver" 60 &
SERVER=$!
track_pid "$SERVER"
wait_for 20 settled_state || die "the daemon did not settle within 20 s: $(ctl --json sites --top 0 | python3 scripts/settled.py)"
# A little longer, so the samples show more than each arm's first pull.
sleep 2

# steady NAME FN: sample NAME, made by FN, taken again (at most 10 times)
# until the daemon published nothing new while FN ran and was settled, on
# the thresholds the first sample saw: every sample shows one settled
# state.  Each sample is taken alone, so one takes a second, not all of
# them: a settled site still tries another arm now and then (UCB1), which
# republishes its thresholds twice within a few intervals.
STATE=
steady() {
  local name=$1 fn=$2 attempt gen state
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    gen=$(generation)
    begin "$name"
    "$fn"
    end
    if state=$(settled_state) && [ "$(generation)" = "$gen" ]; then
      [ -n "$STATE" ] || STATE=$state
      [ "$state" = "$STATE" ] && return 0
    fi
    sleep 0.3
  done
  die "the daemon kept changing its policy while sample $name was taken"
}
status_sample() {
  show "hakmemctl status" ctl status
  show "hakmemctl --json status" ctl --json status
}
procs_sample() { show "hakmemctl procs" ctl procs; }
sites_sample() { show "hakmemctl sites --top 1" ctl sites --top 1; }
thresholds_sample() { show "hakmemctl thresholds" ctl thresholds; }
watch_sample() { show "hakmemctl watch --count 2" ctl watch --count 2; }
metrics_sample() { show "hakmemctl metrics | grep hakmem_site_alloc_bytes_total" site_bytes_metric; }
for name in status procs sites thresholds watch metrics; do
  steady "$name" "${name}_sample"
done
STAGE=$OUT

KEY=$(ctl --json sites --top 1 | jget 'j["sites"][0]["site"]')
ARM=large=1M,slots=4,thp=on

# The program exits; the daemon takes its run as one of its binary's.
stop_pid "$SERVER" 10 >/dev/null
wait_for 10 took_a_run || die "the daemon took no run of myserver"
BIN=$(ctl --json binaries | jget 'j["binaries"][0]["binary"]')
begin binaries
show "hakmemctl binaries" ctl binaries
show "sudo hakmemctl pin-binary $BIN lean" ctl pin-binary "$BIN" lean
show "sudo hakmemctl unpin-binary $BIN" ctl unpin-binary "$BIN"
show "sudo hakmemctl reset-binary $BIN" ctl reset-binary "$BIN"
end

# The learned policy, exported and imported into a second daemon ("host2").
begin export
cd "$W" || exit 1
show "hakmemctl export policy.bin" ctl export policy.bin
start_daemon "$W/b" "$SHM-2"
show "scp policy.bin host2: && ssh host2 sudo hakmemctl import policy.bin" \
  timeout 10 "$BUILD/hakmemctl" --socket "$W/b/ctl.sock" import policy.bin
cd "$REPO" || exit 1
end

begin pin
show "sudo hakmemctl pin $KEY $ARM" ctl pin "$KEY" "$ARM"
show "sudo hakmemctl unpin $KEY" ctl unpin "$KEY"
show "sudo hakmemctl reset --site $KEY" ctl reset --site "$KEY"
show "sudo hakmemctl reset" ctl reset
end

begin unreachable
show --rc 3 "hakmemctl status                      # daemon not running" \
  timeout 10 "$BUILD/hakmemctl" --socket "$ABSENT" status
end
