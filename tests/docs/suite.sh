#!/usr/bin/env bash
# README.md's hakmemctl samples against what the code prints today: a fresh
# run of scripts/readme_samples.sh (a private daemon and a demo program),
# each sample compared with README.md's, both normalised
# (scripts/readme_samples.py: pids, times, counters and build-id hashes
# aside, every character must match).  `make docs` writes them anew.  And
# the demo of `make run`, the README's first command: the daemon it starts
# learns from its processes, sites and the binary, and settles.
# usage (from the repo root): bash tests/docs/suite.sh BUILD
set -u
source "$(dirname "$0")/../lib.sh"
testlib_begin docs "${1:-build}"
for b in libhakmem.so hakmemd hakmemctl tests/ctl/alloc_sites bench/scenarios; do
  need "$BUILD/$b"
done
cd "$REPO" || exit 1
make_tmpdir T hkdocs

if ! timeout -k 5 60 bash scripts/readme_samples.sh "$BUILD" "$T/samples" >"$T/log" 2>&1; then
  fail "docs: the samples run" "$(tail -n 1 "$T/log")" "$(tail -n 10 "$T/log")"
  finish
  exit 1
fi
ok "docs: the samples run"

if ! names=$(timeout 30 python3 scripts/readme_samples.py names README.md "$T/samples" 2>&1); then
  fail "docs: README.md's sample markers" "$names"
  finish
  exit 1
fi
for name in $names; do
  if out=$(timeout 30 python3 scripts/readme_samples.py compare README.md "$T/samples" "$name" 2>&1); then
    ok "docs: README sample $name is what hakmemctl prints"
  else
    fail "docs: README sample $name is what hakmemctl prints" "it is not (make docs writes it anew)" "$out"
  fi
done

# The demo cleans up after itself (its daemon, segment and directory);
# killed at the timeout it cannot, so what its first lines name goes here.
timeout -k 5 300 bash scripts/run_demo.sh "$BUILD" >"$T/demo.log" 2>&1
rc=$?
demo_shm=$(grep -oE '^== starting hakmemd on segment /hakmem-demo-[0-9]+' "$T/demo.log" | grep -oE '/hakmem-demo-[0-9]+$')
demo_dir=$(grep -oE 'socket /tmp/hakmem-demo\.[A-Za-z0-9]+/' "$T/demo.log" | head -n 1 | cut -d' ' -f2)
if [ -n "$demo_shm" ]; then
  pkill -f -- "--shm $demo_shm " 2>/dev/null
  rm -f "/dev/shm$demo_shm" "/dev/shm$demo_shm.lock"
fi
[ -n "$demo_dir" ] && rm -rf "$demo_dir"
verdict=$(grep '^after round ' "$T/demo.log")
runs=$(grep -oE 'scenarios +--scenario +live [0-9]+ +runs [0-9]+' "$T/demo.log" | tail -n 1 | awk '{print $NF}')
if [ "$rc" -eq 0 ] && [[ "$verdict" == *": settled: "*"; settled: "* ]] && [ "${runs:-0}" -ge 5 ] &&
   grep -q '^#1 site .*scenarios+0x' "$T/demo.log"; then
  ok "docs: make run's demo teaches the daemon its sites and its binary, which settle"
else
  fail "docs: make run's demo teaches the daemon its sites and its binary, which settle" \
    "exit $rc; ${verdict:-no verdict}; binary runs ${runs:-none}" "$(tail -n 20 "$T/demo.log")"
fi
finish
