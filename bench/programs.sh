#!/usr/bin/env bash
# Real programs of the allocator suite: python, sqlite, perl, gcc and git,
# on inputs made by tests/programs' generators (shared with the test suite
# there, not copied) at a size chosen by the mode.
#
# usage: bash bench/programs.sh list
#        bash bench/programs.sh prepare MODE DIR    (MODE: full, quick, smoke)
#        bash bench/programs.sh run NAME DIR
#
# prepare makes DIR/inputs with plain tools, once per benchmark run.  run
# runs one program in a fresh directory under DIR and prints what it
# computed on stdout, which depends only on the inputs: the runner checks
# it against a plain glibc run.  BENCH_ENV (e.g. "LD_PRELOAD=... HAKMEM_MODE=
# baseline") applies to the program under test only; the shell, awk and
# sha256sum around it run on glibc, the same in every configuration.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GEN=$HERE/../tests/programs
PY=/usr/bin/python3
export LC_ALL=C TZ=UTC PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
read -r -a PRELOAD <<<"${BENCH_ENV:-}"
under_test() { env "${PRELOAD[@]}" "$@"; }

PROGRAMS=(python sqlite perl gcc git)

prepare() { # mode dir
    local mode=$1 in=$2/inputs sql_rows log_lines nfunc rounds gc files=400
    # Smoke's tree is the largest: at 400 files a `git add` takes 10-20 ms
    # of CPU, and a learning daemon counts no run below 20 ms, so whether
    # the smoke check saw git's commands learned apart was a matter of luck.
    case $mode in
        full)  sql_rows=200000 log_lines=250000 nfunc=300 rounds=12 gc=--aggressive ;;
        quick) sql_rows=50000  log_lines=50000  nfunc=60  rounds=2 gc=--quiet ;;
        smoke) sql_rows=5000   log_lines=4000   nfunc=8   rounds=1 gc=--quiet files=2000 ;;
        *) echo "programs.sh: unknown mode '$mode'" >&2; return 64 ;;
    esac
    mkdir -p "$in/git-src" || return 73
    awk -v N="$sql_rows" -f "$GEN/gen_sql.awk" >"$in/load.sql" &&
    awk -v N="$log_lines" -f "$GEN/gen_log.awk" >"$in/access.log" &&
    awk -v NFUNC="$nfunc" -f "$GEN/gen_c.awk" >"$in/gen.c" &&
    (cd "$in/git-src" && awk -v FILES="$files" -f "$GEN/git_gen.awk") &&
    echo "$rounds $gc" >"$in/git-how"
}

# Each program prints its results; files it writes are summarised by digest.
p_python() { under_test env PYTHONMALLOC=malloc "$PY" "$GEN/py_workload.py"; }

p_sqlite() {
    under_test sqlite3 -cmd "PRAGMA synchronous=OFF" db.sqlite <"$IN/load.sql" &&
    under_test sqlite3 -header db.sqlite <"$GEN/queries.sql"
}

p_perl() { under_test perl "$GEN/perl_workload.pl" "$IN/access.log"; }

p_gcc() {
    under_test gcc -O2 -Wall -Wextra -fdiagnostics-color=never -frandom-seed=1 -c "$IN/gen.c" -o gen.o 2>&1 &&
    sha256sum gen.o
}

# A repository built commit by commit (fixed identities and dates, so object
# ids are the same in every run), then the read-heavy commands and gc.
p_git() {
    export HOME=$PWD GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=Ada GIT_AUTHOR_EMAIL=ada@example.org \
        GIT_COMMITTER_NAME=Bob GIT_COMMITTER_EMAIL=bob@example.org
    local k rounds gc t=1700000000
    read -r rounds gc <"$IN/git-how"
    at() { export GIT_AUTHOR_DATE="@$((t + $1 * 3600)) +0000" GIT_COMMITTER_DATE="@$((t + $1 * 3600 + 60)) +0000"; }
    under_test git init -q -b main repo && cd repo && under_test git config gc.auto 0 || return
    cp -r "$IN/git-src/." . || return
    at 0; under_test git add -A && under_test git commit -q -m "initial import" || return
    for ((k = 1; k <= rounds; k++)); do
        # Round 9 is git_edit.awk's side-branch round: skip it.
        local e=$k; [ $k -ge 9 ] && e=$((k + 1))
        awk -v k=$e -f "$GEN/git_edit.awk" manifest >/dev/null || return
        at $k; under_test git add -A && under_test git commit -q -m "round $e" || return
    done
    under_test git log --stat --format='%H %an %ad %s' --date=raw | sha256sum &&
    under_test git log -p --format=%H | sha256sum &&
    under_test git blame -s dir7/file77.txt | sha256sum &&
    under_test git gc -q "$gc" --prune=now &&
    under_test git fsck --full --no-progress &&
    under_test git rev-list --objects --all | sha256sum &&
    under_test git diff --stat HEAD~1 HEAD | tail -n 1
}

case ${1:-} in
    list) echo "${PROGRAMS[*]}" ;;
    prepare) [ $# -eq 3 ] || { echo "usage: programs.sh prepare MODE DIR" >&2; exit 64; }
             prepare "$2" "$3" ;;
    run)
        [ $# -eq 3 ] || { echo "usage: programs.sh run NAME DIR" >&2; exit 64; }
        [[ " ${PROGRAMS[*]} " == *" $2 "* ]] || { echo "programs.sh: unknown program '$2'" >&2; exit 64; }
        IN=$(cd "$3/inputs" && pwd) || exit 66
        WORK=$(mktemp -d "$3/run-$2.XXXXXX") || exit 73
        trap 'rm -rf "$WORK"' EXIT
        cd "$WORK" && "p_$2"
        ;;
    *) echo "usage: programs.sh list | prepare MODE DIR | run NAME DIR" >&2; exit 64 ;;
esac
