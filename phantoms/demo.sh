#!/usr/bin/env bash
# phantoms/demo.sh - `make demo`: plan the default phantom (spine_vertebra)
# and print where the report is.
set -euo pipefail
imrt=${1:-build/imrt}
out=${IMRT_DEMO_DIR:-build/demo-spine_vertebra}
"$imrt" plan phantoms/spine_vertebra.json -o "$out" --force
