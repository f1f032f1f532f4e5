#!/usr/bin/env bash
# The allocator core before and after: the allocator suite (bench/suite.sh)
# under hakmem with learning off, once with the library built from an
# earlier revision and once with this tree's, each against glibc on the same
# runs.  Only the library differs: the workloads, the programs and the
# runner are this tree's.
#
# usage: bash bench/before_after.sh --rev REV [--runs N] [--build DIR] [--out DIR]
#                                   [--readme FILE | --no-readme]
#   --rev REV     the earlier revision (any git revision of this repository)
#   --runs N      measured runs of each item per configuration (default 5)
#   --build DIR   this tree's build (default build; make programs builds it)
#   --out DIR     results (default bench/results/before-after)
#   --readme FILE where the table goes, between <!-- bench:core-before-after -->
#                 markers (default README.md); --no-readme writes none
#   --smoke       tiny sizes, one run, no README: checks the pipeline (tests/bench)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
REV='' RUNS=5 BUILD=build OUT=bench/results/before-after README=README.md SMOKE=
die() { echo "before_after: $*" >&2; exit 1; }
# shellcheck source=bench/side_run.sh
source "$ROOT/bench/side_run.sh"
while [ $# -gt 0 ]; do
  side_option "$@"
  if [ "$SIDE_SHIFT" -gt 0 ]; then shift "$SIDE_SHIFT"; continue; fi
  case $1 in
    --rev) [ $# -ge 2 ] || die "--rev needs a revision"; REV=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (--help lists them)" ;;
  esac
done
[ -n "$REV" ] || die "--rev REV is required: the revision to compare with"
SHA=$(git rev-parse --verify --quiet "$REV^{commit}") || die "no revision '$REV' in this repository"
side_need libhakmem.so bench/measure

TMP=$(mktemp -d /tmp/hakmem-before-after.XXXXXX) || exit 1
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

echo "before_after: building libhakmem.so at ${SHA:0:7}"
git archive "$SHA" | tar -x -C "$TMP" || die "git archive $SHA failed"
mkdir -p "$TMP/old"
if ! timeout 900 make -C "$TMP" BUILD="$TMP/old" "$TMP/old/libhakmem.so" >"$TMP/old-build.log" 2>&1; then
  tail -n 5 "$TMP/old-build.log" >&2
  die "the library of ${SHA:0:7} did not build"
fi

# A build directory like this tree's, but for its library.
mkdir -p "$TMP/view"
for f in "$BUILD"/*; do ln -s "$f" "$TMP/view/$(basename "$f")"; done
rm -f "$TMP/view/libhakmem.so"
cp "$TMP/old/libhakmem.so" "$TMP/view/libhakmem.so"

run_suite() { # BUILD OUT
  timeout 7200 bash bench/run.sh --build "$1" --filter suite --configs hakmem-baseline,system \
    --runs "$RUNS" $SMOKE --no-readme --out "$2" >"$2.log" 2>&1 ||
    { tail -n 5 "$2.log" >&2; die "bench/run.sh failed (log: $2.log)"; }
}
echo "before_after: the suite with the library of ${SHA:0:7}"
run_suite "$TMP/view" "$OUT/before"
echo "before_after: the suite with this tree's library"
run_suite "$BUILD" "$OUT/after"

mkdir -p "$OUT/sections"
python3 bench/before_after.py "$OUT/before/suite.csv" "$OUT/after/suite.csv" \
  "bash bench/before_after.sh --rev ${SHA:0:7}$([ "$RUNS" = 5 ] || echo " --runs $RUNS")" \
  "$(git log -1 --format=%cs "$SHA")" "$(git rev-parse --short HEAD)" >"$OUT/sections/core-before-after.md" ||
  die "no table (see $OUT/before.log and $OUT/after.log)"
side_publish
