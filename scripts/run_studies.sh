#!/usr/bin/env bash
# The commands that made reports/paper/README.md: every study of every rung, then the report from their result files.
# Each study resumes where it stopped if interrupted. On the 2-core CPU machine: the from-scratch rung about an hour
# and a half on two lanes (reports/perf/studies_time.md), the pretrained rung under an hour
# (reports/perf/studies_time_pretrained.md), the fine-tuned setting and the probing study their own times (in the
# report). `python scripts/studies_time.py --rung RUNG --run DIR` runs a rung on two lanes and records its times.
set -euo pipefail
cd "$(dirname "$0")/.."
for study in compute classes self-attention groups pooling queries zsl backbone-vs-head drop-in \
             self-attention-pretrained groups-pretrained pooling-pretrained backbone-vs-head-pretrained \
             queries-pretrained zsl-pretrained drop-in-pretrained pooling-finetuned probing; do
  bench study "$study" "$@"
done
bench report
