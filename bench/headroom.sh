#!/usr/bin/env bash
# The headroom of the allocator suite: per item (bench/suite.sh's workloads
# and real programs, at their full sizes), under hakmem with learning off,
# the most any allocator setting could change its time or its peak RSS.
#   time: the allocator's share of the instructions (callgrind, every
#         process of the item summed; bench/headroom.py says how nested
#         entries are kept from counting twice) plus the system time's share
#         of CPU time (bench/measure): what a zero-cost allocator could save.
#   RSS:  the peak of live requested bytes (bench/headroom_shim.so,
#         preloaded in front of libhakmem.so) against the peak RSS
#         (bench/measure): what a heap with no overhead would leave; and
#         the same with the pages no allocator decides kept (the process's
#         files, main stack and own anonymous mappings, which the shim
#         samples as live bytes grow).
# Three runs per item: plain under measure, under the shim, under callgrind;
# all three must print the same output.  An item whose callgrind run takes
# longer than --cg-timeout at full size is profiled at its quick size, and
# the table says so.
#
# usage: bash bench/headroom.sh [--build DIR] [--out DIR] [--items LIST] [--smoke]
#   --build DIR       the build (default build; make programs builds it)
#   --out DIR         results (default bench/results/headroom): headroom.md,
#                     headroom.csv, logs/
#   --items LIST      comma-separated subset of the suite's items (default all)
#   --cg-timeout S    a callgrind run longer than this falls back to the
#                     quick size (default 600)
#   --smoke           tiny sizes: checks the pipeline end to end (tests/bench)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
RUNS=1 BUILD=build OUT=bench/results/headroom README='' SMOKE='' ITEMS='' CG_TIMEOUT=600
RUN_TIMEOUT=600
die() { echo "headroom: $*" >&2; exit 1; }
# shellcheck source=bench/side_run.sh
source "$ROOT/bench/side_run.sh"
while [ $# -gt 0 ]; do
  case $1 in
    --runs|--readme|--no-readme) die "$1 does not apply: each item is measured once, and no README is written" ;;
    --items) [ $# -ge 2 ] || die "--items needs a list"; ITEMS=$2; shift 2; continue ;;
    --cg-timeout) [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--cg-timeout needs a positive number of seconds"
                  CG_TIMEOUT=$2; shift 2; continue ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  esac
  side_option "$@"
  if [ "$SIDE_SHIFT" -gt 0 ]; then shift "$SIDE_SHIFT"; continue; fi
  die "unknown option '$1' (--help lists them)"
done
side_need libhakmem.so bench/measure bench/headroom_shim.so
command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null ||
  die "valgrind is not installed (make deps installs it)"

# The suite's own lists, sizes and command lines (bench/suite.sh), with the
# environments of this script's three runs in place of run.sh's configurations.
MODE=full THREADS=4 FILTER=''
[ -n "$SMOKE" ] && MODE=smoke
if [ -n "$ITEMS" ]; then
  [[ $ITEMS =~ ^[a-z-]+(,[a-z-]+)*$ ]] || die "--items takes names separated by commas"
  FILTER="^suite (${ITEMS//,/|})\$"
fi
# shellcheck source=bench/suite.sh
source "$ROOT/bench/suite.sh"
suite_select
if [ -n "$ITEMS" ]; then
  for it in ${ITEMS//,/ }; do
    [[ " ${SUITE_ITEMS[*]} " == *" $it "* ]] || die "no suite item '$it' (items: ${SUITE_WORKLOADS[*]} ${SUITE_PROGRAMS[*]})"
  done
fi
suite_check_built

TMP=$(mktemp -d /tmp/hakmem-headroom.XXXXXX) || exit 1
SEGMENT=/hakmem-headroom-none-$$   # a segment nobody serves: no daemon steers these runs
SCRATCH_FULL='' SCRATCH_QUICK=''
cleanup() {
  rm -rf "$TMP"
  [ -n "$SCRATCH_FULL" ] && rm -rf "$SCRATCH_FULL"
  [ -n "$SCRATCH_QUICK" ] && rm -rf "$SCRATCH_QUICK"
  rm -f "/dev/shm$SEGMENT" "/dev/shm$SEGMENT.lock"
}
trap cleanup EXIT
trap 'echo "headroom: interrupted" >&2; exit 130' INT TERM

LIB=$BUILD/libhakmem.so
SHIM=$BUILD/bench/headroom_shim.so
BASELINE_ENV="HAKMEM_MODE=baseline HAKMEM_SHM=$SEGMENT"
PEAKS=''   # the shim's per-process files of the item being run
# suite_cmd's environments: hakmem-baseline's, and the same with the shim in front.
config_env() {
  case $1 in
    plain) echo "LD_PRELOAD=$LIB $BASELINE_ENV" ;;
    shim)  echo "LD_PRELOAD=$SHIM:$LIB $BASELINE_ENV HAKMEM_HEADROOM_PEAKS=$PEAKS" ;;
  esac
}

# The real programs' inputs, in memory as bench/suite.sh keeps them.
prepare_programs() { # mode -> prints the directory
  local dir
  dir=$(mktemp -d "/dev/shm/hakmem-headroom-programs.XXXXXX" 2>/dev/null) || dir=$(mktemp -d "$TMP/programs.XXXXXX")
  echo "$dir"
  timeout 600 bash bench/programs.sh prepare "$1" "$dir" >>"$OUT/logs/programs-prepare.log" 2>&1
}
mkdir -p "$OUT/logs" || die "cannot make $OUT/logs"
: >"$OUT/logs/programs-prepare.log"
if [[ " ${SUITE_KIND[*]} " == *" program "* ]]; then
  SCRATCH_FULL=$(prepare_programs "$MODE") || die "making the real programs' inputs failed (logs/programs-prepare.log)"
fi

args_of() { # item mode
  if [ "${SUITE_KIND[$1]}" = program ]; then echo "programs.sh prepare $2"; else MODE=$2 suite_args "$1"; fi
}

# command_of ITEM CONFIG MODE: the item's command line in CMD.
command_of() {
  local saved=$MODE
  MODE=$3
  SUITE_SCRATCH=$SCRATCH_FULL
  [ "$3" = quick ] && [ "$saved" != quick ] && SUITE_SCRATCH=$SCRATCH_QUICK
  mapfile -t CMD < <(suite_cmd "$1" "$2")
  MODE=$saved
}

# checked_output ITEM OUT ERR RC: "ok" or why the run is not usable.
checked_output() {
  if [ "$4" -eq 124 ] || [ "$4" -eq 137 ]; then echo "timed out"
  elif [ "$4" -ne 0 ]; then echo "exit $4"
  elif grep -q 'cannot be preloaded' "$3"; then echo "preload ignored by ld.so"
  elif [ "${SUITE_KIND[$1]}" = workload ] && ! grep -q '^result ok ' "$2"; then echo "no result line"
  else echo ok
  fi
}

digest() { sha256sum <"$1" | cut -c1-16; }

CSV=$OUT/headroom.csv
echo "item,kind,args,cg_args,status,allocator_ir,total_ir,instr_share,nested_unsure_ir,cg_processes,cg_s,wall_s,user_s,sys_s,sys_share,maxrss_kb,peak_live_bytes,peak_live_exe,floor_bytes,floor_fixed_bytes,shim_processes" >"$CSV"
START=$(date +%s)
FAILED=0
echo "headroom: ${#SUITE_ITEMS[@]} items at $MODE size; callgrind falls back to quick size after ${CG_TIMEOUT}s"

for it in "${SUITE_ITEMS[@]}"; do
  log=$OUT/logs/$it.log
  : >"$log"
  status=ok args=$(args_of "$it" "$MODE") cg_args=''
  wall='' user='' sys='' rss='' sys_share='' peak='' peak_exe='' floor='' floor_fixed='' shim_n=''
  alloc_ir='' total_ir='' instr_share='' unsure='' cg_n='' cg_s=''

  # 1. Plain, under measure: time, system time, peak RSS.
  command_of "$it" plain "$MODE"
  echo "== plain: ${CMD[*]}" >>"$log"
  rm -f "$TMP/usage"
  "$MEASURE" "$TMP/usage" timeout -k 5 "$RUN_TIMEOUT" "${CMD[@]}" >"$TMP/out" 2>"$TMP/err"
  rc=$?
  cat "$TMP/err" >>"$log"
  why=$(checked_output "$it" "$TMP/out" "$TMP/err" "$rc")
  [ -s "$TMP/usage" ] || why="measure wrote nothing"
  if [ "$why" = ok ]; then
    want=$(digest "$TMP/out")
    read -r wall user sys rss <<<"$(sed -E 's/wall_s=([^ ]+) user_s=([^ ]+) sys_s=([^ ]+) maxrss_kb=([^ ]+).*/\1 \2 \3 \4/' "$TMP/usage")"
    sys_share=$(awk -v u="$user" -v s="$sys" 'BEGIN { if (u + s > 0) printf "%.6f", s / (u + s) }')
  else
    status="plain run: $why"
    want=''
  fi

  # 2. Under the shim: the peak of live requested bytes, per process.
  PEAKS=$TMP/peaks/$it/peak
  mkdir -p "$(dirname "$PEAKS")"
  command_of "$it" shim "$MODE"
  echo "== shim: ${CMD[*]}" >>"$log"
  timeout -k 5 "$RUN_TIMEOUT" "${CMD[@]}" >"$TMP/out" 2>"$TMP/err"
  rc=$?
  cat "$TMP/err" >>"$log"
  why=$(checked_output "$it" "$TMP/out" "$TMP/err" "$rc")
  [ "$why" = ok ] && [ -n "$want" ] && [ "$(digest "$TMP/out")" != "$want" ] && why="output differs from the plain run's"
  cat "$TMP/peaks/$it"/peak.* >>"$log" 2>/dev/null
  # The largest peak of any one process (each process's heap is its own),
  # and the largest floor (live bytes plus the pages no allocator decides).
  read -r peak peak_exe floor floor_fixed shim_n full <<<"$(cat "$TMP/peaks/$it"/peak.* 2>/dev/null | awk '
    { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = substr($i, length(kv[1]) + 2) }
      n++; if (v["table_full"] != 0) full = 1
      if (v["peak_live_bytes"] + 0 > best) { best = v["peak_live_bytes"] + 0; exe = v["exe"] }
      if (v["floor_bytes"] + 0 > floor) { floor = v["floor_bytes"] + 0; fixed = v["floor_fixed_bytes"] + 0 } }
    END { sub(".*/", "", exe); printf "%d %s %d %d %d %d\n", best, exe == "" ? "-" : exe, floor, fixed, n, full }')"
  if [ "$why" != ok ]; then
    [ "$status" = ok ] && status="shim run: $why"
  elif [ "${shim_n:-0}" -eq 0 ] || [ "${peak:-0}" -eq 0 ]; then
    [ "$status" = ok ] && status="shim run: no process reported a peak"
  elif [ "$full" -ne 0 ]; then
    [ "$status" = ok ] && status="shim run: the shim's table filled up (count incomplete)"
  fi
  [ "${peak:-0}" -gt 0 ] || peak='' floor='' floor_fixed=''

  # 3. Under callgrind: the allocator's share of the instructions.
  cg_mode=$MODE
  while :; do
    cg_args=$(args_of "$it" "$cg_mode")
    command_of "$it" plain "$cg_mode"
    rm -rf "$TMP/cg" && mkdir -p "$TMP/cg"
    echo "== callgrind ($cg_mode): ${CMD[*]}" >>"$log"
    t0=$(date +%s)
    # Callgrind replaces no malloc; the synonym setting makes sure no
    # redirection applies either way (as bench/run.sh's fast path does).
    # A forked child starts with a copy of its parent's counts: a dump
    # (which zeroes them) just before every fork keeps the parent's
    # instructions in the parent's files only.  Valgrind's own messages go
    # to files of their own: gcc's stderr is part of the item's output.
    timeout -k 10 "$CG_TIMEOUT" valgrind --tool=callgrind --soname-synonyms=somalloc=NONE \
      --trace-children=yes --dump-before='*fork' --callgrind-out-file="$TMP/cg/callgrind.%p" \
      --log-file="$TMP/cg/valgrind.%p" "${CMD[@]}" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    cg_s=$(( $(date +%s) - t0 ))
    cat "$TMP/err" >>"$log"
    why=$(checked_output "$it" "$TMP/out" "$TMP/err" "$rc")
    if [ "$why" = "timed out" ] && [ "$cg_mode" = full ]; then
      echo "headroom: $it: callgrind over ${CG_TIMEOUT}s at full size; its share is measured at quick size"
      echo "== callgrind timed out after ${CG_TIMEOUT}s at full size" >>"$log"
      cg_mode=quick
      if [ "${SUITE_KIND[$it]}" = program ] && [ -z "$SCRATCH_QUICK" ]; then
        SCRATCH_QUICK=$(prepare_programs quick) || { status="callgrind: making the quick inputs failed"; break; }
      fi
      continue
    fi
    break
  done
  [ "$why" = ok ] && [ "$cg_mode" = "$MODE" ] && [ -n "$want" ] && [ "$(digest "$TMP/out")" != "$want" ] &&
    why="output differs from the plain run's"
  if [ "$why" = ok ]; then
    if python3 bench/headroom.py share "$LIB" "$TMP"/cg/callgrind.* >"$TMP/share" 2>>"$log"; then
      read -r alloc_ir total_ir unsure cg_n <<<"$(sed -E 's/allocator_ir=([0-9]+) total_ir=([0-9]+) nested_unsure_ir=([0-9]+) processes=([0-9]+)/\1 \2 \3 \4/' "$TMP/share")"
      instr_share=$(awk -v a="$alloc_ir" -v t="$total_ir" 'BEGIN { if (t > 0 && a > 0) printf "%.6f", a / t }')
      [ -n "$instr_share" ] || why="no instructions of $(basename "$LIB") in the profile"
    else
      why="the profiles could not be read"
    fi
  fi
  [ "$why" = ok ] || { [ "$status" = ok ] && status="callgrind run ($cg_mode): $why"; }
  rm -rf "$TMP/cg"

  [ "$status" = ok ] || FAILED=$((FAILED + 1))
  echo "$it,${SUITE_KIND[$it]},$args,$cg_args,$status,$alloc_ir,$total_ir,$instr_share,$unsure,$cg_n,$cg_s,$wall,$user,$sys,$sys_share,$rss,$peak,$peak_exe,$floor,$floor_fixed,$shim_n" >>"$CSV"
  printf 'headroom: %-13s %s  instr %s  sys %s  peak RSS %s KB  peak live %s B  (callgrind %ss, %s processes; %ds so far)\n' \
    "$it" "$status" "${instr_share:--}" "${sys_share:--}" "${rss:--}" "${peak:--}" "${cg_s:--}" "${cg_n:--}" $(( $(date +%s) - START ))
done

python3 bench/headroom.py table "$CSV" "$OUT/headroom.md" || die "no table (see $CSV)"
echo "headroom: $(( $(date +%s) - START ))s; results in $OUT"
[ "$FAILED" -eq 0 ] || die "$FAILED item(s) did not measure cleanly (logs in $OUT/logs)"
