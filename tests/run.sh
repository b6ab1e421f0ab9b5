#!/usr/bin/env bash
# tests/run.sh - run every test program once with one thread and once with
# all threads, and end with one summary line "N passed, N failed".
# Usage: tests/run.sh build/tests/test_a build/tests/test_b ...
set -uo pipefail

all_threads=$(nproc 2>/dev/null || echo 2)
threads_list=${IMRT_TEST_THREADS:-"1 $all_threads"}
passed=0 failed=0 skipped=0
failed_names=()
log_dir=${BUILD:-build}/test-logs
mkdir -p "$log_dir"

for t in "$@"; do
    name=$(basename "$t")
    for th in $threads_list; do
        log="$log_dir/$name.t$th.log"
        start=$(date +%s.%N)
        OMP_NUM_THREADS=$th IMRT_THREADS=$th "$t" >"$log" 2>&1
        rc=$?
        secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
        p=$(grep -aoE '^\[  PASSED  \] [0-9]+' "$log" | awk '{s+=$NF} END{print s+0}')
        f=$(grep -aoE '^\[  FAILED  \] [0-9]+ test' "$log" | awk '{s+=$(NF-1)} END{print s+0}')
        s=$(grep -aoE '^\[  SKIPPED \] [0-9]+' "$log" | awk '{s+=$NF} END{print s+0}')
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            f=1 # crashed or exited early: count the program as one failure
        fi
        passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
        if [ "$f" -gt 0 ]; then
            failed_names+=("$name (threads=$th)")
            echo "FAIL $name threads=$th (${secs}s) - log: $log"
            grep -aE '^\[  (FAILED|ERROR) |error|Error|ERROR|runtime error' "$log" | head -20 | sed 's/^/    /'
        else
            if [ "$s" -gt 0 ]; then sk=", $s skipped"; else sk=""; fi
            echo "ok   $name threads=$th: $p passed$sk (${secs}s)"
        fi
        grep -a '^SKIP:' "$log" | sort -u | sed 's/^/    /'
    done
done

if [ ${#failed_names[@]} -gt 0 ]; then
    echo "failed: ${failed_names[*]}"
fi
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
