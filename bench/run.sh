#!/usr/bin/env bash
# hakmem benchmark runner: `make bench` calls `bash bench/run.sh --build BUILD ...`.
#
# Runs the published scenarios (bench/scenarios), the multi-threaded workloads
# (bench/workloads), the fast-path microbenchmark (bench/fastpath under
# callgrind), the daemon at scale, and the allocator suite (bench/suite.sh:
# standard allocator patterns and real programs, timed with their peak RSS)
# under every configuration: hakmem-baseline, hakmem-learning, system,
# jemalloc, mimalloc, tcmalloc; with hakmem-baseline, the fast path of
# libhakmem-hardened.so too (column hakmem-hardened).  Allocators are swapped
# with LD_PRELOAD; the programs themselves only link glibc.
#
# Runs alternate (run 1 of every benchmark under every configuration, then
# run 2, ...; the configuration order rotates from one run to the next) so
# that drift on a shared machine falls on all configurations alike.
#
# A configuration that crashes, hangs or prints nothing usable is recorded as
# failed for that run and the runner carries on.  Everything it starts (the
# daemon, its segment, temp files) is removed on exit, whatever the exit.
#
# Writes to --out: results.csv and suite.csv (every run), table.md and
# sections/ (its pieces), chart.png, learning_curve.png, failures.txt, logs/
# (stderr of every run, per configuration; hakmemd's log); and the tables
# into README.md between its bench markers (bench/readme_tables.py).
set -uo pipefail

usage() {
    cat <<'EOF'
usage: bash bench/run.sh [options]
  --build DIR      build directory holding bench/ programs, libhakmem.so, hakmemd (default build)
  --runs N         measured runs of every benchmark per configuration (default: scenarios
                   and workloads 10, the suite 5; quick 3; smoke 1)
  --warmup N       scenarios and workloads: unmeasured runs before them (default 2)
  --learn-max S    hakmem-learning only: after the --learn passes, more passes until the
                   daemon has settled (hakmemctl sites and binaries: "settled", and no
                   binary racing an arm against its choice), for at most S seconds
                   (default 1800; quick 20; smoke 0)
  --learn N        hakmem-learning only: unmeasured passes over the benchmarks with the
                   daemon running, before measuring (default 3; quick 1, the suite 2;
                   smoke 1); the scenarios and the suite each have their own daemon,
                   started cold
  --filter REGEX   only benchmarks whose "PART NAME" matches (extended regex, case-insensitive):
                   micro JSON|MIR|VM|MIXED|churn|prodcons|server|realloc|aligned|fastpath|daemon,
                   suite larson|mstress|remote-free|cache-thrash|cache-scratch|big-blocks|
                   small-leaky|grow-shrink|interp-churn|python|sqlite|perl|gcc|git
                   (e.g. --filter suite: the suite alone)
  --configs LIST   comma-separated subset of: hakmem-baseline,hakmem-learning,system,
                   jemalloc,mimalloc,tcmalloc (default all); also hakmem-arm-NAME: learning
                   off, the per-binary arm NAME set by hand (hakmemd --list-arms)
  --out DIR        output directory (default bench/results)
  --threads N      threads of the multi-threaded workloads (default 4)
  --interval MS    hakmemd collection interval for hakmem-learning (default 200)
  --timeout S      a single run taking longer is killed and recorded as failed (default 120)
  --memory-weight NS  the suite's cost = CPU s + NS x 1e-9 x peak RSS MiB x wall s; the
                   learning daemon is given the same (default: hakmemd's own)
  --readme FILE    write the tables into FILE between its bench markers (default README.md
                   for a full or quick run of everything under every configuration)
  --no-readme      write no README
  --quick          3 runs, 1 warm-up, 1 or 2 learning passes, smaller sizes: about 5 minutes
  --smoke          1 run, no warm-up, tiny sizes: checks the pipeline end to end (tests)
  -h, --help       this text
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

BUILD=build RUNS=10 WARMUP=2 LEARN=3 FILTER='' OUT=bench/results THREADS=4
INTERVAL=200 TIMEOUT=120 MODE=full LEARN_MAX_S=1800 SUITE_RUNS=5 SUITE_LEARN=3
# The weight of memory in the suite's cost, ns of CPU per MiB-second of
# RSS: the learning daemon's (its default unless --memory-weight is given,
# which both then use).
MEMORY_WEIGHT_NS=
README_OUT='' readme_set=
CONFIGS_ALL=(hakmem-baseline hakmem-learning system jemalloc mimalloc tcmalloc)
CONFIGS_ARG=''
runs_set='' warmup_set='' learn_set='' learn_max_set=''
ARGV_TEXT="bash bench/run.sh $*"
# Under `make bench` the command worth printing is make's, not this script's
# (the Makefile's bench target says so; any other make, e.g. make test, does not).
if [ -n "${BENCH_FROM_MAKE:-}" ]; then
    rest=$(sed -E 's/^ *--build +[^ ]+ *//' <<<"$*")
    ARGV_TEXT="make bench${rest:+ BENCH_ARGS='$rest'}"
fi

need() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "run.sh: $1 needs a value" >&2; exit 64; }; }
posint() { [[ $2 =~ ^[0-9]+$ ]] || { echo "run.sh: $1 needs a non-negative integer, got '$2'" >&2; exit 64; }; }
while [ $# -gt 0 ]; do
    case $1 in
        --build)    need "$@"; BUILD=$2; shift 2 ;;
        --runs)     need "$@"; posint "$1" "$2"; RUNS=$2; runs_set=1; shift 2 ;;
        --warmup)   need "$@"; posint "$1" "$2"; WARMUP=$2; warmup_set=1; shift 2 ;;
        --learn)    need "$@"; posint "$1" "$2"; LEARN=$2; learn_set=1; shift 2 ;;
        --learn-max) need "$@"; posint "$1" "$2"; LEARN_MAX_S=$2; learn_max_set=1; shift 2 ;;
        --filter)   need "$@"; FILTER=$2; shift 2 ;;
        --configs)  need "$@"; CONFIGS_ARG=$2; shift 2 ;;
        --out)      need "$@"; OUT=$2; shift 2 ;;
        --threads)  need "$@"; posint "$1" "$2"; THREADS=$2; shift 2 ;;
        --interval) need "$@"; posint "$1" "$2"; INTERVAL=$2; shift 2 ;;
        --timeout)  need "$@"; posint "$1" "$2"; TIMEOUT=$2; shift 2 ;;
        --memory-weight) need "$@"
                    [[ $2 =~ ^[0-9]+(\.[0-9]+)?([eE][0-9]+)?$ ]] ||
                        { echo "run.sh: --memory-weight needs a non-negative number, got '$2'" >&2; exit 64; }
                    MEMORY_WEIGHT_NS=$2; shift 2 ;;
        --readme)   need "$@"; README_OUT=$2; readme_set=1; shift 2 ;;
        --no-readme) README_OUT=''; readme_set=1; shift ;;
        --quick)    MODE=quick; shift ;;
        --smoke)    MODE=smoke; shift ;;
        -h|--help)  usage; exit 0 ;;
        *)          echo "run.sh: unknown option '$1'" >&2; usage >&2; exit 64 ;;
    esac
done
[ "$RUNS" -ge 1 ] || { echo "run.sh: --runs must be at least 1" >&2; exit 64; }

# Sizes of each mode.  Explicit --runs/--warmup/--learn/--learn-max win over the mode.
case $MODE in
    full)  SC_OPS=() ; WL_DIV=1;   FP_ITERS=200000 ;;
    quick) [ -z "$runs_set" ] && RUNS=3 SUITE_RUNS=3; [ -z "$warmup_set" ] && WARMUP=1
           [ -z "$learn_set" ] && LEARN=1 SUITE_LEARN=2; [ -z "$learn_max_set" ] && LEARN_MAX_S=20
           SC_OPS=() ; WL_DIV=4;   FP_ITERS=50000 ;;
    smoke) [ -z "$runs_set" ] && RUNS=1 SUITE_RUNS=1; [ -z "$warmup_set" ] && WARMUP=0
           [ -z "$learn_set" ] && LEARN=1 SUITE_LEARN=1; [ -z "$learn_max_set" ] && LEARN_MAX_S=0
           SC_OPS=(--ops 20); WL_DIV=500; FP_ITERS=2000 ;;
esac
[ -n "$runs_set" ] && SUITE_RUNS=$RUNS
[ -n "$learn_set" ] && SUITE_LEARN=$LEARN
# A run of everything under every configuration replaces README.md's tables.
if [ -z "$readme_set" ] && [ "$MODE" != smoke ] && [ -z "$FILTER" ] && [ -z "$CONFIGS_ARG" ]; then
    README_OUT=$ROOT/README.md
fi

PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || { echo "run.sh: python3 is needed" >&2; exit 69; }

BIN=$BUILD/bench
for p in scenarios workloads fastpath; do
    [ -x "$BIN/$p" ] || { echo "run.sh: $BIN/$p is missing: build it first (make bench-programs)" >&2; exit 69; }
done
LIBHAKMEM=$(cd "$(dirname "$BUILD/libhakmem.so")" && pwd)/libhakmem.so
# The hardened build's fast path is measured beside the default one (fast
# path only: its other costs are the default build's).
LIBHARDENED=$(dirname "$LIBHAKMEM")/libhakmem-hardened.so
HAKMEMD=$BUILD/hakmemd
if [ -z "$MEMORY_WEIGHT_NS" ]; then
    MEMORY_WEIGHT_NS=$("$HAKMEMD" --help 2>/dev/null | sed -n 's/.*(default \([0-9.]*\): cloud prices).*/\1/p')
    [ -n "$MEMORY_WEIGHT_NS" ] || { echo "run.sh: cannot read the memory weight from $HAKMEMD --help" >&2; exit 1; }
fi

# ---- peers: Debian's packages, installed when missing ----
LIBDIR=/usr/lib/x86_64-linux-gnu
declare -A PEER_LIB=([jemalloc]=$LIBDIR/libjemalloc.so.2 [mimalloc]=$LIBDIR/libmimalloc.so.2
                     [tcmalloc]=$LIBDIR/libtcmalloc_minimal.so.4)
declare -A PEER_PKG=([jemalloc]=libjemalloc2 [mimalloc]=libmimalloc2.0 [tcmalloc]=libtcmalloc-minimal4)

# The per-binary arms as the environment that sets each by hand.
declare -A ARM_ENV=()
if [ -x "$HAKMEMD" ]; then
    while read -r name env; do ARM_ENV[$name]=$env; done < <("$HAKMEMD" --list-arms 2>/dev/null)
fi

# ---- which configurations run ----
if [ -n "$CONFIGS_ARG" ]; then
    IFS=, read -r -a CONFIGS <<<"$CONFIGS_ARG"
    for c in "${CONFIGS[@]}"; do
        case $c in
            hakmem-arm-*) [ -n "${ARM_ENV[${c#hakmem-arm-}]+set}" ] ||
                { echo "run.sh: unknown configuration '$c' ($HAKMEMD --list-arms names the arms)" >&2; exit 64; } ;;
            *) [[ " ${CONFIGS_ALL[*]} " == *" $c "* ]] || { echo "run.sh: unknown configuration '$c'" >&2; exit 64; } ;;
        esac
    done
else
    CONFIGS=("${CONFIGS_ALL[@]}")
fi

declare -A UNAVAILABLE=()
missing_pkgs=()
for c in "${CONFIGS[@]}"; do
    if [ -n "${PEER_LIB[$c]:-}" ] && [ ! -e "${PEER_LIB[$c]}" ]; then
        missing_pkgs+=("${PEER_PKG[$c]}")
    fi
done
if [ ${#missing_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "run.sh: installing ${missing_pkgs[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing_pkgs[@]}" >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                  "${missing_pkgs[@]}" >/dev/null 2>&1; }
    fi
fi
for c in "${CONFIGS[@]}"; do
    case $c in
        hakmem-baseline|hakmem-learning|hakmem-arm-*)
            [ -e "$LIBHAKMEM" ] || UNAVAILABLE[$c]="$BUILD/libhakmem.so does not exist (make lib)" ;;
    esac
    if [ -n "${PEER_LIB[$c]:-}" ] && [ ! -e "${PEER_LIB[$c]}" ]; then
        UNAVAILABLE[$c]="${PEER_LIB[$c]} missing (apt-get install ${PEER_PKG[$c]})"
    fi
done
if [[ " ${CONFIGS[*]} " == *" hakmem-learning "* ]] && [ -z "${UNAVAILABLE[hakmem-learning]:-}" ] &&
   [ ! -x "$HAKMEMD" ]; then
    UNAVAILABLE[hakmem-learning]="$HAKMEMD does not exist yet: the daemon is not built"
fi

mkdir -p "$OUT/logs" || exit 73
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d /tmp/hakmem-bench.XXXXXX) || exit 73
SHM_NAME=/hakmem-bench-$$
DAEMON_PID=''

stop_daemon() {
    if [ -n "$DAEMON_PID" ]; then
        kill -TERM "$DAEMON_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null
        wait "$DAEMON_PID" 2>/dev/null
        DAEMON_PID=''
    fi
    rm -f "/dev/shm${SHM_NAME}" "/dev/shm${SHM_NAME}.lock"
}
cleanup() {
    stop_daemon
    rm -rf "$TMP"
    [ -n "${SUITE_SCRATCH:-}" ] && rm -rf "$SUITE_SCRATCH"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

start_daemon() {
    mkdir -p "$TMP/state"
    rm -f "/dev/shm${SHM_NAME}" "/dev/shm${SHM_NAME}.lock"
    "$HAKMEMD" --foreground --shm "$SHM_NAME" --socket "$TMP/ctl.sock" --state-dir "$TMP/state" \
        --interval "$INTERVAL" --memory-weight "$MEMORY_WEIGHT_NS" >"$OUT/logs/hakmemd.log" 2>&1 &
    DAEMON_PID=$!
    for _ in $(seq 100); do
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        [ -e "/dev/shm${SHM_NAME}" ] && return 0
        sleep 0.1
    done
    local why="did not create /dev/shm${SHM_NAME} within 10 s"
    kill -0 "$DAEMON_PID" 2>/dev/null || why="exited at start: $(tail -n 1 "$OUT/logs/hakmemd.log")"
    stop_daemon
    UNAVAILABLE[hakmem-learning]="hakmemd $why"
    return 1
}

# Whether the daemon is done exploring: "settled ..." when every site that
# carries a share of the bytes allocated is exploiting its best arm (every
# arm that matters for its sizes tried once, the best mean published) and
# every binary has tried every arm and races none against its choice (a
# race still running may yet change the choice), else "exploring ...".
# Exploration does not stop there: UCB1 revisits an arm now and then,
# during measured runs too, as it would in production.
learning_verdict() {
    # Clients report at exit; the daemon takes it in at its next interval.
    sleep "$(awk -v ms="$INTERVAL" 'BEGIN { printf "%.3f", 2 * ms / 1000 }')"
    local sites binaries
    sites=$("$BUILD/hakmemctl" --socket "$TMP/ctl.sock" --json sites --top 0 2>/dev/null | "$PY" "$ROOT/scripts/settled.py")
    binaries=$("$BUILD/hakmemctl" --socket "$TMP/ctl.sock" --json binaries 2>/dev/null | "$PY" "$ROOT/scripts/settled.py" --races)
    if [[ $sites == settled* && $binaries == settled* ]]; then
        echo "settled: ${sites#*: }; ${binaries#*: }"
    else
        echo "exploring: ${sites#*: }; ${binaries#*: }"
    fi
}

# learn_phase PASS_FN MIN: with the daemon up, PASS_FN 1, PASS_FN 2, ...: at
# least MIN passes, then more until the daemon has settled or --learn-max
# seconds have gone by.  Sets LEARNED to what happened.
learn_phase() { # pass_fn min_passes
    local fn=$1 min=$2 t0 l=0 verdict=''
    t0=$(date +%s)
    while :; do
        l=$((l + 1))
        "$fn" "$l"
        [ "$l" -lt "$min" ] && continue
        verdict=$(learning_verdict)
        case $verdict in settled*) break ;; esac
        [ $(( $(date +%s) - t0 )) -ge "$LEARN_MAX_S" ] && break
    done
    LEARNED="$l pass(es) in $(( $(date +%s) - t0 )) s (daemon: $verdict)"
}

# ---- environment of each configuration ----
config_env() {
    case $1 in
        hakmem-baseline)
            # A segment nobody creates as well: no daemon can steer a baseline run.
            echo "LD_PRELOAD=$LIBHAKMEM HAKMEM_MODE=baseline HAKMEM_SHM=/hakmem-bench-none-$$ HAKMEM_STATS=1" ;;
        hakmem-learning) echo "LD_PRELOAD=$LIBHAKMEM HAKMEM_SHM=$SHM_NAME HAKMEM_STATS=1" ;;
        hakmem-arm-*)
            echo "LD_PRELOAD=$LIBHAKMEM HAKMEM_MODE=baseline HAKMEM_SHM=/hakmem-bench-none-$$ ${ARM_ENV[${1#hakmem-arm-}]}${ARM_ENV[${1#hakmem-arm-}]:+ }HAKMEM_STATS=1" ;;
        hakmem-hardened)
            echo "LD_PRELOAD=$LIBHARDENED HAKMEM_MODE=baseline HAKMEM_SHM=/hakmem-bench-none-$$ HAKMEM_STATS=1" ;;
        system)          echo "LD_PRELOAD=" ;;
        *)               echo "LD_PRELOAD=${PEER_LIB[$1]}" ;;
    esac
}

# ---- benchmarks ----
wl_ops() { echo $(( $1 / WL_DIV > 100 ? $1 / WL_DIV : 100 )); }
declare -A CMD KIND
BENCHES=()
add_bench() { # name kind command...
    local name=$1 kind=$2; shift 2
    if [ -n "$FILTER" ] && ! grep -qiE -- "$FILTER" <<<"micro $name"; then return; fi
    BENCHES+=("$name"); KIND[$name]=$kind; CMD[$name]="$*"
}
for s in JSON MIR VM MIXED; do
    add_bench "$s" scenario "$BIN/scenarios --scenario ${s,,} ${SC_OPS[*]}"
done
add_bench churn    mt "$BIN/workloads --workload churn --threads $THREADS --ops $(wl_ops 1000000)"
add_bench prodcons mt "$BIN/workloads --workload prodcons --threads $(( THREADS < 2 ? 2 : THREADS / 2 * 2 )) --ops $(wl_ops 2000000)"
add_bench server   mt "$BIN/workloads --workload server --threads $THREADS --ops $(wl_ops 1200000)"
add_bench realloc  mt "$BIN/workloads --workload realloc --threads $THREADS --ops $(wl_ops 1000000)"
add_bench aligned  mt "$BIN/workloads --workload aligned --threads $THREADS --ops $(wl_ops 400000)"
FASTPATH=0
if [ -z "$FILTER" ] || grep -qiE -- "$FILTER" <<<"micro fastpath"; then FASTPATH=1; fi
# The daemon's own cost: one run of build/bench_daemon_scale.
DAEMON_SCALE=0
if [ -z "$FILTER" ] || grep -qiE -- "$FILTER" <<<"micro daemon"; then DAEMON_SCALE=1; fi
# shellcheck source=bench/suite.sh
source "$ROOT/bench/suite.sh"
suite_select
suite_check_built
[ ${#BENCHES[@]} -gt 0 ] || [ $FASTPATH = 1 ] || [ $DAEMON_SCALE = 1 ] || [ ${#SUITE_ITEMS[@]} -gt 0 ] ||
    { echo "run.sh: --filter '$FILTER' matches no benchmark" >&2; exit 64; }

# ---- recording ----
CSV=$OUT/results.csv
FAILS=$OUT/failures.txt
echo "run,phase,bench,kind,config,status,median_ns,p95_ns,p99_ns,mean_ns,faults,ops_per_sec,maxrss_kb,bigcache_hits,bigcache_misses,bigcache_hit_pct,sites,insn_per_pair,wall_ms,timer_res_ns" >"$CSV"
: >"$FAILS"
rm -f "$OUT"/logs/*.log "$OUT"/logs/*.txt "$OUT/daemon_scale.txt"

kv() { # key line -> value or empty
    local k=$1 line=$2 w
    for w in $line; do [ "${w%%=*}" = "$k" ] && { echo "${w#*=}"; return; }; done
}

# Status of a finished command from its exit code, in words.
status_of() {
    local rc=$1
    if [ "$rc" -eq 0 ]; then echo ok
    elif [ "$rc" -eq 124 ]; then echo "timeout after ${TIMEOUT}s"
    elif [ "$rc" -gt 128 ]; then echo "killed by SIG$(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
    else echo "exit $rc"
    fi
}

record_failure() { # run phase bench config errfile status command
    local first
    first=$(grep -v '^\s*$' "$5" 2>/dev/null | grep -vi '^hakmem' | head -n 1 | cut -c1-200)
    [ -n "$first" ] || first=$(grep -v '^\s*$' "$5" 2>/dev/null | head -n 1 | cut -c1-200)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$6" "$first" "$7" >>"$FAILS"
}

# BigCache hit rate from hakmem's exit report, when the program could not
# read the counters itself.  Accepts "hits=N misses=M" or "hit rate N%" on a
# line that mentions bigcache.
bigcache_from_report() {
    local line
    line=$(grep -i bigcache "$1" 2>/dev/null | head -n 1)
    [ -n "$line" ] || return 0
    local h m pct
    h=$(grep -oiE 'hits?[=: ]+[0-9]+' <<<"$line" | head -n 1 | grep -oE '[0-9]+$')
    m=$(grep -oiE 'miss(es)?[=: ]+[0-9]+' <<<"$line" | head -n 1 | grep -oE '[0-9]+$')
    pct=$(grep -oiE 'hit[ _-]?rate[=: ]+[0-9.]+' <<<"$line" | head -n 1 | grep -oE '[0-9.]+$')
    echo "${h:-} ${m:-} ${pct:-}"
}

run_one() { # run phase bench config
    local run=$1 phase=$2 bench=$3 config=$4
    local out=$TMP/out err=$TMP/err envs t0 t1 rc status line
    if [ "$config" = hakmem-learning ] && { [ -z "$DAEMON_PID" ] || ! kill -0 "$DAEMON_PID" 2>/dev/null; }; then
        echo "daemon not running" >"$err"
        status="hakmemd died"
        record_failure "$run" "$phase" "$bench" "$config" "$err" "$status" "(hakmemd, see logs/hakmemd.log)"
        echo "$run,$phase,$bench,${KIND[$bench]},$config,$status,,,,,,,,,,,,,," >>"$CSV"
        return
    fi
    read -r -a envs <<<"$(config_env "$config")"
    t0=$(date +%s%N)
    # timeout runs outside the preloaded allocator; env applies it to the program only.
    timeout -k 5 "$TIMEOUT" env "${envs[@]}" ${CMD[$bench]} >"$out" 2>"$err"
    rc=$?
    t1=$(date +%s%N)
    status=$(status_of $rc)
    line=$(grep -m1 -E '^(scenario|workload)=' "$out")
    if [ "$status" = ok ] && [ -z "$line" ]; then status="no result line"; fi
    if grep -q 'cannot be preloaded' "$err"; then status="preload ignored by ld.so"; fi
    { echo "=== run=$run phase=$phase bench=$bench status=$status"; cat "$err"; } >>"$OUT/logs/$config.log"
    if [ "$status" != ok ]; then
        record_failure "$run" "$phase" "$bench" "$config" "$err" "$status" \
            "cd $ROOT && $(config_env "$config") ${CMD[$bench]}"
        echo "$run,$phase,$bench,${KIND[$bench]},$config,$status,,,,,,,,,,,,,$(( (t1 - t0) / 1000000 ))," >>"$CSV"
        return
    fi
    local hits misses pct=''
    hits=$(kv bigcache_hits "$line"); misses=$(kv bigcache_misses "$line")
    if [[ $config == hakmem-* ]] && [ -z "$hits" ]; then
        read -r hits misses pct <<<"$(bigcache_from_report "$err")"
    fi
    if [ -z "$pct" ] && [ -n "$hits" ] && [ -n "$misses" ] && [ $((hits + misses)) -gt 0 ]; then
        pct=$(awk -v h="$hits" -v m="$misses" 'BEGIN { printf "%.1f", 100 * h / (h + m) }')
    fi
    echo "$run,$phase,$bench,${KIND[$bench]},$config,ok,$(kv median_ns "$line"),$(kv p95_ns "$line"),$(kv p99_ns "$line"),$(kv mean_ns "$line"),$(kv faults "$line"),$(kv ops_per_sec "$line"),$(kv maxrss_kb "$line"),$hits,$misses,$pct,$(kv sites "$line"),,$(( (t1 - t0) / 1000000 )),$(kv timer_res_ns "$line")" >>"$CSV"
}

# ---- fast path under callgrind ----
run_fastpath() { # config
    local config=$1 envs cg=$TMP/callgrind.out ann=$TMP/annotate err=$TMP/err rc status
    read -r -a envs <<<"$(config_env "$config")"
    rm -f "$cg"
    # Callgrind does not replace malloc (only memcheck-like tools do); the
    # synonym setting makes sure no malloc redirection applies either way.
    timeout -k 5 $((TIMEOUT * 3)) env "${envs[@]}" valgrind --tool=callgrind \
        --soname-synonyms=somalloc=NONE --callgrind-out-file="$cg" \
        "$BIN/fastpath" --iters "$FP_ITERS" >"$TMP/out" 2>"$err"
    rc=$?
    status=$(status_of $rc)
    { echo "=== fastpath status=$status"; cat "$err"; } >>"$OUT/logs/$config.log"
    if [ "$status" = ok ]; then
        callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$cg" >"$ann" 2>>"$err" || status="callgrind_annotate failed"
    fi
    # The allocator under test must be the one that ran: its object must carry
    # at least one instruction per iteration.
    local obj
    case $config in
        system) obj=libc.so.6 ;;
        hakmem-hardened) obj=libhakmem-hardened.so ;;
        hakmem-*) obj=libhakmem.so ;;
        *) obj=$(basename "$(readlink -f "${PEER_LIB[$config]}")") ;;
    esac
    if [ "$status" = ok ]; then
        local seen
        seen=$(awk -v obj="$obj" -v n="$FP_ITERS" '
            index($0, "/" obj "]") { c = $1; gsub(",", "", c); if (c + 0 >= n) found = 1 }
            END { print found ? "yes" : "no" }' "$ann")
        [ "$seen" = yes ] || status="allocator $obj not seen in callgrind profile"
    fi
    if [ "$status" != ok ]; then
        record_failure 1 measured fastpath "$config" "$err" "$status" \
            "cd $ROOT && $(config_env "$config") valgrind --tool=callgrind $BIN/fastpath --iters $FP_ITERS"
        echo "1,measured,fastpath,fastpath,$config,$status,,,,,,,,,,,,,," >>"$CSV"
        return
    fi
    cp "$ann" "$OUT/logs/callgrind-$config.txt"
    awk -v n="$FP_ITERS" -v cfg="$config" '
        function cost(s) { gsub(",", "", s); return s + 0 }
        /:fp_empty \[/ { empty = cost($1) }
        match($0, /:fp_loop_[0-9]+ \[/) {
            sz = substr($0, RSTART + 9, RLENGTH - 11); loop[sz] = cost($1)
        }
        END {
            # A pair costs instructions: a count of none or fewer is a
            # profile that did not see the loops, not a measurement.
            for (sz in loop) {
                c = (loop[sz] - empty) / n
                status = c > 0 && empty > 0 ? "ok" : "no instructions counted"
                printf "1,measured,fastpath-%s,fastpath,%s,%s,,,,,,,,,,,,%.1f,,\n", sz, cfg, status, c
            }
        }' "$ann" | sort -t- -k2 -n >>"$CSV"
}

# ---- the run ----
START=$(date +%s)
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
[ -n "$CPU" ] || CPU=$(uname -m)
{
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "cores=$(nproc)"
    echo "cpu=$CPU"
    echo "kernel=$(uname -r)"
    echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "interval_ms=$INTERVAL"
    echo "memory_weight_ns=$MEMORY_WEIGHT_NS"
    echo "command=${BENCH_COMMAND:-$ARGV_TEXT}"
    echo "runs=$RUNS"
    echo "warmup=$WARMUP"
    echo "learn=$LEARN"
    echo "threads=$THREADS"
    echo "mode=$MODE"
    echo "configs=${CONFIGS[*]}"
    for c in "${CONFIGS[@]}"; do
        [ -n "${UNAVAILABLE[$c]:-}" ] && echo "unavailable.$c=${UNAVAILABLE[$c]}"
    done
} >"$OUT/meta.txt"

ACTIVE=()
for c in "${CONFIGS[@]}"; do
    if [ -n "${UNAVAILABLE[$c]:-}" ]; then
        echo "run.sh: $c is not available: ${UNAVAILABLE[$c]}"
    else
        ACTIVE+=("$c")
    fi
done

micro_learn_pass() { # pass
    local b
    for b in "${BENCHES[@]}"; do run_one "$1" learn "$b" hakmem-learning; done
}

if [[ " ${ACTIVE[*]} " == *" hakmem-learning "* ]] && { [ ${#BENCHES[@]} -gt 0 ] || [ $FASTPATH = 1 ]; }; then
    if start_daemon; then
        if [ ${#BENCHES[@]} -gt 0 ]; then
            echo "run.sh: hakmemd running (pid $DAEMON_PID, segment $SHM_NAME); at least $LEARN learning" \
                 "pass(es), then until the daemon has settled (up to ${LEARN_MAX_S}s)"
            learn_phase micro_learn_pass "$LEARN"
        else
            LEARNED='nothing to learn from (no scenario or workload selected)'
        fi
        echo "run.sh: learning: $LEARNED"
        echo "learning=$LEARNED" >>"$OUT/meta.txt"
        "$BUILD/hakmemctl" --socket "$TMP/ctl.sock" sites --top 10 >"$OUT/logs/learned-sites.txt" 2>&1
    else
        echo "run.sh: hakmem-learning is not available: ${UNAVAILABLE[hakmem-learning]}"
        ACTIVE=("${ACTIVE[@]/hakmem-learning/}")
        read -r -a ACTIVE <<<"${ACTIVE[*]}"
        echo "unavailable.hakmem-learning=${UNAVAILABLE[hakmem-learning]}" >>"$OUT/meta.txt"
    fi
fi
[ ${#ACTIVE[@]} -gt 0 ] || { echo "run.sh: no configuration is available" >&2; exit 69; }
echo "run.sh: configurations: ${ACTIVE[*]}; benchmarks: ${BENCHES[*]}$([ $FASTPATH = 1 ] && echo ' fastpath')" \
     "$([ ${#SUITE_ITEMS[@]} -gt 0 ] && echo "; suite: ${SUITE_ITEMS[*]}")"
echo "run.sh: $WARMUP warm-up + $RUNS measured runs each, $THREADS threads, output $OUT"

total=$((WARMUP + RUNS))
n=${#ACTIVE[@]}
for ((r = 1; r <= total; r++)); do
    if [ "$r" -le "$WARMUP" ]; then phase=warmup; run=$r; else phase=measured; run=$((r - WARMUP)); fi
    for b in "${BENCHES[@]}"; do
        for ((k = 0; k < n; k++)); do
            run_one "$run" "$phase" "$b" "${ACTIVE[$(( (k + r) % n ))]}"
        done
    done
    printf 'run.sh: %-8s run %d/%d done (%ds)\n' "$phase" "$run" \
        "$([ $phase = warmup ] && echo "$WARMUP" || echo "$RUNS")" $(( $(date +%s) - START ))
done

if [ $FASTPATH = 1 ]; then
    if command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null; then
        for c in "${ACTIVE[@]}"; do
            run_fastpath "$c"
            if [ "$c" = hakmem-baseline ]; then
                if [ -e "$LIBHARDENED" ]; then run_fastpath hakmem-hardened
                else echo "unavailable.hakmem-hardened=$LIBHARDENED does not exist (make lib)" >>"$OUT/meta.txt"; fi
            fi
        done
        echo "run.sh: fast path measured ($(( $(date +%s) - START ))s)"
    else
        echo "run.sh: valgrind is missing: no fast-path numbers (apt-get install valgrind)"
        echo "unavailable.fastpath=valgrind is not installed" >>"$OUT/meta.txt"
    fi
fi
stop_daemon

if [ $DAEMON_SCALE = 1 ]; then
    # 256 processes x 256 sites, collected, learned and published per
    # interval; then the daemon's CPU share with 64 real clients at 1 s.
    case $MODE in
        full)  SCALE_ARGS=(256 256 60 64 20) ;;
        quick) SCALE_ARGS=(256 256 10 64 5) ;;
        smoke) SCALE_ARGS=(8 8 3 2 1) ;;
    esac
    if [ -x "$BUILD/bench_daemon_scale" ]; then
        echo "run.sh: daemon scale: bench_daemon_scale ${SCALE_ARGS[*]}"
        if ! "$BUILD/bench_daemon_scale" "${SCALE_ARGS[@]}" >"$OUT/daemon_scale.txt" 2>"$OUT/logs/daemon_scale.log"; then
            echo "run.sh: bench_daemon_scale failed, see $OUT/logs/daemon_scale.log" >&2
            echo "unavailable.daemon_scale=bench_daemon_scale failed (logs/daemon_scale.log)" >>"$OUT/meta.txt"
        fi
        echo "daemon_scale_args=${SCALE_ARGS[*]}" >>"$OUT/meta.txt"
    else
        echo "unavailable.daemon_scale=$BUILD/bench_daemon_scale is not built (make programs)" >>"$OUT/meta.txt"
    fi
fi

suite_main

echo "elapsed_s=$(( $(date +%s) - START ))" >>"$OUT/meta.txt"
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/meta.txt"
rm -f "$OUT/learning_curve.gp" "$OUT/learning_curve.png"
"$PY" "$ROOT/bench/analyze.py" "$OUT" || { echo "run.sh: analysis failed" >&2; exit 1; }
if command -v gnuplot >/dev/null; then
    for gp in chart learning_curve; do
        [ -e "$OUT/$gp.gp" ] || continue
        gnuplot "$OUT/$gp.gp" 2>"$OUT/logs/gnuplot-$gp.log" ||
            { echo "run.sh: gnuplot failed, see $OUT/logs/gnuplot-$gp.log" >&2; exit 1; }
    done
else
    echo "run.sh: gnuplot is missing: no chart (apt-get install gnuplot-nox)" >&2
    exit 1
fi
if [ -n "$README_OUT" ]; then
    "$PY" "$ROOT/bench/readme_tables.py" "$README_OUT" "$OUT/sections" ||
        { echo "run.sh: could not write the tables into $README_OUT" >&2; exit 1; }
else
    echo "run.sh: README.md not updated (a --filter, --configs, --smoke or --no-readme run; --readme FILE writes one)"
fi
nfail=$(wc -l <"$FAILS")
echo "run.sh: wrote $OUT/results.csv, $OUT/suite.csv, $OUT/table.md, $OUT/chart.png ($nfail failed runs) in $(( $(date +%s) - START ))s"
