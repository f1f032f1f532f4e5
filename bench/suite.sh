# The allocator suite: sourced by bench/run.sh, whose options, configuration
# environments, daemon start/stop, learning phase and failure records it
# uses.  Workloads (bench/suite/, each verifying its blocks and printing a
# checksum) and real programs (bench/programs.sh) run one process per run
# under bench/measure, which records wall time, CPU time and peak RSS.
#
# Order: a reference run of every item under plain glibc (its stdout is
# what every later run must print); hakmem-learning's daemon started cold
# and its learning passes over the whole suite (recorded: the learning
# curve); then the measured runs, interleaved: run k of every item under
# every configuration, configurations in rotating order.
# Writes OUT/suite.csv: run,phase,item,kind,config,status,wall_s,cpu_s,
# user_s,sys_s,maxrss_kb,checksum,ops (phase: reference, learn, measured).

SUITE_WORKLOADS=(larson mstress remote-free cache-thrash cache-scratch big-blocks small-leaky grow-shrink interp-churn)
SUITE_PROGRAMS=(python sqlite perl gcc git)
SUITE_BIN=$BUILD/bench/suite
MEASURE=$BUILD/bench/measure
declare -A SUITE_KIND=() SUITE_REF=()
SUITE_ITEMS=()
SUITE_SCRATCH=''   # the real programs' inputs and work directories; run.sh removes it

# Arguments of each workload in each mode: full runs about 2 s under glibc on
# an idle 2-core machine, quick an eighth of that, smoke a fraction of a second.
# remote-free runs one pair per two cores: its threads spin (yielding)
# while the ring is full or empty, so with more threads than cores the time
# was where the scheduler put them (on this 2-core machine, two pairs of the
# same library took 1.1 s or 1.7 to 5.8 s by placement), not what the
# allocator did with the frees.
suite_args() { # item
    local t=$THREADS cores pairs
    cores=$(nproc 2>/dev/null || echo 2)
    pairs=$(( cores / 2 > 0 ? cores / 2 : 1 ))
    case $MODE:$1 in
        full:larson)         echo "--threads $t --rounds 100 --ops 40000" ;;
        quick:larson)        echo "--threads $t --rounds 12 --ops 40000" ;;
        smoke:larson)        echo "--threads $t --slots 200 --rounds 3 --ops 2000" ;;
        full:mstress)        echo "--threads $t --waves 60 --objs 30000" ;;
        quick:mstress)       echo "--threads $t --waves 8 --objs 30000" ;;
        smoke:mstress)       echo "--threads $t --waves 3 --objs 2000" ;;
        full:remote-free)    echo "--pairs $pairs --items 2000000" ;;
        quick:remote-free)   echo "--pairs $pairs --items 250000" ;;
        smoke:remote-free)   echo "--pairs $pairs --items 20000" ;;
        full:cache-*)        echo "--threads $t --iters 600000" ;;
        quick:cache-*)       echo "--threads $t --iters 75000" ;;
        smoke:cache-*)       echo "--threads $t --iters 2000" ;;
        full:big-blocks)     echo "--rounds 2000" ;;
        quick:big-blocks)    echo "--rounds 250" ;;
        smoke:big-blocks)    echo "--rounds 10 --live 4" ;;
        full:small-leaky)    echo "--ops 1000000" ;;
        quick:small-leaky)   echo "--ops 300000" ;;
        smoke:small-leaky)   echo "--ops 20000" ;;
        full:grow-shrink)    echo "--mib 200 --cycles 5" ;;
        quick:grow-shrink)   echo "--mib 64 --cycles 2 --idle-ms 100" ;;
        smoke:grow-shrink)   echo "--mib 8 --cycles 1 --idle-ms 20" ;;
        full:interp-churn)   echo "--steps 3000000" ;;
        quick:interp-churn)  echo "--steps 400000" ;;
        smoke:interp-churn)  echo "--core 2000 --steps 20000" ;;
    esac
}

# Picks the items --filter selects (matched as "suite NAME").
suite_select() {
    local it
    for it in "${SUITE_WORKLOADS[@]}" "${SUITE_PROGRAMS[@]}"; do
        if [ -n "$FILTER" ] && ! grep -qiE -- "$FILTER" <<<"suite $it"; then continue; fi
        SUITE_ITEMS+=("$it")
        if [[ " ${SUITE_PROGRAMS[*]} " == *" $it "* ]]; then SUITE_KIND[$it]=program; else SUITE_KIND[$it]=workload; fi
    done
}

suite_check_built() {
    [ ${#SUITE_ITEMS[@]} -gt 0 ] || return 0
    local it
    [ -x "$MEASURE" ] || { echo "run.sh: $MEASURE is missing: build it first (make programs)" >&2; exit 69; }
    for it in "${SUITE_ITEMS[@]}"; do
        [ "${SUITE_KIND[$it]}" = program ] || [ -x "$SUITE_BIN/$it" ] ||
            { echo "run.sh: $SUITE_BIN/$it is missing: build it first (make programs)" >&2; exit 69; }
    done
}

# The suite runs without hakmem's exit report: it would only add output.
suite_env() {
    if [ "$1" = reference ]; then echo "LD_PRELOAD="; else config_env "$1" | sed 's/ HAKMEM_STATS=1//'; fi
}

suite_cmd() { # item config -> the command line, words separated by newlines
    local envs
    envs=$(suite_env "$2")
    if [ "${SUITE_KIND[$1]}" = program ]; then
        printf '%s\n' env "BENCH_ENV=$envs" bash "$ROOT/bench/programs.sh" run "$1" "$SUITE_SCRATCH"
    else
        # shellcheck disable=SC2046
        printf '%s\n' env $envs "$SUITE_BIN/$1" $(suite_args "$1")
    fi
}

suite_run() { # run phase item config
    local run=$1 phase=$2 item=$3 config=$4
    local out=$TMP/sout err=$TMP/serr usage=$TMP/usage status digest cmd=() line
    local wall='' user='' sys='' rss='' cpu=''
    if [ "$config" = hakmem-learning ] && { [ -z "$DAEMON_PID" ] || ! kill -0 "$DAEMON_PID" 2>/dev/null; }; then
        echo "daemon not running" >"$err"
        record_failure "$run" "$phase" "$item" "$config" "$err" "hakmemd died" "(hakmemd, see logs/hakmemd.log)"
        echo "$run,$phase,$item,${SUITE_KIND[$item]},$config,hakmemd died,,,,,,," >>"$SUITE_CSV"
        return
    fi
    mapfile -t cmd < <(suite_cmd "$item" "$config")
    rm -f "$usage"
    "$MEASURE" "$usage" timeout -k 5 "$TIMEOUT" "${cmd[@]}" >"$out" 2>"$err"
    status=$(status_of $?)
    [ -s "$usage" ] || status="measure failed"
    line=$(grep -m1 '^result ok ' "$out")
    if [ "$status" = ok ] && [ "${SUITE_KIND[$item]}" = workload ] && [ -z "$line" ]; then
        status="no result line"
    fi
    digest=$(sha256sum <"$out" | cut -c1-16)
    if [ "$status" = ok ]; then
        if [ "$phase" = reference ]; then
            SUITE_REF[$item]=$digest
        elif [ -z "${SUITE_REF[$item]:-}" ]; then
            status="unchecked: the glibc reference run failed"
        elif [ "$digest" != "${SUITE_REF[$item]}" ]; then
            status="output differs from glibc's"
            { echo "--- stdout (differs from the reference run's):"; head -c 2000 "$out"; } >>"$err"
        fi
    fi
    grep -q 'cannot be preloaded' "$err" && status="preload ignored by ld.so"
    { echo "=== run=$run phase=$phase item=$item status=$status"; cat "$err"; } >>"$OUT/logs/suite-$config.log"
    if [ "$status" != ok ]; then
        record_failure "$run" "$phase" "$item" "$config" "$err" "$status" "cd $ROOT && ${cmd[*]}"
    fi
    if [ -s "$usage" ]; then
        read -r wall user sys rss <<<"$(sed -E 's/wall_s=([^ ]+) user_s=([^ ]+) sys_s=([^ ]+) maxrss_kb=([^ ]+).*/\1 \2 \3 \4/' "$usage")"
        cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.6f", u + s }')
    fi
    echo "$run,$phase,$item,${SUITE_KIND[$item]},$config,$status,$wall,$cpu,$user,$sys,$rss,$(kv checksum "$line"),$(kv ops "$line")" >>"$SUITE_CSV"
}

suite_learn_pass() { # pass
    local it
    for it in "${SUITE_ITEMS[@]}"; do suite_run "$1" learn "$it" hakmem-learning; done
    printf 'run.sh: suite learning pass %d done (%ds)\n' "$1" $(( $(date +%s) - START ))
}

suite_main() {
    [ ${#SUITE_ITEMS[@]} -gt 0 ] || return 0
    SUITE_CSV=$OUT/suite.csv
    echo "run,phase,item,kind,config,status,wall_s,cpu_s,user_s,sys_s,maxrss_kb,checksum,ops" >"$SUITE_CSV"
    local it sizes='' active=("${ACTIVE[@]}")
    for it in "${SUITE_ITEMS[@]}"; do
        [ "${SUITE_KIND[$it]}" = workload ] && sizes+="$it $(suite_args "$it"); "
    done
    if [[ " ${SUITE_KIND[*]} " == *" program "* ]]; then
        # The programs' files live in memory where it can: a shared disk's
        # latency would swamp what the allocator changes.
        SUITE_SCRATCH=$(mktemp -d /dev/shm/hakmem-bench-programs.XXXXXX 2>/dev/null) || SUITE_SCRATCH=$TMP/programs
        bash "$ROOT/bench/programs.sh" prepare "$MODE" "$SUITE_SCRATCH" 2>"$OUT/logs/programs-prepare.log" ||
            echo "run.sh: making the real programs' inputs failed (logs/programs-prepare.log)" >&2
        sizes+="programs: bench/programs.sh prepare $MODE"
    fi
    {
        echo "suite_items=${SUITE_ITEMS[*]}"
        echo "suite_sizes=${sizes%; }"
    } >>"$OUT/meta.txt"
    echo "run.sh: suite: reference run under plain glibc"
    for it in "${SUITE_ITEMS[@]}"; do suite_run 0 reference "$it" reference; done

    if [[ " ${active[*]} " == *" hakmem-learning "* ]]; then
        # A cold daemon: nothing left from the scenarios' learning.
        stop_daemon
        rm -rf "$TMP/state"
        if start_daemon; then
            echo "run.sh: suite: hakmemd running (pid $DAEMON_PID); at least $SUITE_LEARN learning pass(es)," \
                 "then until settled (up to ${LEARN_MAX_S}s)"
            learn_phase suite_learn_pass "$SUITE_LEARN"
            echo "run.sh: suite learning: $LEARNED"
            echo "suite_learning=$LEARNED" >>"$OUT/meta.txt"
            "$BUILD/hakmemctl" --socket "$TMP/ctl.sock" sites --top 20 >"$OUT/logs/suite-learned-sites.txt" 2>&1
            "$BUILD/hakmemctl" --socket "$TMP/ctl.sock" binaries >"$OUT/logs/suite-learned-binaries.txt" 2>&1
        else
            echo "run.sh: suite: hakmem-learning is not available: ${UNAVAILABLE[hakmem-learning]}"
            echo "unavailable.hakmem-learning=${UNAVAILABLE[hakmem-learning]}" >>"$OUT/meta.txt"
            active=("${active[@]/hakmem-learning/}")
            read -r -a active <<<"${active[*]}"
        fi
    fi
    echo "suite_runs=$SUITE_RUNS" >>"$OUT/meta.txt"
    local r k n=${#active[@]}
    for ((r = 1; r <= SUITE_RUNS; r++)); do
        for it in "${SUITE_ITEMS[@]}"; do
            for ((k = 0; k < n; k++)); do
                suite_run "$r" measured "$it" "${active[$(( (k + r) % n ))]}"
            done
        done
        printf 'run.sh: suite run %d/%d done (%ds)\n' "$r" "$SUITE_RUNS" $(( $(date +%s) - START ))
    done
    # What the daemon learned per binary by the end, for the README's table,
    # once it has collected every run's exit (no binary has a live process,
    # or 10 s have passed): the last runs' observations count too.
    if [ -n "$DAEMON_PID" ]; then
        local waited=0
        while [ $waited -lt 50 ] &&
              ! timeout 30 "$BUILD/hakmemctl" --socket "$TMP/ctl.sock" --json binaries 2>/dev/null |
                  python3 -c 'import json, sys; sys.exit(any(b["live"] for b in json.load(sys.stdin)["binaries"]))'; do
            sleep 0.2
            waited=$((waited + 1))
        done
        timeout 30 "$BUILD/hakmemctl" --socket "$TMP/ctl.sock" --json binaries >"$OUT/logs/suite-binaries.json" 2>&1 ||
            rm -f "$OUT/logs/suite-binaries.json"
    fi
    stop_daemon
}
