#!/bin/sh
# Runs each test binary given, prints its output, and closes with one summary line
# "N passed, N failed" counted from Criterion's per-binary synthesis lines.
# Exits non-zero if any test failed or crashed, or a binary did not run.
# An argument BINARY=PATTERN runs only the tests matching Criterion's --filter PATTERN;
# --env VAR=VALUE exports VAR for the binaries after it (one summary line for all of them:
# `make test` runs a subset again against a Redis with a password, ACL users and TLS).
set -u
passed=0 failed=0 broken=""
env_next=0
for arg in "$@"; do
    if [ "$env_next" = 1 ]; then
        export "${arg?}"
        env_next=0
        continue
    fi
    if [ "$arg" = "--env" ]; then
        env_next=1
        continue
    fi
    t=${arg%%=*}
    filter=""
    [ "$t" != "$arg" ] && filter="--filter=${arg#*=}"
    name=$(basename "$t")
    log=$(mktemp)
    echo "== $name${filter:+ $filter}${GP_TEST_REDIS:+ (GP_TEST_REDIS=$GP_TEST_REDIS)}"
    # --jobs 1 for integration tests keeps two cores free for the processes they start.
    case "$name" in
        it_*) jobs="--jobs=1" ;;
        *) jobs="" ;;
    esac
    t0=$(date +%s)
    # shellcheck disable=SC2086
    "$t" $jobs $filter --verbose=0 >"$log" 2>&1
    rc=$?
    cat "$log"
    # How long each binary took: what `make test`'s budget is spent on.
    echo "-- $name: $(($(date +%s) - t0)) s"
    line=$(grep -a "Synthesis:" "$log" | tail -1)
    if [ -z "$line" ]; then
        broken="$broken $name(rc=$rc)"
        failed=$((failed + 1))
    else
        p=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
        f=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
        c=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
        passed=$((passed + ${p:-0}))
        failed=$((failed + ${f:-0} + ${c:-0}))
        [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ] && [ "${c:-0}" -eq 0 ] && broken="$broken $name(rc=$rc)" && failed=$((failed + 1))
    fi
    # Under `make asan` a sanitizer report from the test process itself (the harness, the
    # tested code in unit tests) fails the binary even where Criterion counted a pass.
    if grep -aqE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$log"; then
        broken="$broken $name(sanitizer)"
        failed=$((failed + 1))
    fi
    rm -f "$log"
done
[ -n "$broken" ] && echo "broken test binaries:$broken"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
