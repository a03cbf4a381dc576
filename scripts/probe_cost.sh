#!/usr/bin/env bash
# The probe protocol's promise: the backbone runs once per dataset split, and every head of a (backbone, seed)
# trains on its cached features in the same pass over them, so five heads cost little more than one.
# Runs `bench run --protocol probe` with 1 head and with 5 heads (each with a fresh feature cache, so both pay
# for the backbone pass), and writes wall and CPU times and their ratio to reports/perf/probe_cost.md.
#   usage: scripts/probe_cost.sh [WORK_DIR]      (about 5 minutes on a quiet 2-core CPU; PROBE_COST_REPEAT=1: 2)
# The target (issue 13): 5 heads <= 1.5x the time of 1 head. Run it on a quiet machine: timings on shared
# cores are inflated, and the ratio with them.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/headbench-probe}
REPORT=${PROBE_COST_REPORT:-reports/perf/probe_cost.md}
rm -rf "$OUT"
mkdir -p "$OUT" reports/perf
common=(--backbone resnet18 --dataset scenes --img-size 96 --protocol probe --epochs 3 --seeds 0 --no-timing
        --no-plot --workers 0 --results-dir "$OUT/runs")
FIVE="gap,csra,attnpool,txdec(embed=128, ffn=512, heads=4),mldecoder(embed=128, ffn=512, heads=4)"
REPEAT=${PROBE_COST_REPEAT:-3}  # pairs of runs, alternating: the ratio of each pair, and their median
load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
for i in $(seq 1 "$REPEAT"); do
  # %e wall seconds, %U user CPU seconds, %S system CPU seconds of the whole command (start-up included)
  /usr/bin/time -f "%e %U %S" -o "$OUT/time1.$i" python -m bench run --heads gap "${common[@]}" \
    --cache-dir "$OUT/cache1.$i" > "$OUT/run1.$i.log"
  /usr/bin/time -f "%e %U %S" -o "$OUT/time5.$i" python -m bench run --heads "$FIVE" "${common[@]}" \
    --cache-dir "$OUT/cache5.$i" > "$OUT/run5.$i.log"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
python - "$OUT" "$REPORT" "$load_before" "$load_after" "$FIVE" "${common[*]}" "$REPEAT" <<'PY'
import datetime, os, platform, statistics, sys

import torch

out, report, before, after, five, common, repeat = sys.argv[1:]
def times(name):
    wall, user, sys_ = map(float, open(os.path.join(out, name)).read().split()[-3:])
    return wall, user + sys_
pairs = [(times(f"time1.{i}"), times(f"time5.{i}")) for i in range(1, int(repeat) + 1)]
w1, c1 = statistics.median(p[0][0] for p in pairs), statistics.median(p[0][1] for p in pairs)
w5, c5 = statistics.median(p[1][0] for p in pairs), statistics.median(p[1][1] for p in pairs)
ratios = [p[1][0] / p[0][0] for p in pairs]
lines = [
    "# Probe protocol: 5 heads against 1 (issue 13)", "",
    f"Command: `scripts/probe_cost.sh` ({repeat} alternating pairs of `python -m bench run` processes, start-up "
    "included; medians).", "",
    f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch "
    f"{torch.__version__} with {torch.get_num_threads()} threads, Python {platform.python_version()}; "
    f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. Load average before {before}, after "
    f"{after} (a load above the thread count means shared cores: the times are inflated).", "",
    f"Common options: `{common}`", "", f"Five heads: `{five}`", "",
    "| heads | wall s (median) | CPU s (user+sys, median) |", "|---|---:|---:|",
    f"| 1 (gap) | {w1:.1f} | {c1:.1f} |", f"| 5 | {w5:.1f} | {c5:.1f} |",
    f"| ratio 5 / 1 | {w5 / w1:.2f} | {c5 / c1:.2f} |", "",
    "Wall ratio of each pair: " + ", ".join(f"{r:.2f}" for r in ratios) + f" (median {statistics.median(ratios):.2f}).", "",
    "Target: ratio <= 1.5 (5.00 if nothing were shared). The heads of a (backbone, seed) train together on one "
    "pass over the cached features per epoch (`bench.train.training.train_probes`).",
]
open(report, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
