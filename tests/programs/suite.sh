#!/usr/bin/env bash
# Real programs (python3, git, gcc, sqlite3, perl, sort, a C++ workload) run
# twice: once on plain glibc malloc, once with the allocator under test
# preloaded.  Their stdout, stderr and the files they write must match byte
# for byte.  A separate check per program proves the preload really took
# effect, so an ignored LD_PRELOAD cannot pass.
#
# usage: bash tests/programs/suite.sh BUILD
# knobs:  PROGRAMS_PRELOAD=/path/lib.so  library to preload (default BUILD/libhakmem.so)
#         PROGRAMS_ONLY="git sort"       run only these checks
#         PROGRAMS_TIMEOUT=120           seconds allowed to each program run
#         PROGRAMS_KEEP=1                keep the temp dir (its path is printed)
set -u -o pipefail
source "$(dirname "$0")/../lib.sh"
testlib_begin programs "${1:-build}"
HERE=$REPO/tests/programs
PRELOAD=${PROGRAMS_PRELOAD:-$BUILD/libhakmem.so}
case $PRELOAD in /*) ;; *) PRELOAD=$PWD/$PRELOAD ;; esac
ONLY=${PROGRAMS_ONLY:-}
TMO=${PROGRAMS_TIMEOUT:-120}
CXX_BIN=$BUILD/tests/cxx_workload
# Debian's interpreter, not whatever pyenv puts first on PATH.
PY=/usr/bin/python3

# Everything runs in the C locale with a fixed timezone and hash seed, so the
# only thing that differs between the two runs is the allocator.
export LC_ALL=C TZ=UTC PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
unset LD_PRELOAD MALLOC_CONF HAKMEM_STATS HAKMEM_VERBOSE
# Point the client at a segment nobody creates: it must then run on built-in
# defaults, and no daemon left over on this machine can influence the result.
export HAKMEM_SHM=/hakmem-programs-test-$$

if [ -n "${PROGRAMS_KEEP:-}" ]; then
    TMP=$(mktemp -d /tmp/hakmem-programs.XXXXXX)
    echo "# keeping $TMP"
else
    make_tmpdir TMP hakmem-programs
fi
DAEMON_PID=
DAEMON_SHM=/hakmem-programs-daemon-$$
track_shm "$HAKMEM_SHM" "$DAEMON_SHM"
wanted() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

# How a library proves it was loaded: hakmem prints its report when asked;
# jemalloc (used while hakmem did not build yet) prints its statistics.  The
# patterns match the first line of one report per process.
case $(basename "$PRELOAD") in
    libhakmem*) STATS_ENV=(HAKMEM_STATS=1); STATS_RE='^hakmem.* report' ;;
    libjemalloc*) STATS_ENV=(MALLOC_CONF=stats_print:true); STATS_RE='Begin jemalloc statistics' ;;
    *) STATS_ENV=(LD_DEBUG=libs); STATS_RE="calling init: $PRELOAD" ;;
esac

describe_rc() {
    local rc=$1
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "timed out after ${TMO}s (exit $rc)"
    elif [ "$rc" -gt 128 ]; then echo "killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null))"
    else echo "exit $rc"; fi
}

# RUNENV is the prefix every program of a check runs under: a timeout always,
# plus the preload in the second run.  Helpers (awk, cp, ...) run without it.
RUNENV=()
EXTRA_ENV=()
# run LABEL CMD...: one program of a check; a non-zero exit is recorded in
# .errors of the current run directory (the check fails on it).
run() {
    local label=$1 rc=0
    shift
    "${RUNENV[@]}" "$@" || rc=$?
    [ $rc -eq 0 ] || echo "$label: $(describe_rc $rc)" >> "$RUNDIR/.errors"
    return $rc
}

# The workloads.  Each is called with the run directory as cwd, stdout and
# stderr already redirected to .out/.err, and may list extra produced files
# (relative paths) in .files for a byte comparison.

w_python() {
    run workload env PYTHONMALLOC=malloc $PY "$HERE/py_workload.py"
}

# Regrtest prints elapsed times and load averages; the comparison keeps
# only which tests ran and how they ended.
python_tests=(test_dict test_list test_json test_re test_bytes test_unicode test_set)
w_python_regrtest() {
    run regrtest env PYTHONMALLOC=malloc $PY -m test "${python_tests[@]}" > regrtest.log 2>&1
    sed -E -e 's/^[0-9]+:[0-9]{2}:[0-9]{2} (load avg: [0-9.]+ )?//' \
           -e 's/ (in|\() ?[0-9.]+ (sec|ms|min)\)?//g' \
           -e '/^Total duration:/d' -e '/^Run tests sequentially/d' regrtest.log
    grep -q '^Tests result: SUCCESS' regrtest.log || echo "regrtest: no SUCCESS line" >> "$RUNDIR/.errors"
}

# A repository of a few hundred files and several commits (including a
# merge), every identity and date fixed so object ids are identical in both
# runs; then gc and every read command we can think of.
w_git() {
    export HOME=$PWD GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=Ada GIT_AUTHOR_EMAIL=ada@example.org \
        GIT_COMMITTER_NAME=Bob GIT_COMMITTER_EMAIL=bob@example.org
    local t=1700000000
    date_at() { export GIT_AUTHOR_DATE="@$(($t + $1 * 3600)) +0000" GIT_COMMITTER_DATE="@$(($t + $1 * 3600 + 60)) +0000"; }
    run init git init -q -b main repo
    cd repo || return
    run config git config gc.auto 0
    cp -r "$TMP/src/." .
    date_at 0; run add1 git add -A; run commit1 git commit -q -m "initial import"
    for k in 1 2 3 4 5; do
        awk -v k=$k -f "$HERE/git_edit.awk" manifest > /dev/null
        date_at $k; run "add$k" git add -A; run "commit$k" git commit -q -m "edit round $k"
        if [ $k -eq 2 ]; then
            run branch git checkout -q -b side
            awk -v k=9 -f "$HERE/git_edit.awk" manifest > /dev/null
            date_at 20; run side-add git add -A; run side-commit git commit -q -m "side work"
            run back git checkout -q main
        fi
    done
    date_at 30; run merge git merge -q --no-edit -m "merge side" side
    run log git log --graph --format='%H %P %an %ae %ad %cn %s' --date=raw
    run log-stat git log --stat --format='%H %s'
    run diff git diff HEAD~4 HEAD
    run diff-stat git diff --stat --find-renames HEAD~5 HEAD
    run blame git blame -s dir7/file77.txt
    run grep git grep -n -e 'line 1[0-9]*7:' -- 'dir1/*'
    run gc git gc -q --aggressive --prune=now
    run fsck git fsck --full --no-progress
    run objects git cat-file --batch-all-objects --batch-check
    run revlist git rev-list --objects --all
    run show git show --format=%B HEAD~2:manifest
    run archive git archive --format=tar -o "$RUNDIR/archive.tar" HEAD
    echo archive.tar >> "$RUNDIR/.files"
    run status git status --porcelain
}

w_gcc() {
    cp "$TMP/gen.c" "$TMP/cxx_workload.cc" .
    run cc gcc -O2 -Wall -Wextra -fdiagnostics-color=never -frandom-seed=1 -c gen.c -o gen.o
    run link gcc gen.o -o gen
    run cxx g++ -std=c++17 -O2 -Wall -Wextra -fdiagnostics-color=never -frandom-seed=1 -c cxx_workload.cc -o cxx.o
    # The compiled program runs plain: its output is what the object computes.
    timeout "$TMO" ./gen || echo "generated program: $(describe_rc $?)" >> "$RUNDIR/.errors"
    printf '%s\n' gen.o gen cxx.o >> "$RUNDIR/.files"
}

w_sqlite() {
    run load sqlite3 db.sqlite < "$TMP/load.sql"
    run queries sqlite3 -header db.sqlite < "$HERE/queries.sql"
}

w_perl() {
    run workload perl "$HERE/perl_workload.pl" "$TMP/access.log"
}

w_sort() {
    local in=$TMP/sort.in
    mkdir -p tmp
    run plain sort -o s-plain.out "$in"
    run numeric sort -t' ' -k2,2n -k1,1 -o s-num.out "$in"
    run unique sort -u -t' ' -k3,3 -o s-uniq.out "$in"
    run stable sort -s -r -t' ' -k3,3 -o s-stable.out "$in"
    # A small buffer forces temporary files and merges; --parallel adds
    # threads that allocate and free in each other's buffers.
    run parallel sort --parallel=2 -S 2M -T tmp -t' ' -k3,3 -k2,2n -o s-par.out "$in"
    run check sort -c -t' ' -k2,2n -k1,1 s-num.out
    printf '%s\n' s-plain.out s-num.out s-uniq.out s-stable.out s-par.out >> "$RUNDIR/.files"
}

w_cxx() {
    run workload "$CXX_BIN"
}

# Small invocations of each program for the loaded checks; the report must
# show up once per process that ran (gcc -c: the driver, cc1 and as).
l_python() { run py env PYTHONMALLOC=malloc $PY -c 'import json; print(json.dumps({"a": list(range(5))}))'; }
l_git() {
    export HOME=$PWD GIT_CONFIG_NOSYSTEM=1
    run init git init -q repo && cd repo && echo hello > f && run add git add f && run hash git hash-object f
}
l_gcc() { cp "$TMP/gen_small.c" . && run cc gcc -O2 -c gen_small.c -o gen.o; }
l_sqlite() { run q sqlite3 :memory: 'select 6*7;'; }
l_perl() { run p perl -e 'my %h = map { $_ => $_ * 2 } 1..1000; print scalar(keys %h), "\n"'; }
l_cxx() { run c "$CXX_BIN"; }
declare -A MIN_REPORTS=([gcc]=3)
# hakmem's report names the process ("report: pid N (comm)"), so with hakmem
# each of these must have reported: for gcc that proves cc1 and as, started
# by the driver, inherited the preload.
declare -A REPORTERS=([python]='python3' [git]='git' [gcc]='cc1 [a-z0-9_-]*as [a-z0-9_.-]*gcc[a-z0-9_.-]*'
                      [sqlite]='sqlite3' [perl]='perl' [cxx]='cxx_workload')

# Generated inputs, made once with plain tools and shared read-only by runs.
make_inputs() {
    local need=$1
    case $need in
        git)
            mkdir -p "$TMP/src"
            (cd "$TMP/src" && awk -f "$HERE/git_gen.awk") ;;
        gcc)
            awk -v NFUNC=150 -f "$HERE/gen_c.awk" > "$TMP/gen.c"
            awk -v NFUNC=10 -f "$HERE/gen_c.awk" > "$TMP/gen_small.c"
            cp "$HERE/cxx_workload.cc" "$TMP/" ;;
        sqlite) awk -f "$HERE/gen_sql.awk" > "$TMP/load.sql" ;;
        perl) awk -v N=120000 -f "$HERE/gen_log.awk" > "$TMP/access.log"
              head -n 1000 "$TMP/access.log" > "$TMP/perl.tiny" ;;
        sort) awk -v BYTES=50000000 -f "$HERE/gen_sort.awk" > "$TMP/sort.in" ;;
    esac
}

# do_run DIR FUNC PRELOAD?: runs one workload in a fresh directory.
do_run() {
    local dir=$1 fn=$2 mode=$3
    mkdir -p "$dir"
    : > "$dir/.errors"
    : > "$dir/.files"
    (
        cd "$dir" || exit 1
        RUNDIR=$dir
        case $mode in
            plain) RUNENV=(timeout -k 5 "$TMO") ;;
            preload) RUNENV=(timeout -k 5 "$TMO" env LD_PRELOAD="$PRELOAD" "${EXTRA_ENV[@]}") ;;
            stats) RUNENV=(timeout -k 5 "$TMO" env LD_PRELOAD="$PRELOAD" "${STATS_ENV[@]}") ;;
        esac
        "$fn" > "$dir/.out" 2> "$dir/.err"
    )
}

first_diff() { diff -u "$1" "$2" | sed -n '3,40p'; }

# compare_check NAME FUNC: the plain run and the preloaded run must agree.
compare_check() {
    local name=$1 fn=$2
    do_run "$TMP/$name/plain" "$fn" plain
    do_run "$TMP/$name/preload" "$fn" preload
    compare_dirs "$name" "$TMP/$name/plain" "$TMP/$name/preload"
}

# variant_check NAME BASECHECK FUNC VAR=VALUE...: the workload again under
# the preload with allocator knobs set, against the plain run of BASECHECK.
variant_check() {
    local name=$1 basecheck=$2 fn=$3
    shift 3
    EXTRA_ENV=("$@")
    do_run "$TMP/$name/preload" "$fn" preload
    EXTRA_ENV=()
    compare_dirs "$name" "$TMP/$basecheck/plain" "$TMP/$name/preload"
}

compare_dirs() {
    local name=$1 base=$2 pre=$3
    if [ -s "$base/.errors" ]; then
        fail "$name" "the plain glibc run itself failed, so nothing can be compared" \
            "$(cat "$base/.errors"; tail -n 15 "$base/.err")"
        return
    fi
    if [ -s "$pre/.errors" ]; then
        fail "$name" "under LD_PRELOAD=$PRELOAD: $(paste -sd';' "$pre/.errors")" \
            "$(tail -n 15 "$pre/.err"; echo '--- stdout diff:'; first_diff "$base/.out" "$pre/.out" | head -n 15)"
        return
    fi
    if ! cmp -s "$base/.out" "$pre/.out"; then
        fail "$name" "stdout differs (plain vs preload)" "$(first_diff "$base/.out" "$pre/.out")"
        return
    fi
    if ! cmp -s "$base/.err" "$pre/.err"; then
        fail "$name" "stderr differs (plain vs preload)" "$(first_diff "$base/.err" "$pre/.err")"
        return
    fi
    local f
    while read -r f; do
        [ -n "$f" ] || continue
        if [ ! -e "$pre/$f" ]; then fail "$name" "the preloaded run did not produce $f"; return; fi
        if ! cmp -s "$base/$f" "$pre/$f"; then
            local why
            why=$(cmp "$base/$f" "$pre/$f" 2>&1)
            case $f in
                *.o|gen) why="$why"$'\n'"$(first_diff <(objdump -d "$base/$f") <(objdump -d "$pre/$f"))" ;;
                *.tar) ;;
                *) why="$why"$'\n'"$(first_diff "$base/$f" "$pre/$f")" ;;
            esac
            fail "$name" "$f differs (plain vs preload)" "$why"
            return
        fi
    done < "$base/.files"
    ok "$name"
}

# loaded_check NAME FUNC: the small invocation prints the same stdout with
# the statistics report switched on, and the report is really there.
loaded_check() {
    local name=$1 fn=$2 base=$TMP/loaded-$1/plain st=$TMP/loaded-$1/stats
    local min=${MIN_REPORTS[$1]:-1}
    do_run "$base" "$fn" plain
    do_run "$st" "$fn" stats
    if [ -s "$st/.errors" ] || [ -s "$base/.errors" ]; then
        fail "loaded: $name" "run failed: $(cat "$base/.errors" "$st/.errors" | paste -sd';')" "$(tail -n 15 "$st/.err")"
        return
    fi
    local n
    n=$(grep -c -e "$STATS_RE" "$st/.err")
    if [ "$n" -lt "$min" ]; then
        fail "loaded: $name" "expected >= $min allocator reports matching '$STATS_RE' on stderr, got $n: LD_PRELOAD ignored?" \
            "$(head -n 10 "$st/.err")"
        return
    fi
    local comm
    if [ "$STATS_RE" = '^hakmem.* report' ]; then
        for comm in ${REPORTERS[$name]:-}; do
            if ! grep -Eq "^hakmem.* report: pid [0-9]+ \(${comm}[^)]*\)" "$st/.err"; then
                fail "loaded: $name" "no hakmem report from a process named like '$comm'" "$(grep -E "$STATS_RE" "$st/.err")"
                return
            fi
        done
    fi
    if ! cmp -s "$base/.out" "$st/.out"; then
        fail "loaded: $name" "stdout with the stats report on differs from plain" "$(first_diff "$base/.out" "$st/.out")"
        return
    fi
    ok "loaded: $name"
}

# GNU sort closes stderr in an atexit handler that runs before any
# allocator's exit report, so for sort the proof is the library mapped into
# the live process: sort is started on a FIFO, which blocks it in open()
# after the dynamic loader is done, and its /proc/PID/maps is read then.
maps_check() {
    local name=$1 dir=$TMP/loaded-$1 pid mapped=0 rc=0
    mkdir -p "$dir"
    mkfifo "$dir/fifo"
    env LD_PRELOAD="$PRELOAD" sort "$dir/fifo" > "$dir/out" 2> "$dir/err" &
    pid=$!
    for _ in $(seq 100); do
        if grep -qF "$PRELOAD" "/proc/$pid/maps" 2>/dev/null && grep -q '/sort$' "/proc/$pid/maps" 2>/dev/null; then
            mapped=1
            break
        fi
        sleep 0.05
    done
    timeout 10 cp "$TMP/perl.tiny" "$dir/fifo" || kill "$pid" 2>/dev/null
    wait_pid "$pid" 30 || rc=$?
    if [ $mapped -ne 1 ]; then
        fail "loaded: $name" "$PRELOAD never appeared in /proc/$pid/maps of sort: LD_PRELOAD ignored?"
    elif [ $rc -ne 0 ] || ! sort "$TMP/perl.tiny" | cmp -s - "$dir/out"; then
        fail "loaded: $name" "sort on a FIFO: $(describe_rc $rc), or its output differs" "$(head -n 5 "$dir/err")"
    else
        ok "loaded: $name"
    fi
}

need "$PRELOAD"
# Preload a private copy: a rebuild of the library while the suite runs
# (make in another shell) must not swap it under half of the runs.
mkdir -p "$TMP/lib"
cp "$PRELOAD" "$TMP/lib/"
PRELOAD_SRC=$PRELOAD
PRELOAD=$TMP/lib/$(basename "$PRELOAD")
echo "# preloading $PRELOAD (a copy of $PRELOAD_SRC)"

# Seconds per check as a comment line, to keep the suite's runtime in view.
timed() {
    local t0=$SECONDS
    "$@"
    echo "#   (${2:-$1}: $((SECONDS - t0))s)"
}

declare -A made=()
need() { [ -n "${made[$1]:-}" ] || { make_inputs "$1"; made[$1]=1; }; }

# Knob variants (hakmem only): the lowest large-block threshold sends every
# block of 64 KiB and up through mmap, headers and BigCache; sampling every
# 4 KiB keeps the site profiler busy; purging without delay returns memory
# as soon as it is idle, and populating ahead of carving faults in what
# purging gives back, 64 KiB at a time.  And the plain allocator with BigCache and THP off.
KNOBS_STRESS=(HAKMEM_LARGE_THRESHOLD=65536 HAKMEM_SAMPLE_BYTES=4096 HAKMEM_PURGE_DELAY_MS=0 HAKMEM_POPULATE_KIB=64)
KNOBS_OFF=(HAKMEM_BIGCACHE=0 HAKMEM_THP=0)
variants=0
case $(basename "$PRELOAD") in libhakmem*) variants=1 ;; esac
knobs() { [ $variants -eq 1 ] && timed variant_check "$@"; }

if wanted python; then
    timed compare_check python w_python
    knobs python-knobs python w_python "${KNOBS_STRESS[@]}"
    timed compare_check python-regrtest w_python_regrtest
    timed loaded_check python l_python
fi
if wanted git; then
    need git
    timed compare_check git w_git
    knobs git-knobs git w_git "${KNOBS_STRESS[@]}"
    timed loaded_check git l_git
fi
if wanted gcc; then need gcc; timed compare_check gcc w_gcc; timed loaded_check gcc l_gcc; fi
if wanted sqlite; then
    need sqlite
    timed compare_check sqlite w_sqlite
    knobs sqlite-knobs sqlite w_sqlite "${KNOBS_STRESS[@]}"
    timed loaded_check sqlite l_sqlite
fi
if wanted perl; then need perl; timed compare_check perl w_perl; timed loaded_check perl l_perl; fi
if wanted sort; then need sort; need perl; timed compare_check sort w_sort; timed maps_check sort; fi
if wanted cxx; then
    if [ ! -x "$CXX_BIN" ]; then
        fail cxx "$CXX_BIN is missing (make test builds it)"
    else
        timed compare_check cxx w_cxx
        knobs cxx-knobs cxx w_cxx "${KNOBS_STRESS[@]}"
        knobs cxx-nocache cxx w_cxx "${KNOBS_OFF[@]}"
        timed loaded_check cxx l_cxx
    fi
fi

# With a live daemon on a private segment, learning on and a 100 ms interval,
# so clients claim slots, flush counters and pick up newly published
# policy while the programs run.  git starts many short processes, each
# claiming and giving back a slot.
start_daemon() {
    mkdir -p "$TMP/dstate"
    "$BUILD/hakmemd" --shm "$DAEMON_SHM" --socket "$TMP/ctl.sock" --state-dir "$TMP/dstate" \
        --interval 100 > "$TMP/hakmemd.log" 2>&1 &
    DAEMON_PID=$!
    track_pid "$DAEMON_PID"
    local _
    for _ in $(seq 100); do
        [ -e "/dev/shm${DAEMON_SHM}" ] && return 0
        kill -0 "$DAEMON_PID" 2>/dev/null || break
        sleep 0.05
    done
    return 1
}
stop_daemon() {
    if [ -n "$DAEMON_PID" ]; then
        stop_pid "$DAEMON_PID"
        DAEMON_PID=
    fi
    # The daemon leaves its segment for clients still running; ours are done.
    rm -f "/dev/shm${DAEMON_SHM}" "/dev/shm${DAEMON_SHM}.lock"
}

# daemon_attached_check: a client under the daemon says in its report that
# it attached, so the daemon variants really ran against the daemon.  A
# client registers at its first allocation once 10 ms old (the second
# burst) and does not wait for the daemon's reply; the second pause lets
# the reply arrive while the program still allocates, and so takes it.
daemon_attached_check() {
    local dir=$TMP/daemon-attached
    mkdir -p "$dir"
    if ! timeout "$TMO" env LD_PRELOAD="$PRELOAD" HAKMEM_SHM="$DAEMON_SHM" HAKMEM_STATS=1 \
            perl -e 'my @a = map { "x" x $_ } 1 .. 3000; select(undef, undef, undef, 0.3);
                         my @b = map { "y" x $_ } 1 .. 3000; select(undef, undef, undef, 0.3);
                         my @c = map { "z" x $_ } 1 .. 3000; print scalar(@a) + scalar(@b) + scalar(@c), "\n"' \
                > "$dir/out" 2> "$dir/err"; then
        fail "daemon: client attached" "perl under the daemon failed" "$(tail -n 10 "$dir/err")"
    elif ! grep -q "registered with .*segment $DAEMON_SHM, generation" "$dir/err"; then
        fail "daemon: client attached" "the report does not say it registered and read segment $DAEMON_SHM" "$(grep -i daemon "$dir/err")"
    else
        ok "daemon: client attached"
    fi
}

if [ $variants -eq 1 ]; then
    if [ ! -x "$BUILD/hakmemd" ]; then
        fail "daemon" "$BUILD/hakmemd is missing (make test builds it)"
    elif ! start_daemon; then
        fail "daemon" "hakmemd did not create /dev/shm$DAEMON_SHM" "$(tail -n 10 "$TMP/hakmemd.log")"
    else
        timed daemon_attached_check
        wanted python && knobs python-daemon python w_python HAKMEM_SHM="$DAEMON_SHM"
        wanted git && knobs git-daemon git w_git HAKMEM_SHM="$DAEMON_SHM"
        wanted sqlite && knobs sqlite-daemon sqlite w_sqlite HAKMEM_SHM="$DAEMON_SHM"
        [ -x "$CXX_BIN" ] && wanted cxx && knobs cxx-daemon cxx w_cxx HAKMEM_SHM="$DAEMON_SHM"
        if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
            fail "daemon" "hakmemd died while the programs ran" "$(tail -n 10 "$TMP/hakmemd.log")"
        fi
        stop_daemon
    fi
fi

finish
