#!/usr/bin/env bash
# tests/mpi/scaling.sh - the scaling table of docs/cluster.md: imrt (one
# process) and imrt-mpi with 1 and 2 processes x 1 and 2 OpenMP threads on
# one spec, stage times from each run's --stats file (imrt: its log line).
# Usage: tests/mpi/scaling.sh [SPEC] [GRID_MM]   (default TG-119 C-shape, 5 mm)
# Each configuration runs REPEATS times (default 2); the row of the fastest
# total is kept. Heavy: on a shared machine the times measure the load too.
set -euo pipefail
cd "$(dirname "$0")/../.."
SPEC=${1:-phantoms/tg119_cshape.json}
GRID=${2:-5}
IMRT=${IMRT:-build-mpi/imrt}
IMRT_MPI=${IMRT_MPI:-build-mpi/imrt-mpi}
REPEATS=${REPEATS:-2}
MPIRUN=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
num() { tr -d ' \n' <"$2" | grep -o "\"$1\":[0-9.e+-]*" | head -1 | cut -d: -f2; }
echo "| program | processes x threads | dij s | optimisation s | evaluations | total s | dij MB per rank | peak RSS MB per rank |"
echo "|---|---|---|---|---|---|---|---|"
single() { # threads
    local t=$1
    /usr/bin/time -f %e -o "$work/time" "$IMRT" plan "$SPEC" --grid "$GRID" -o "$work/s$t" --force --threads "$t" \
        >"$work/s$t.log" 2>&1
    line=$(grep -o 'total .* with' "$work/s$t.log")
    dij=$(echo "$line" | sed 's/.*dij \([0-9.]*\).*/\1/')
    opt=$(echo "$line" | sed 's/.*optimisation \([0-9.]*\).*/\1/')
    ev=$(grep -o 'optimised: [0-9]* iterations, [0-9]* evaluations' "$work/s$t.log" | awk '{print $4}')
    mb=$(grep -o 'nonzeros, [0-9.]* MB' "$work/s$t.log" | awk '{print $2}')
    echo "| imrt | 1 x $t | $dij | $opt | $ev | $(cat "$work/time") | $mb | - |"
}
multi() { # processes threads
    local np=$1 t=$2
    OMP_NUM_THREADS=$t /usr/bin/time -f %e -o "$work/time" "${MPIRUN[@]}" -np "$np" -x OMP_NUM_THREADS \
        "$IMRT_MPI" plan "$SPEC" --grid "$GRID" -o "$work/m$np$t" --force --threads "$t" \
        --stats "$work/m$np$t.json" --quiet
    f="$work/m$np$t.json"
    mbs=$(tr -d ' \n' <"$f" | grep -o '"dij_bytes":[0-9]*' | cut -d: -f2 | awk '{printf "%s%.1f", (NR > 1 ? " / " : ""), $1 / 1e6}')
    rss=$(tr -d ' \n' <"$f" | grep -o '"peak_rss_kb":[0-9]*' | cut -d: -f2 | awk '{printf "%s%.0f", (NR > 1 ? " / " : ""), $1 / 1024}')
    printf '| imrt-mpi | %d x %d | %.2f | %.2f | %s | %s | %s | %s |\n' "$np" "$t" "$(num t_dij_s "$f")" \
        "$(num t_optimize_s "$f")" "$(num evaluations "$f")" "$(cat "$work/time")" "$mbs" "$rss"
}
best() { # command... : the row with the smallest total (column 7) of REPEATS runs
    for _ in $(seq "$REPEATS"); do "$@"; done | sort -t'|' -k7,7g | head -1
}
for t in 1 2; do best single "$t"; done
for np in 1 2; do
    for t in 1 2; do best multi "$np" "$t"; done
done
