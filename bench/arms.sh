#!/usr/bin/env bash
# What each per-binary arm does to each item of the allocator suite
# (bench/suite.sh), set by hand with learning off: hakmem-baseline (the
# default arm) and hakmem-arm-NAME for every other arm `hakmemd --list-arms`
# names, interleaved on the same runs.  For each item the best arm by the
# learner's own rule is what a learner that knew everything in advance
# would run: the ceiling of what learning per binary can gain with these
# arms on this suite.
#
# usage: bash bench/arms.sh [--runs N] [--build DIR] [--out DIR]
#                           [--readme FILE | --no-readme] [--smoke]
#   --runs N      measured runs of each item per arm (default 3)
#   --build DIR   the build (default build; make programs builds it)
#   --out DIR     results (default bench/results/arms)
#   --readme FILE where the table goes, between <!-- bench:suite-arms -->
#                 markers (default README.md); --no-readme writes none
#   --smoke       tiny sizes, one run, no README: checks the pipeline (tests/bench)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
RUNS=3 BUILD=build OUT=bench/results/arms README=README.md SMOKE=
die() { echo "arms: $*" >&2; exit 1; }
# shellcheck source=bench/side_run.sh
source "$ROOT/bench/side_run.sh"
while [ $# -gt 0 ]; do
  side_option "$@"
  if [ "$SIDE_SHIFT" -gt 0 ]; then shift "$SIDE_SHIFT"; continue; fi
  case $1 in
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (--help lists them)" ;;
  esac
done
side_need libhakmem.so hakmemd bench/measure

ARMS=$("$BUILD/hakmemd" --list-arms | awk '$1 != "default" { printf ",hakmem-arm-%s", $1 }')
[ -n "$ARMS" ] || die "$BUILD/hakmemd --list-arms names no arm"
echo "arms: the suite under hakmem-baseline$(tr ',' ' ' <<<"$ARMS" | sed 's/ hakmem-arm-/, /g')"
timeout 7200 bash bench/run.sh --build "$BUILD" --filter suite --configs "hakmem-baseline$ARMS" \
  --runs "$RUNS" $SMOKE --no-readme --out "$OUT/run" >"$OUT/run.log" 2>&1 ||
  { tail -n 5 "$OUT/run.log" >&2; die "bench/run.sh failed (log: $OUT/run.log)"; }

mkdir -p "$OUT/sections"
python3 bench/arms.py "$OUT/run" "$BUILD/hakmemd" \
  "bash bench/arms.sh$([ "$RUNS" = 3 ] || echo " --runs $RUNS")" >"$OUT/sections/suite-arms.md" ||
  die "no table (see $OUT/run.log)"
side_publish
