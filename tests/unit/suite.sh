#!/usr/bin/env bash
# Unit suite: the cmocka binaries of tests/unit (one per allocator box),
# each run once under a timeout: one result per test, "unit_<box>/<test>".
# No daemon: the allocator runs in baseline mode on a segment name nobody
# serves.
# usage (from the repo root): bash tests/unit/suite.sh BUILD
set -u
source "$(dirname "$0")/../lib.sh"
testlib_begin unit "${1:-build}"

BOXES=(size_class chunk_map segment heap heap_life large bigcache thp site options api api_hardened modules registration policy_reader mallinfo hardened knobs counters command vdso packed)
SHM=/hakmem-unit-$$
track_shm "$SHM"

# The options test expects the built-in defaults: no knob may leak in.
for v in $(env | sed -n 's/^\(HAKMEM_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
export HAKMEM_SHM=$SHM HAKMEM_MODE=baseline

for box in "${BOXES[@]}"; do
  run_cmocka "unit_$box" 60 "$BUILD/tests/unit_$box"
done
finish
