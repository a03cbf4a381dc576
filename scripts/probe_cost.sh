#!/usr/bin/env bash
# The probe protocol's promise: the backbone runs once per dataset split and every head trains on its cached
# features, so five heads cost far less than five times one head. Prints the wall time of both runs.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/headbench-probe}
rm -rf "$OUT"
common=(--backbone resnet18 --dataset scenes --img-size 96 --protocol probe --epochs 3 --seeds 0 --no-timing
        --no-plot --workers 0 --results-dir "$OUT/runs")
t0=$(date +%s.%N)
bench run --heads gap "${common[@]}" --cache-dir "$OUT/cache1" > "$OUT.1.log"
t1=$(date +%s.%N)
bench run --heads "gap,csra,attnpool,txdec(embed=128, ffn=512, heads=4),mldecoder(embed=128, ffn=512, heads=4)" \
  "${common[@]}" --cache-dir "$OUT/cache5" > "$OUT.5.log"
t2=$(date +%s.%N)
python - "$t0" "$t1" "$t2" <<'PY'
import sys
t0, t1, t2 = map(float, sys.argv[1:])
one, five = t1 - t0, t2 - t1
print(f"probe, 1 head: {one:.0f} s; 5 heads: {five:.0f} s; ratio {five / one:.2f} (5.00 if nothing were shared)")
PY
