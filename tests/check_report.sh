#!/usr/bin/env bash
# tests/check_report.sh - render report.html in headless Chromium with no
# network and confirm that the page renders: the screenshot must not be
# blank, and must contain coloured pixels (the embedded pictures and the
# pass/fail cells; a page whose images failed to load is grey text only).
#
#   bash tests/check_report.sh [REPORT.html]
#
# Without an argument it builds build/tests/test_report and renders the
# example report that program writes (synthetic plan, three pictures).
# Skips (exit 0 with a message) when Chromium is not installed
# (Debian: apt-get install chromium). Keeps the screenshot next to the
# report as report.screenshot.png for looking at.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
browser=""
for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then
        browser=$b
        break
    fi
done
if [ -z "$browser" ]; then
    echo "SKIP: check_report: no chromium on this machine (apt-get install chromium)"
    exit 0
fi

make -s WERROR=1 "$BUILD/tests/test_report" >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ $# -ge 1 ]; then
    report=$(realpath "$1")
else
    report="$work/report.html"
    "$BUILD/tests/test_report" --write-example "$report"
fi
[ -f "$report" ] || { echo "FAIL: check_report: no report at $report"; exit 1; }

# The page must not even try to reach the network.
if grep -Eq '(src|href)="(https?:)?//|url\(|@import|<script|<link' "$report"; then
    echo "FAIL: check_report: $report references an external resource"
    exit 1
fi

shot="$work/screenshot.png"
# Every host resolves to nothing, so a remote reference could not load anyway.
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --no-first-run --disable-sync --disable-extensions \
    --host-resolver-rules="MAP * ~NOTFOUND" --user-data-dir="$work/profile" \
    --hide-scrollbars --screenshot="$shot" --window-size=1200,6000 \
    "file://$report" >"$work/chromium.log" 2>&1 || true

if [ ! -s "$shot" ]; then
    echo "FAIL: check_report: chromium wrote no screenshot; its log:"
    tail -20 "$work/chromium.log"
    exit 1
fi
cp "$shot" "$(dirname "$report")/report.screenshot.png" 2>/dev/null || true

read -r w h sd coloured < <("$BUILD/tests/test_report" --png-stats "$shot")
echo "check_report: screenshot ${w}x${h}, grey stddev $sd, coloured pixels $coloured %"
ok=$(awk -v sd="$sd" -v c="$coloured" 'BEGIN{print (sd > 20 && c > 2) ? 1 : 0}')
if [ "$w" -ne 1200 ] || [ "$ok" -ne 1 ]; then
    echo "FAIL: check_report: the page looks blank or its pictures did not render"
    exit 1
fi
echo "ok   check_report: $report renders in $browser without network"
