#!/usr/bin/env bash
# The commands that made reports/paper/README.md: every study, then the report from their result files.
# On the 2-core CPU machine this takes about an hour; each study resumes where it stopped if interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
for study in compute classes self-attention groups queries zsl backbone-vs-head drop-in; do
  bench study "$study" "$@"
done
bench report
