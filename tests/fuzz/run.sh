#!/usr/bin/env bash
# tests/fuzz/run.sh - run libFuzzer harnesses one after the other, each for
# FUZZ_TIME seconds (default 60), and say how many inputs each executed.
# Usage: tests/fuzz/run.sh [libFuzzer options...] -- NAME...   (NAME: spec, matrad, matrad_vars, dij)
# Each harness starts from its seeds (tests/fuzz/corpus/NAME, only read) and
# a working corpus that persists between runs (FUZZ_BUILD/corpus/NAME, not in
# git); crashing inputs land in FUZZ_BUILD/artifacts/. Exit status 1 if any
# harness found something.
set -uo pipefail
cd "$(dirname "$0")/../.."

build=${FUZZ_BUILD:-build-fuzz}
secs=${FUZZ_TIME:-60}
extra=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do extra+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || set -- spec matrad matrad_vars dij

# Largest input per harness: big enough for the seeds and their growth,
# small enough to keep each execution fast.
max_len() {
    case "$1" in
        spec) echo 16384 ;;
        matrad) echo 16384 ;;
        matrad_vars) echo 1024 ;;
        *) echo 4096 ;;
    esac
}

mkdir -p "$build/artifacts"
found=0
for name in "$@"; do
    bin="$build/fuzz_$name"
    if [ ! -x "$bin" ]; then
        echo "fuzz: $bin is missing (make fuzzers)" >&2
        exit 2
    fi
    work="$build/corpus/$name"
    mkdir -p "$work"
    dict=()
    [ -f "tests/fuzz/$name.dict" ] && dict=("-dict=tests/fuzz/$name.dict")
    log="$build/fuzz_$name.log"
    echo "== fuzz_$name for ${secs} s (log: $log)"
    "$bin" -max_total_time="$secs" -max_len="$(max_len "$name")" -timeout=20 \
        -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$build/artifacts/$name-" "${dict[@]}" "${extra[@]}" \
        "$work" "tests/fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    runs=$(grep -aoE '^stat::number_of_executed_units: *[0-9]+' "$log" | awk '{s+=$NF} END{print s+0}')
    if [ "$rc" -ne 0 ]; then
        found=1
        echo "fuzz_$name: FINDING after $runs executions (exit $rc); the report:"
        grep -aE 'ERROR|SUMMARY|invariant broken|Test unit written|==[0-9]+==' "$log" | head -20
    else
        echo "fuzz_$name: $runs executions, no finding (corpus $(ls "$work" | wc -l) inputs)"
    fi
done
exit "$found"
