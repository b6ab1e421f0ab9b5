#!/usr/bin/env bash
# tests/valgrind.sh - the end-to-end plan of a tiny case under valgrind
# memcheck: no memory error and no definitely or indirectly lost block may be
# reported (library-internal caches are suppressed by tests/valgrind.supp,
# which documents each entry). Usage: tests/valgrind.sh [IMRT] [SPEC]
# (defaults build/imrt, tests/specs/tiny_plan.json). Exit 0 when clean.
set -uo pipefail
cd "$(dirname "$0")/.."

imrt=${1:-build/imrt}
spec=${2:-tests/specs/tiny_plan.json}
command -v valgrind >/dev/null || { echo "valgrind: not installed" >&2; exit 2; }
[ -x "$imrt" ] || { echo "valgrind: $imrt is missing (make)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log=${VALGRIND_LOG:-$work/valgrind.log}
start=$(date +%s)
valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    --track-origins=yes --num-callers=30 --suppressions=tests/valgrind.supp \
    --log-file="$log" "$imrt" plan "$spec" --threads 2 --quiet -o "$work/plan" >"$work/out" 2>&1
rc=$?
secs=$(( $(date +%s) - start ))
errors=$(grep -aoE 'ERROR SUMMARY: [0-9]+' "$log" | awk '{print $NF}' | tail -1)
if [ "$rc" -ne 0 ] || [ "${errors:-1}" -ne 0 ] || [ ! -f "$work/plan/report.html" ]; then
    echo "valgrind: FAILED (exit $rc, ${errors:-?} errors) on $spec:" >&2
    cat "$work/out" >&2
    grep -aA40 -E 'Invalid|uninitialised|definitely lost in|indirectly lost in|ERROR SUMMARY' "$log" | head -200 >&2
    exit 1
fi
echo "valgrind: imrt plan $spec: 0 errors, 0 bytes definitely/indirectly lost ($(grep -aoE 'suppressed: [0-9,]+ bytes' "$log" | head -1) in library caches) in ${secs} s"
