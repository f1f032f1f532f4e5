#!/usr/bin/env bash
# Smoke test of the benchmarks: every benchmark program runs once in a tiny
# configuration under glibc and under build/libhakmem.so (LD_PRELOAD), and
# must exit 0 and print a result line that parses; the allocator suite's
# workloads must print the same checksum under both, and fail their check
# under an allocator that hands out overlapping blocks; then bench/run.sh
# --smoke must produce its CSVs, Markdown tables and PNGs, run every suite
# item (workloads and real programs) through its check, write its tables
# into a copy of README.md (and change nothing on a second pass), and clean
# up after itself; bench/headroom.sh --smoke must table every bound of the
# items it runs, and its shim must count a known peak; bench/fleet_sim.sh
# --smoke must table a 4-host fleet on a real etcd cluster, see its sites
# propagate, and fail when the hosts do not share a fleet.  No timing decides anything here.
# usage (from the repo root): bash tests/bench/suite.sh BUILD
set -u
source "$(dirname "$0")/../lib.sh"
testlib_begin bench "${1:-build}"
need "$BUILD/bench"
BIN=$BUILD/bench
LIB=$BUILD/libhakmem.so
make_tmpdir WORK hakmem-bench-suite
SHM=/hakmem-bench-suite-$$
track_shm "$SHM"

# Clients in this suite talk to no daemon: a segment name nobody serves.
export HAKMEM_SHM=$SHM
unset LD_PRELOAD HAKMEM_MODE HAKMEM_STATS BENCH_FROM_MAKE BENCH_COMMAND

NUM='[0-9]+(\.[0-9]+)?'
PY=/usr/bin/python3

# run_check NAME REGEX PRELOAD COMMAND...: COMMAND must exit 0 within 60 s and
# print a line matching REGEX.
run_check() {
    local name=$1 re=$2 preload=$3
    shift 3
    local out=$WORK/out err=$WORK/err rc
    timeout -k 5 60 env LD_PRELOAD="$preload" "$@" >"$out" 2>"$err"
    rc=$?
    if [ $rc -eq 124 ]; then
        fail "$name" "timed out after 60 s"
    elif [ $rc -ne 0 ]; then
        fail "$name" "exit $rc: $(grep -v '^\s*$' "$err" | head -n 1)"
    elif grep -q 'cannot be preloaded' "$err"; then
        fail "$name" "ld.so ignored LD_PRELOAD=$preload"
    elif ! grep -qE "$re" "$out"; then
        fail "$name" "output does not parse: $(head -c 200 "$out")"
    else
        ok "$name"
        return 0
    fi
    return 1
}

ALLOCS=(glibc)
if [ -e "$LIB" ]; then
    ALLOCS+=(hakmem)
else
    fail "bench: libhakmem.so" "$LIB does not exist"
fi

for a in "${ALLOCS[@]}"; do
    pre=''
    [ "$a" = hakmem ] && pre=$LIB
    for s in json mir vm mixed; do
        S=${s^^}
        re="^scenario=$S ops=20 median_ns=$NUM p95_ns=$NUM p99_ns=$NUM mean_ns=$NUM faults=[0-9]+ minor=[0-9]+ major=[0-9]+ maxrss_kb=[0-9]+ timer_res_ns=$NUM"
        # Under hakmem the program must find hakmem's own counters: that is
        # the proof that the preloaded library is the allocator that ran.
        [ "$a" = hakmem ] && re="$re bigcache_hits=[0-9]+ bigcache_misses=[0-9]+ sites=[0-9]+"
        run_check "bench: scenarios $S under $a" "$re\$" "$pre" "$BIN/scenarios" --scenario "$s" --ops 20
    done
    for w in churn prodcons server realloc aligned; do
        re="^workload=$w threads=4 ops=[1-9][0-9]* seconds=$NUM ops_per_sec=[0-9]+ maxrss_kb=[1-9][0-9]*\$"
        run_check "bench: workloads $w under $a" "$re" "$pre" \
            "$BIN/workloads" --workload "$w" --threads 4 --ops 3000 --rounds 2
    done
    if run_check "bench: fastpath under $a" "^fastpath baseline fn=fp_empty iters=1000 ns_per_iter=$NUM\$" "$pre" \
        "$BIN/fastpath" --iters 1000; then
        n=$(grep -cE "^fastpath size=[0-9]+ iters=1000 fn=fp_loop_[0-9]+ ns_per_pair=$NUM\$" "$WORK/out")
        [ "$n" -eq 7 ] && ok "bench: fastpath under $a reports 7 sizes" ||
            fail "bench: fastpath under $a reports 7 sizes" "got $n result lines"
    fi
done

# The allocator suite's workloads at their smoke sizes (bench/suite.sh's).
suite_args_of() { BUILD=$BUILD MODE=smoke THREADS=4 bash -c 'source bench/suite.sh && suite_args "$1"' _ "$1"; }
SUITE_WORKLOADS=$(BUILD=$BUILD bash -c 'source bench/suite.sh && echo "${SUITE_WORKLOADS[*]}"')
SHIM=$BUILD/tests/overlap_shim.so
for w in $SUITE_WORKLOADS; do
    read -r -a args <<<"$(suite_args_of "$w")"
    sums=''
    for a in "${ALLOCS[@]}"; do
        pre=''
        [ "$a" = hakmem ] && pre=$LIB
        if run_check "bench: suite $w under $a" '^result ok checksum=[0-9a-f]{16} ops=[1-9][0-9]*( leaked=[0-9]+)?$' \
            "$pre" "$BIN/suite/$w" "${args[@]}"; then
            sums+="$(grep -o 'checksum=[0-9a-f]*' "$WORK/out") "
        fi
    done
    if [ ${#ALLOCS[@]} -eq 2 ] && [ "$(wc -w <<<"$sums")" -eq 2 ]; then
        read -r s1 s2 <<<"$sums"
        [ "$s1" = "$s2" ] && ok "bench: suite $w: the same checksum under glibc and hakmem" ||
            fail "bench: suite $w: the same checksum under glibc and hakmem" "$s1 vs $s2"
    fi
    # Under an allocator that gives one block to two owners the check must
    # fail (exit 3); big-blocks needs more rounds to reach a doubled block.
    [ "$w" = big-blocks ] && args=(--rounds 100 --live 2)
    if [ ! -e "$SHIM" ]; then
        fail "bench: suite $w fails under an overlapping allocator" "$SHIM is missing (make test builds it)"
        continue
    fi
    timeout -k 5 60 env LD_PRELOAD="$SHIM" "$BIN/suite/$w" "${args[@]}" >"$WORK/out" 2>"$WORK/err"
    rc=$?
    if [ $rc -eq 3 ] && grep -q "^$w: check failed: " "$WORK/err" && ! grep -q '^result ok' "$WORK/out"; then
        ok "bench: suite $w fails its check under an overlapping allocator"
    else
        fail "bench: suite $w fails its check under an overlapping allocator" \
             "exit $rc: $(head -n 1 "$WORK/err") $(head -n 1 "$WORK/out")"
    fi
done
if "$BIN/suite/larson" --threads >/dev/null 2>&1 || "$BIN/suite/larson" --nosuch 1 >/dev/null 2>&1; then
    fail "bench: suite workloads reject bad arguments" "exit 0"
else
    ok "bench: suite workloads reject bad arguments"
fi

# The programs reject bad arguments instead of running something else.
if "$BIN/scenarios" --scenario nosuch >/dev/null 2>&1; then
    fail "bench: scenarios rejects an unknown scenario" "exit 0"
else
    ok "bench: scenarios rejects an unknown scenario"
fi
if "$BIN/workloads" --workload prodcons --threads 3 >/dev/null 2>&1; then
    fail "bench: workloads rejects prodcons with odd threads" "exit 0"
else
    ok "bench: workloads rejects prodcons with odd threads"
fi

# The runner refuses what it cannot honour before it starts anything.
for bad in "--memory-weight lots" "--filter nosuchbench" "--configs glibc" "--runs 0"; do
    # shellcheck disable=SC2086
    timeout -k 5 60 bash bench/run.sh --build "$BUILD" --smoke --out "$WORK/refused" $bad >/dev/null 2>"$WORK/err"
    rc=$?
    if [ $rc -eq 64 ] && [ -s "$WORK/err" ]; then
        ok "bench: run.sh refuses $bad"
    else
        fail "bench: run.sh refuses $bad" "exit $rc"
    fi
done

# The runner, end to end, in its tiny mode (a few seconds).
configs=system
[ -e "$LIB" ] && configs=system,hakmem-baseline
[ -e "$LIB" ] && [ -x "$BUILD/hakmemd" ] && configs=$configs,hakmem-learning
RES=$WORK/results
shm_before=$(ls /dev/shm 2>/dev/null | grep -E '^hakmem-bench-([0-9]+$|programs\.)' | sort)
# The README splice on a copy: markers filled, nothing else touched.
cp README.md "$WORK/README.md"
daemons_before=$(pgrep -f -- '--state-dir /tmp/hakmem-bench\.' | sort)
timeout -k 5 400 bash bench/run.sh --build "$BUILD" --smoke --configs "$configs" --out "$RES" --readme "$WORK/README.md" \
    >"$WORK/runner.log" 2>&1 &
RUNNER_PID=$!
track_pid "$RUNNER_PID"
wait_pid "$RUNNER_PID" 420
rc=$?
if [ $rc -ne 0 ]; then
    fail "bench: run.sh --smoke" "exit $rc: $(tail -n 1 "$WORK/runner.log")"
else
    ok "bench: run.sh --smoke ($configs)"
fi
if [ -s "$RES/results.csv" ] && head -n 1 "$RES/results.csv" | grep -q '^run,phase,bench,kind,config,status,'; then
    ok "bench: run.sh wrote results.csv"
    IFS=, read -r -a want <<<"$configs"
    for c in "${want[@]}"; do
        for b in JSON MIR VM MIXED churn prodcons server realloc aligned; do
            if ! grep -q "^1,measured,$b,[a-z]*,$c,ok," "$RES/results.csv"; then
                got=$(grep "^1,measured,$b,[a-z]*,$c," "$RES/results.csv" | cut -d, -f6 | head -n 1)
                fail "bench: run.sh $b under $c" "${got:-no row}"
                continue 2
            fi
        done
        ok "bench: run.sh ran every benchmark under $c"
    done
    if command -v valgrind >/dev/null; then
        # With hakmem-baseline, the hardened library's fast path is measured too.
        fp_configs=${#want[@]}
        [[ ",$configs," == *,hakmem-baseline,* ]] && [ -e "$BUILD/libhakmem-hardened.so" ] &&
            fp_configs=$((fp_configs + 1))
        # Each row ok, with instructions per pair counted (field 18) above 0.
        n=$(awk -F, '$2 == "measured" && $3 ~ /^fastpath-[0-9]+$/ && $4 == "fastpath" && $6 == "ok" && $18 + 0 > 0' \
            "$RES/results.csv" | wc -l)
        [ "$n" -eq $((7 * fp_configs)) ] && ok "bench: run.sh measured the fast path under callgrind, every count above 0" ||
            fail "bench: run.sh measured the fast path under callgrind, every count above 0" "$n of $((7 * fp_configs)) rows"
    fi
else
    fail "bench: run.sh wrote results.csv" "missing or without header"
fi
# Every suite item ran under every configuration and passed its check
# against the reference run; hakmem-learning's learning passes were kept.
if [ -s "$RES/suite.csv" ] && head -n 1 "$RES/suite.csv" | grep -q '^run,phase,item,kind,config,status,wall_s,cpu_s,'; then
    items=$(BUILD=$BUILD bash -c 'source bench/suite.sh && echo "${SUITE_WORKLOADS[*]} ${SUITE_PROGRAMS[*]}"')
    IFS=, read -r -a want <<<"$configs"
    for c in reference "${want[@]}"; do
        phase=measured run=1
        [ "$c" = reference ] && phase=reference run=0
        bad=''
        for it in $items; do
            grep -qE "^$run,$phase,$it,(workload|program),$c,ok,[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+,[1-9][0-9]*," "$RES/suite.csv" ||
                bad+="$it: $(grep "^$run,$phase,$it,[a-z]*,$c," "$RES/suite.csv" | cut -d, -f6 | head -n 1 || true) "
        done
        [ -z "$bad" ] && ok "bench: suite: every item ran and passed its check under $c" ||
            fail "bench: suite: every item ran and passed its check under $c" "${bad:0:300}"
    done
    if [[ ",$configs," == *,hakmem-learning,* ]]; then
        n=$(grep -c '^1,learn,[a-z-]*,[a-z]*,hakmem-learning,ok,' "$RES/suite.csv")
        [ "$n" -eq "$(wc -w <<<"$items")" ] && ok "bench: suite: the learning pass was recorded" ||
            fail "bench: suite: the learning pass was recorded" "$n learn rows"
        [ "$(head -c 8 "$RES/learning_curve.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] &&
            ok "bench: run.sh drew learning_curve.png" || fail "bench: run.sh drew learning_curve.png" "missing or not a PNG"
        # git's commands are learned apart, sqlite3's under its own (-cmd to
        # load, -header to query), and the table says which is which.  At
        # smoke size most runs are short: one that ends before it is 10 ms
        # old never registers (HAKMEM_REGISTER_AFTER_MS), and the table lists
        # a key only once a run of it counted (20 ms of CPU).
        WHY="$("$PY" -c 'import json,sys; print(sorted((b["exe"].rsplit("/",1)[-1], b["command"]) for b in json.load(open(sys.argv[1]))["binaries"] if b["exe"].rsplit("/",1)[-1] in ("git", "sqlite3")))' "$RES/logs/suite-binaries.json" 2>&1 | head -c 600); $(grep -E '^\| (sqlite3|binary) ' "$RES/table.md" 2>&1 | head -c 400)"
        check "bench: the daemon learned each command of a binary apart, and the table shows binary and command" \
            bash -c "'$PY' -c '
import json, sys
keys = {(b[\"exe\"].rsplit(\"/\", 1)[-1], b[\"command\"]) for b in json.load(open(sys.argv[1]))[\"binaries\"]}
git = {c for e, c in keys if e == \"git\"}
sqlite = {c for e, c in keys if e == \"sqlite3\"}
sys.exit(not (sqlite <= {\"-cmd\", \"-header\"} and len(sqlite) >= 1 and len(git) >= 2 and \"add\" in git))
' '$RES/logs/suite-binaries.json' && grep -qE '^\| sqlite3 \| -(cmd|header) \| [0-9]+ \|' '$RES/table.md' && grep -q '^| binary | command | runs |' '$RES/table.md'"
    fi
    grep -q '^## Allocator suite: standard patterns and real programs' "$RES/table.md" &&
        grep -qE '^\| \*\*geometric mean\*\* \| \| \| \*\*[0-9.]+\*\*' "$RES/table.md" &&
        ok "bench: table.md has the suite's tables" || fail "bench: table.md has the suite's tables" "missing"
    check "bench: table.md judges every item against the fastest other allocator and glibc's peak RSS" \
        grep -qE '^\| larson \| (glibc|jemalloc|mimalloc|tcmalloc) \| [0-9.]+ \| (PASS|\*\*MISS\*\*)[^|]* \| [0-9.]+ \| (PASS|\*\*MISS\*\*)' \
        "$RES/sections/suite-targets.md"
else
    fail "bench: run.sh wrote suite.csv" "missing or without header"
fi
# Outside the markers the copy must be README.md as it was; inside, the pieces.
strip_marked() { awk '/^<!-- bench:[a-z0-9-]+:begin -->/ { print; skip = 1; next }
                      /^<!-- bench:[a-z0-9-]+:end -->/ { skip = 0 } !skip' "$1"; }
if ! cmp -s <(strip_marked README.md) <(strip_marked "$WORK/README.md"); then
    fail "bench: README splice changes only what is between markers" \
         "$(diff <(strip_marked README.md) <(strip_marked "$WORK/README.md") | head -n 5)"
elif ! awk '/^<!-- bench:suite:begin -->/ { on = 1 } /^<!-- bench:suite:end -->/ { on = 0 }
            on && /^\| larson \| workload \|/ { n++ } END { exit n == 3 ? 0 : 1 }' "$WORK/README.md" ||
     ! grep -qE 'Generated by `bash bench/run.sh [^`]*--smoke' "$WORK/README.md"; then
    fail "bench: README splice filled the suite's tables" "no larson rows or no provenance between the markers"
else
    ok "bench: README splice filled the markers and nothing else"
fi
cp "$WORK/README.md" "$WORK/README.again"
if "$PY" bench/readme_tables.py "$WORK/README.again" "$RES/sections" >/dev/null &&
   cmp -s "$WORK/README.md" "$WORK/README.again"; then
    ok "bench: README splice is idempotent"
else
    fail "bench: README splice is idempotent" "a second pass changed the file"
fi
# Markers that do not pair up leave the file alone.
printf 'keep\n<!-- bench:suite:begin -->\nold\n' >"$WORK/README.bad"
cp "$WORK/README.bad" "$WORK/README.bad.orig"
if "$PY" bench/readme_tables.py "$WORK/README.bad" "$RES/sections" 2>/dev/null; then
    fail "bench: README splice refuses unpaired markers" "exit 0"
elif ! cmp -s "$WORK/README.bad" "$WORK/README.bad.orig"; then
    fail "bench: README splice refuses unpaired markers" "the file changed"
else
    ok "bench: README splice refuses unpaired markers"
fi
if [ -s "$RES/table.md" ] && grep -q '^## Published scenarios' "$RES/table.md" &&
   grep -q '^## Multi-threaded workloads' "$RES/table.md"; then
    ok "bench: run.sh wrote table.md"
else
    fail "bench: run.sh wrote table.md" "missing or incomplete"
fi
if grep -q 'every process its own binary' "$RES/daemon_scale.txt" 2>/dev/null &&
   grep -q '^## The daemon: one interval at scale' "$RES/table.md" &&
   grep -qE '^\| every process its own binary \| [0-9,]+ \| [0-9,]+ \| [0-9.]+ \|' "$RES/table.md"; then
    ok "bench: run.sh measured the daemon at scale and tabled it"
else
    fail "bench: run.sh measured the daemon at scale and tabled it" \
         "$(tail -n 2 "$RES/logs/daemon_scale.log" 2>/dev/null | tr '\n' ' ')"
fi
if [ "$(head -c 8 "$RES/chart.png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ]; then
    ok "bench: run.sh wrote chart.png"
else
    fail "bench: run.sh wrote chart.png" "missing or not a PNG"
fi
# The core's before and after: the library of another revision (this one,
# HEAD, so the pipeline is what is checked) against this tree's.
BA=$WORK/before-after
if timeout -k 5 600 bash bench/before_after.sh --rev HEAD --smoke --build "$BUILD" --out "$BA" >"$WORK/ba.log" 2>&1 &&
   grep -qE '^\| larson \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|$' "$BA/sections/core-before-after.md" &&
   grep -q '^| \*\*geometric mean\*\*' "$BA/sections/core-before-after.md"; then
    ok "bench: before_after.sh builds an earlier library and tables both against glibc"
else
    fail "bench: before_after.sh builds an earlier library and tables both against glibc" "$(tail -n 3 "$WORK/ba.log")"
fi
# The learning phase's verdict: a binary with one or two runs (nearly all
# of its runs too short to count) is left aside and does not hold the
# others' verdict at exploring; one with three runs still exploring does.
check "bench: the learning phase settles without binaries the daemon took fewer than three runs of" bash -c '
v() { printf "%s" "$1" | "$0" scripts/settled.py; }
v "{\"binaries\":[{\"observations\":2,\"settled\":false},{\"observations\":9,\"settled\":true}]}" | grep -q "^settled: 1 of 1 .*1 with fewer than 3 runs left aside" &&
! v "{\"binaries\":[{\"observations\":3,\"settled\":false},{\"observations\":9,\"settled\":true}]}" >/dev/null &&
! v "{\"binaries\":[{\"observations\":2,\"settled\":false}]}" >/dev/null' "$PY"
# With --races (the bench's learning phase) a binary still racing an arm
# against its choice holds the verdict at exploring; without, it is settled.
check "bench: the learning phase waits for a binary racing an arm against its choice" bash -c '
v() { printf "%s" "$1" | "$0" scripts/settled.py "${@:2}"; }
j="{\"binaries\":[{\"observations\":30,\"settled\":true,\"racing\":\"populate\"},{\"observations\":9,\"settled\":true,\"racing\":null}]}"
v "$j" | grep -q "^settled: 2 of 2" &&
v "$j" --races | grep -q "^exploring: 2 of 2 binaries have tried every arm, 1 racing" &&
v "{\"binaries\":[{\"observations\":9,\"settled\":true,\"racing\":null}]}" --races | grep -q "^settled"' "$PY"
# The learning table's "shown": five runs all about 10% worse show it; a
# median 10% worse among runs that spread from 0.9 to 1.3 does not; two
# runs are too few to say.
check "bench: a worse item is shown only when its runs' lower bound is beyond 5%" "$PY" -c '
import sys
sys.path.insert(0, "bench")
from analyze_suite import lower_bound, WORSE
sys.exit(not (lower_bound([1.10, 1.12, 1.08, 1.09, 1.11]) > WORSE
              and lower_bound([1.2, 0.9, 1.1, 1.3, 0.95]) < WORSE
              and lower_bound([1.1, 1.1]) is None))'
# The targets' verdicts: runs all 3% below a limit pass and show it; all 3%
# above miss and show it; a median below (or above) among runs that spread
# from 0.8 to 1.3 passes (misses) within noise; two runs cannot show anything.
check "bench: a target's verdict is shown only when its runs' 95% bound is on the median's side of the limit" "$PY" -c '
import sys
sys.path.insert(0, "bench")
from suite_targets import verdict
sys.exit(not (verdict([0.97, 0.96, 0.98, 0.97, 0.97], 1.0) == (0.97, "PASS")
              and verdict([1.03, 1.04, 1.02, 1.03, 1.03], 1.0) == (1.03, "**MISS**")
              and verdict([0.8, 1.3, 0.95, 1.2, 0.9], 1.0)[1] == "PASS (within noise)"
              and verdict([1.08, 1.01], 1.05)[1] == "PASS (within noise)"
              and verdict([1.3, 0.85, 1.1, 0.9, 1.2], 1.0)[1] == "**MISS** (within noise)"
              and verdict([1.2, 0.9], 1.0)[1] == "**MISS** (within noise)"))'
# How far choosing per item could go: on two items, the best of each is
# taken apart (tcmalloc's 0.8 on one, hakmem itself on the other), and an
# allocator with no successful run of an item does not count.
check "bench: the per-item best takes each item's lowest median among the allocators that ran it" "$PY" -c '
import sys, statistics
sys.path.insert(0, "bench")
from suite_targets import per_item_best
class S:
    items = ["a", "b"]
    configs = ["hakmem-baseline", "system", "tcmalloc", "mimalloc"]
    ok = {("a", "hakmem-baseline"): 1, ("a", "system"): 1, ("a", "tcmalloc"): 1, ("a", "mimalloc"): 1,
          ("b", "hakmem-baseline"): 1, ("b", "system"): 1, ("b", "tcmalloc"): 1}
    r = {("a", "system"): 1.2, ("a", "tcmalloc"): 0.8, ("a", "mimalloc"): 0.9,
         ("b", "system"): 1.1, ("b", "tcmalloc"): 1.05, ("b", "mimalloc"): 0.5}
    def paired(self, it, c, base, field):
        return self.r[(it, c)]
g, wins = per_item_best(S(), "wall_s")
sys.exit(not (abs(g - 0.8 ** 0.5) < 1e-9 and wins == {"tcmalloc": 1, "hakmem-baseline": 1}))'
if bash bench/before_after.sh --rev no-such-revision >"$WORK/ba-bad.log" 2>&1; then
    fail "bench: before_after.sh refuses an unknown revision" "it exited 0"
else
    check "bench: before_after.sh refuses an unknown revision" grep -q "no revision 'no-such-revision'" "$WORK/ba-bad.log"
fi
# Every per-binary arm set by hand, against the default arm.
AR=$WORK/arms
if timeout -k 5 900 bash bench/arms.sh --smoke --build "$BUILD" --out "$AR" >"$WORK/arms.log" 2>&1 &&
   grep -qE '^\| larson \| [0-9.]+ / [0-9.]+ \| [0-9.]+ / [0-9.]+ \| [0-9.]+ / [0-9.]+ \| [0-9.]+ / [0-9.]+ \| [0-9.]+ / [0-9.]+ \| [0-9.]+ / [0-9.]+ \| [a-z-]+ \|$' \
       "$AR/sections/suite-arms.md" &&
   grep -q '^| item | lean | fast | fast-thp | compact | populate | thp | best |$' "$AR/sections/suite-arms.md"; then
    ok "bench: arms.sh runs the suite on every arm hakmemd --list-arms names and tables each against the default"
else
    fail "bench: arms.sh runs the suite on every arm hakmemd --list-arms names and tables each against the default" \
         "$(tail -n 3 "$WORK/arms.log"; head -n 12 "$AR/sections/suite-arms.md" 2>/dev/null)"
fi
# The headroom bounds.  First the shim's count against a program whose peak
# of live requested bytes is known (libc's own thread and stdio blocks come
# on top: a few KiB), with a floor of at least that peak plus some pages of
# code; then bench/headroom.sh --smoke on a threaded C workload, the C++
# one (operator new through the shim) and two real programs of several
# processes (gcc's driver forks cc1 and as): every item must come out with
# an instruction share, a system time share, a peak RSS, a peak of live
# bytes and a floor above it (code pages at least), all numbers, and the
# table their bounds.
HR_SHIM=$BUILD/bench/headroom_shim.so
if [ ! -x "$BUILD/tests/headroom_known" ] || [ ! -e "$HR_SHIM" ]; then
    fail "bench: headroom_shim.so counts the live bytes of a program whose peak is known" \
         "$BUILD/tests/headroom_known or $HR_SHIM is missing (make test builds them)"
else
    rm -f "$WORK/known-peak".*
    expected=$(timeout -k 5 60 env HAKMEM_HEADROOM_PEAKS="$WORK/known-peak" LD_PRELOAD="$HR_SHIM:$LIB" \
                   HAKMEM_MODE=baseline "$BUILD/tests/headroom_known" 2>&1)
    counted=$(cat "$WORK/known-peak".* 2>/dev/null)
    WHY="program: $expected; shim: ${counted:-no report}"
    check "bench: headroom_shim.so counts the live bytes of a program whose peak is known" "$PY" -c '
import re, sys
want = dict(re.findall(r"(\w+)=(\d+)", sys.argv[1]))
got = dict(re.findall(r"(\w+)=(\S+)", sys.argv[2]))
peak, live = int(got["peak_live_bytes"]), int(got["live_at_exit_bytes"])
expected = int(want["expected_peak"])
floor, fixed = int(got["floor_bytes"]), int(got["floor_fixed_bytes"])
sys.exit(not (expected <= peak <= expected + 16384 and live <= 16384 and got["table_full"] == "0"
              and fixed > 0 and floor >= peak))' \
        "$expected" "$counted"
fi
HR=$WORK/headroom
HR_ITEMS=larson,big-blocks,sqlite,gcc
hr_left_before=$(ls -d /tmp/hakmem-headroom.* /dev/shm/hakmem-headroom-* 2>/dev/null | sort)
if timeout -k 5 600 bash bench/headroom.sh --smoke --items "$HR_ITEMS" --build "$BUILD" --out "$HR" >"$WORK/headroom.log" 2>&1 &&
   awk -F, -v want="$(tr ',' '\n' <<<"$HR_ITEMS" | wc -l)" '
       NR == 1 { next }
       { n++
         if (!($5 == "ok" && $8 ~ /^0\.[0-9]+$/ && $8 + 0 > 0 && $15 ~ /^[01]\.[0-9]+$/ &&
               $16 ~ /^[1-9][0-9]*$/ && $17 ~ /^[1-9][0-9]*$/ && $19 ~ /^[1-9][0-9]*$/ && $19 + 0 > $17 + 0)) bad++ }
       END { exit n == want && !bad ? 0 : 1 }' "$HR/headroom.csv" &&
   [ "$(grep -cE '^\| [a-z-]+ \| [^|]+ \| [0-9.]+ \| [0-9.]+ \| -?[0-9.]+ \| [0-9]+ \| [0-9]+ \| [^ |]+ \| [0-9.]+ \| [0-9]+ \| [0-9.]+ \|$' "$HR/headroom.md")" = 4 ] &&
   grep -qE '^\| \*\*geometric mean\*\* \| \| \| \| \*\*[0-9.]+\*\* \| \| \| \| \*\*[0-9.]+\*\* \| \| \*\*[0-9.]+\*\* \|$' "$HR/headroom.md"; then
    ok "bench: headroom.sh measures each item's allocator share, system time and peak of live bytes, and tables the bounds"
else
    fail "bench: headroom.sh measures each item's allocator share, system time and peak of live bytes, and tables the bounds" \
         "$(tail -n 3 "$WORK/headroom.log")" "$(cat "$HR/headroom.csv" 2>/dev/null)"
fi
WHY="left behind: $(comm -13 <(echo "$hr_left_before") <(ls -d /tmp/hakmem-headroom.* /dev/shm/hakmem-headroom-* 2>/dev/null | sort))"
check "bench: headroom.sh removes its temporary files" \
    test -z "$(comm -13 <(echo "$hr_left_before") <(ls -d /tmp/hakmem-headroom.* /dev/shm/hakmem-headroom-* 2>/dev/null | sort))"
if bash bench/run.sh --build "$BUILD" --filter suite --configs hakmem-arm-no-such-arm --smoke --no-readme \
       --out "$WORK/arm-bad" >"$WORK/arm-bad.log" 2>&1; then
    fail "bench: run.sh refuses an arm hakmemd does not know" "it exited 0"
else
    check "bench: run.sh refuses an arm hakmemd does not know" \
        grep -q "unknown configuration 'hakmem-arm-no-such-arm'" "$WORK/arm-bad.log"
fi

# The simulated fleet at its smallest: a real 3-member etcd cluster and 4
# hosts.  The table must have its rows, every probe must have reached
# every other host, and the run must leave nothing behind.  Hosts that
# cannot see each other (each in a fleet of its own, through a hakmemd
# that names one) must make it fail.
fleet_sim_ok() {   # OUT: the table's rows and the figures behind them
    [ "$(grep -c '^| ' "$1/sections/fleet-sim.md")" = 10 ] &&
    grep -qE '^\| puts a second .* \| [0-9.]+; [0-9.]+ \| [0-9.]+ \|$' "$1/sections/fleet-sim.md" &&
    grep -qE '^\| a site settled on one host.* \| [0-9.]+ s / [0-9.]+ s \| .* \|$' "$1/sections/fleet-sim.md" &&
    $PY -c "
import json, sys
j = json.load(open('$1/figures.json'))
f, probes = j['figures'], j['probes']
sys.exit(not (f['host_puts'] > 0 and f['grpc_out_Bps'] > 0 and f['db'] > 0 and len(probes) == 2 and
              all(len(p['seen']) == j['hosts'] - 1 and min(p['seen'].values()) > 0 for p in probes)))"
}
fleet_sim_left() {   # LOG: what the run named as its own and left behind
    local pid dir
    pid=$(sed -n 's/^fleet-sim: pid \([0-9]*\), temporary files in .*/\1/p' "$1")
    dir=$(sed -n 's/^fleet-sim: pid [0-9]*, temporary files in //p' "$1")
    [ -n "$pid" ] && [ -n "$dir" ] || { echo "the run named no pid or directory"; return; }
    [ -e "$dir" ] && echo "$dir"
    ls /dev/shm | grep "^hkd-fleet-sim-$pid-" | head -3
    pgrep -f -- "--state-dir $dir/" | head -3
}
if ! command -v etcd >/dev/null; then
    fail "bench: fleet_sim.sh --smoke" "etcd is not installed (make deps installs it)"
else
    FS=$WORK/fleet-sim
    if timeout -k 10 300 bash bench/fleet_sim.sh --smoke --build "$BUILD" --out "$FS" >"$WORK/fs.log" 2>&1 &&
       fleet_sim_ok "$FS"; then
        ok "bench: fleet_sim.sh --smoke measures a 4-host fleet on a 3-member etcd cluster and sees sites propagate"
    else
        fail "bench: fleet_sim.sh --smoke measures a 4-host fleet on a 3-member etcd cluster and sees sites propagate" \
             "$(tail -n 3 "$WORK/fs.log")" "$(cat "$FS/sections/fleet-sim.md" 2>/dev/null)"
    fi
    left=$(fleet_sim_left "$WORK/fs.log")
    WHY="left behind: $left"
    check "bench: fleet_sim.sh removes its hosts, their segments and its directory" test -z "$left"
    mkdir -p "$WORK/split"
    ln -sf "$BUILD/hakmemctl" "$WORK/split/hakmemctl"
    printf '#!/bin/sh\nexec "%s" "$@" --fleet-name "split$$"\n' "$BUILD/hakmemd" >"$WORK/split/hakmemd"
    chmod +x "$WORK/split/hakmemd"
    if timeout -k 10 300 bash bench/fleet_sim.sh --smoke --build "$WORK/split" --out "$WORK/fs-split" \
           >"$WORK/fs-split.log" 2>&1; then
        fail "bench: fleet_sim.sh fails when the hosts do not share a fleet" "it exited 0"
    else
        WHY="$(tail -n 2 "$WORK/fs-split.log")"
        check "bench: fleet_sim.sh fails when the hosts do not share a fleet" \
            grep -q "hosts not warm after .* 0 other hosts" "$WORK/fs-split.log"
    fi
    left=$(fleet_sim_left "$WORK/fs-split.log")
    WHY="left behind: $left"
    check "bench: fleet_sim.sh cleans up after a failed run too" test -z "$left"
fi

# Whatever the runner started must be gone: daemon, its segment, temp dir.
left=$(comm -13 <(echo "$shm_before") <(ls /dev/shm 2>/dev/null | grep -E '^hakmem-bench-([0-9]+$|programs\.)' | sort))
stray=$(comm -13 <(echo "$daemons_before") <(pgrep -f -- '--state-dir /tmp/hakmem-bench\.' | sort))
if [ -n "$left" ]; then
    fail "bench: run.sh cleaned up" "shm segment left behind: $left"
elif [ -n "$stray" ]; then
    fail "bench: run.sh cleaned up" "a benchmark hakmemd is still running"
else
    ok "bench: run.sh cleaned up"
fi

finish
