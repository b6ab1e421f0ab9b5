#!/usr/bin/env bash
# bench/run.sh - run every benchmark program in build/bench (make bench):
# stream first (the ceiling the others are compared with), then the hot
# loops from the dose engine to the optimiser, then end to end and scaling;
# any other bench_* program after them. Arguments (--quick, --json, ...)
# go to every program. Prints the machine, thread count and load first.
set -euo pipefail
dir=${BUILD:-build}/bench
order=(stream raytrace pencilbeam dij spmv objective optimize plan scaling)
shopt -s nullglob
progs=()
for n in "${order[@]}"; do
    [ -x "$dir/bench_$n" ] && progs+=("$dir/bench_$n")
done
for p in "$dir"/bench_*; do
    case " ${progs[*]} " in *" $p "*) ;; *) [ -x "$p" ] && progs+=("$p") ;; esac
done
if [ ${#progs[@]} -eq 0 ]; then
    echo "no benchmark programs are built"
    exit 0
fi
json=0
for a in "$@"; do [ "$a" = --json ] && json=1; done
if [ $json -eq 0 ]; then
    echo "# imrt bench: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores," \
         "OMP_NUM_THREADS=${OMP_NUM_THREADS:-all}, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
fi
start=$(date +%s)
for p in "${progs[@]}"; do
    "$p" "$@"
done
[ $json -eq 0 ] && echo "# bench suite: $(( $(date +%s) - start )) s"
exit 0
