#!/usr/bin/env bash
# tests/mpi/run.sh - the distributed planner (imrt-mpi) against the
# single-process one (imrt) under mpirun with 1, 2 and 3 processes
# (`make MPI=1 test-mpi`):
#   1. tests/mpi/cshape.json: IMRT weights, IMRT dose and 3D-CRT dose within
#      TOL (relative to the largest value) of the single-process run; the
#      same output files; every rank holds a contiguous block of rows, the
#      blocks add up to the whole dij and none holds more than its share
#      (total/N) by more than SHARE_SLACK.
#   2. tests/mpi/cshape_constraint.json (hard gEUD constraint): the
#      objective values of the first EARLY iterations agree within TOL
#      with the single-process run, and the run completes.
# One OpenMP thread per process, so that the machine is not oversubscribed.
# Ends with "N passed, N failed"; exit status 1 when any check failed.
set -uo pipefail
cd "$(dirname "$0")/../.."

IMRT=${IMRT:-build-mpi/imrt}
IMRT_MPI=${IMRT_MPI:-build-mpi/imrt-mpi}
PLAN_DIFF=${PLAN_DIFF:-build-mpi/tests/mpi/plan_diff}
TOL=${TOL:-1e-5}
SHARE_SLACK=${SHARE_SLACK:-0.02}
EARLY=10
NPS=${NPS:-1 2 3}
export OMP_NUM_THREADS=1
# containers often forbid the cross-memory attach of Open MPI's shared-memory
# transport (ptrace scope): plain copies work everywhere
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
MPIRUN=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)

for f in "$IMRT" "$IMRT_MPI" "$PLAN_DIFF"; do
    [ -x "$f" ] || { echo "missing $f: run make MPI=1 first" >&2; exit 2; }
done
command -v mpirun >/dev/null || { echo "mpirun not found: apt-get install openmpi-bin" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
check() { # name, command...
    local name=$1
    shift
    if out=$("$@" 2>&1); then
        pass=$((pass + 1))
        echo "  ok    $name${out:+: $out}"
    else
        fail=$((fail + 1))
        echo "  FAIL  $name: $out"
    fi
}
run() { # log file, command... (quiet unless it fails)
    local log=$1
    shift
    if ! "$@" >"$log" 2>&1; then
        echo "  command failed: $*" >&2
        tail -20 "$log" >&2
        return 1
    fi
}

# F of iterations 0..EARLY from a solver log (log-every 1)
early_f() { grep -o 'iter *[0-9]*  F [0-9.e+-]*' "$1" | awk -v n=$EARLY '$2 <= n && !seen[$2]++ {print $2, $4}'; }
compare_early() { # a b
    paste -d' ' <(early_f "$1") <(early_f "$2") | awk -v tol="$TOL" '
        { n++; d = $2 - $4; if (d < 0) d = -d; r = d / ($2 > 0 ? $2 : 1); if (r > worst) worst = r
          if ($1 != $3) bad = 1 }
        END { printf "%d iterations, largest relative difference of F %.2g", n, worst
              exit (bad || n < 5 || worst > tol) }'
}
# metrics.json line by line, timings aside: the same text, numbers within
# TOL (relative to max(|a|, 1), so that Gy values and fractions both work)
compare_metrics() { # a b
    local strip='/"timings_s"/,/}/d; /"wall_s"/d'
    paste -d'\t' <(sed "$strip" "$1") <(sed "$strip" "$2") | awk -F'\t' -v tol="$TOL" '
        { n++; if ($1 == $2) next
          a = $1; b = $2; num = "-?[0-9]+\\.?[0-9]*([eE][-+]?[0-9]+)?"
          if (!match(a, num)) { bad = "line " n ": " a " vs " b; next }
          pa = substr(a, 1, RSTART - 1); va = substr(a, RSTART, RLENGTH) + 0
          if (!match(b, num)) { bad = "line " n ": " a " vs " b; next }
          pb = substr(b, 1, RSTART - 1); vb = substr(b, RSTART, RLENGTH) + 0
          if (pa != pb) { bad = "line " n ": " a " vs " b; next }
          d = va - vb; if (d < 0) d = -d; s = va < 0 ? -va : va; if (s < 1) s = 1
          if (d / s > worst) worst = d / s; if (d / s > tol) bad = "line " n ": " a " vs " b; nd++ }
        END { printf "%d lines, %d differ, largest relative difference %.2g", n, nd, worst
              if (bad) printf " - first beyond tolerance: %s", bad
              exit (bad != "") }'
}
# the per-rank numbers in a --stats file: "begin end nnz bytes" per line
rank_lines() { tr -d ' \n' <"$1" | grep -o '"rank":[0-9]*,"row_begin":[0-9]*,"row_end":[0-9]*,"nnz":[0-9]*,"dij_bytes":[0-9]*' |
               sed 's/"[a-z_]*"://g; s/,/ /g'; }
total_nnz() { tr -d ' \n' <"$1" | grep -o '"beamlets":[0-9]*,"nnz":[0-9]*' | sed 's/.*://'; }
check_blocks() { # stats file, np
    local stats=$1 np=$2 total
    total=$(total_nnz "$stats")
    rank_lines "$stats" | awk -v np="$np" -v total="$total" -v slack="$SHARE_SLACK" '
        { n++; if ($2 != next_row) bad = "rank " $1 " starts at row " $2 ", expected " next_row
          next_row = $3; sum += $4; if ($4 > max) max = $4
          line = line sprintf("%s rank %d rows %d..%d nnz %d (%.2f MB)", n > 1 ? ";" : "", $1, $2, $3 - 1, $4, $5 / 1e6) }
        END { if (n != np) bad = n " ranks reported, expected " np
              if (sum != total) bad = "ranks hold " sum " non-zeros, the dij has " total
              if (max > total / np * (1 + slack)) bad = "largest block " max " > total/N = " total / np
              print line (bad ? " - " bad : "")
              exit (bad != "") }'
}

echo "== imrt-mpi against imrt (tolerance $TOL, processes: $NPS)"
spec=tests/mpi/cshape.json
cspec=tests/mpi/cshape_constraint.json
run "$work/ref.log" "$IMRT" plan "$spec" -o "$work/ref" --threads 1 || exit 1
run "$work/dij.log" "$IMRT" dij "$spec" -o "$work/ref.dij" --threads 1 --quiet || exit 1
run "$work/opt.log" "$IMRT" optimize "$spec" --dij "$work/ref.dij" -o "$work/refopt" --threads 1 \
    --quiet || exit 1
run "$work/cref.log" "$IMRT" plan "$cspec" -o "$work/cref" --threads 1 --log-every 1 || exit 1
(cd "$work/ref" && ls -A | sort) >"$work/ref.files"

for np in $NPS; do
    echo "-- $np process(es)"
    if ! run "$work/np$np.log" "${MPIRUN[@]}" -np "$np" "$IMRT_MPI" plan "$spec" -o "$work/np$np" \
        --threads 1 --weights "$work/w$np.txt" --stats "$work/s$np.json"; then
        fail=$((fail + 1))
        continue
    fi
    check "IMRT weights" "$PLAN_DIFF" weights "$work/refopt/weights.txt" "$work/w$np.txt" "$TOL"
    check "IMRT dose" "$PLAN_DIFF" dose "$work/ref/dose_imrt.nii.gz" "$work/np$np/dose_imrt.nii.gz" "$TOL"
    check "3D-CRT dose" "$PLAN_DIFF" dose "$work/ref/dose_3dcrt.nii.gz" "$work/np$np/dose_3dcrt.nii.gz" "$TOL"
    check "same output files" diff "$work/ref.files" <(cd "$work/np$np" && ls -A | sort)
    check "metrics.json" compare_metrics "$work/ref/metrics.json" "$work/np$np/metrics.json"
    check "row blocks" check_blocks "$work/s$np.json" "$np"
    if [ "$np" -gt 1 ]; then
        if run "$work/c$np.log" "${MPIRUN[@]}" -np "$np" "$IMRT_MPI" plan "$cspec" -o "$work/c$np" \
            --threads 1 --log-every 1; then
            check "constraint case, first $EARLY iterations" compare_early "$work/cref.log" "$work/c$np.log"
            check "constraint case, constraint evaluated" grep -q '"constraints": \[$' "$work/c$np/metrics.json"
        else
            fail=$((fail + 1))
        fi
    fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
