#!/usr/bin/env bash
# bench/run.sh - run every benchmark program in build/bench (make bench).
set -euo pipefail
dir=${BUILD:-build}/bench
shopt -s nullglob
progs=("$dir"/bench_*)
if [ ${#progs[@]} -eq 0 ]; then
    echo "no benchmark programs are built"
    exit 0
fi
for p in "${progs[@]}"; do
    "$p" "$@"
done
