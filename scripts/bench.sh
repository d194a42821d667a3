#!/bin/sh
# Runs the benchmarks under tests/bench one at a time, in order (redis*, scale*, links*, then
# the others alphabetically), then prints the summary table of $BUILD/bench-results.txt.
# Conventions: tests/bench/README.md. Environment: BUILD (default build), QUICK (1: small runs),
# BENCH (space-separated name prefixes: run only the suites that start with one of them).
# Exits non-zero if a suite could not run (exit status other than 0 and 77 = skipped);
# timings never fail it.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
QUICK=${QUICK:-0}
[ -n "$QUICK" ] || QUICK=0
BENCH=${BENCH:-}
BENCH_RESULTS=$BUILD/bench-results.txt
export BUILD QUICK BENCH_RESULTS
mkdir -p "$BUILD"
: >"$BENCH_RESULTS"
if [ "$QUICK" != 0 ]; then limit=240; else limit=900; fi

# Suites: tests/bench/<name>.c (built as $BUILD/bench/<name>) and tests/bench/<name>.sh;
# <name>_tool.* are helpers.
names=$(for f in tests/bench/*.c tests/bench/*.sh; do
    [ -e "$f" ] || continue
    n=$(basename "$f"); n=${n%.*}
    case "$n" in *_tool) continue ;; esac
    case "$n" in redis*) o=1 ;; scale*) o=2 ;; links*) o=3 ;; *) o=4 ;; esac
    echo "$o $n"
done | sort -u | cut -d' ' -f2)

failed=""
for n in $names; do
    if [ -n "$BENCH" ]; then
        want=0
        for b in $BENCH; do case "$n" in "$b"*) want=1 ;; esac; done
        [ "$want" = 1 ] || continue
    fi
    if [ -f "tests/bench/$n.c" ]; then
        cmd="$BUILD/bench/$n"
        if [ ! -x "$cmd" ] || [ "tests/bench/$n.c" -nt "$cmd" ]; then
            echo "bench: $n: not built (see the compiler's errors above)" >&2
            echo "bench=_runner case=$n status=fail rc=127 secs=0" >>"$BENCH_RESULTS"
            failed="$failed $n"
            continue
        fi
    else
        cmd="sh tests/bench/$n.sh"
    fi
    GP_IT_DIR=$BUILD/bench-logs/$n
    export GP_IT_DIR
    echo "== bench $n (QUICK=$QUICK)"
    t0=$(date +%s)
    # shellcheck disable=SC2086
    timeout -k 10 "$limit" $cmd
    rc=$?
    secs=$(($(date +%s) - t0))
    case $rc in
        0) status=ok ;;
        77) status=skip ;;
        124 | 137) status=timeout; failed="$failed $n" ;;
        *) status=fail; failed="$failed $n" ;;
    esac
    echo "bench=_runner case=$n status=$status rc=$rc secs=$secs" >>"$BENCH_RESULTS"
    [ "$status" = ok ] || echo "bench: $n: $status (rc=$rc, logs in $GP_IT_DIR)" >&2
done

python3 scripts/bench-report.py "$BENCH_RESULTS"
if [ -n "$failed" ]; then
    echo "bench: could not run:$failed" >&2
    exit 1
fi
