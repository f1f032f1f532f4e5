# What the scripts that run the allocator suite beside `make bench`
# (bench/before_after.sh, bench/arms.sh) share: their common options, the
# build they need, and where their table goes.  Sourced; the script defines
# die() and the defaults of RUNS, BUILD, OUT, README and SMOKE.

# side_option ARGS...: takes --runs N, --build DIR, --out DIR, --readme FILE,
# --no-readme or --smoke off the front of ARGS and sets SIDE_SHIFT to the
# number of words taken (0: the first word is none of these).
side_option() {
  SIDE_SHIFT=0
  case ${1:-} in
    --runs) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive number"; RUNS=$2; SIDE_SHIFT=2 ;;
    --build) [ $# -ge 2 ] || die "--build needs a directory"; BUILD=$2; SIDE_SHIFT=2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; OUT=$2; SIDE_SHIFT=2 ;;
    --readme) [ $# -ge 2 ] || die "--readme needs a file"; README=$2; SIDE_SHIFT=2 ;;
    --no-readme) README=''; SIDE_SHIFT=1 ;;
    --smoke) SMOKE=--smoke README='' RUNS=1; SIDE_SHIFT=1 ;;
  esac
}

# side_need FILE...: makes BUILD and OUT absolute; each FILE must be in BUILD.
side_need() {
  local f
  BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || die "no build directory (make programs builds it)"
  for f in "$@"; do
    [ -e "$BUILD/$f" ] || die "$BUILD/$f is missing (make programs builds it)"
  done
  mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || die "cannot make $OUT"
}

# side_publish: shows the table(s) in OUT/sections and splices them into
# README between their markers (none with --no-readme or --smoke).
side_publish() {
  cat "$OUT"/sections/*.md
  if [ -n "$README" ]; then
    python3 bench/readme_tables.py "$README" "$OUT/sections" || exit 1
  fi
}
