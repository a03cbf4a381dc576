"""Whether full decoding (K = N = 1,000 queries) fits the groups study's pretrained rung on this machine.

    usage: python scripts/full_decoding_cost.py [REPORT]     (default reports/perf/full_decoding.md; ~1 minute)

Plans `bench study groups-pretrained`'s grid (emoji at 1,000 classes, frozen EfficientNet-Lite0 features, 4 epochs,
5 seeds) once with each K the study runs and once with full decoding added, from an empty results folder, and
prints the runner's own estimate of each head (``bench.measure.estimate``: quick measurements of a training step,
a forward pass and a data read, the figure `bench study` prints before it starts) and the training step of each
head on the backbone's feature shape that the estimate stands on (``Calibration.head_step``, at the study's
training batch). Run it on a quiet machine.
"""
import dataclasses
import datetime
import os
import platform
import sys
import tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.heads import parse_head  # noqa: E402
from bench.measure.estimate import Calibration, duration, estimate_seconds  # noqa: E402
from bench.run.runner import plan_cells  # noqa: E402
from bench.studies import get_study  # noqa: E402
from bench.studies.groups import LARGE_CLASSES, SMALL  # noqa: E402

FULL = f"mldecoder({SMALL}, groups={LARGE_CLASSES})"


def main(report: str = "reports/perf/full_decoding.md") -> None:
    study = get_study("groups-pretrained")
    lines = ["# Full decoding at N = 1,000 on this machine (the groups study's pretrained rung)", "",
             "Command: `python scripts/full_decoding_cost.py`.", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch "
             f"{torch.__version__}, {torch.get_num_threads()} threads; "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
             "| head | K | training step on features (ms) | estimated study time, 5 seeds |", "|---|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as empty:
        cfg = study.configs(results_dir=empty)[0]
        heads = [str(h) for h in cfg.heads] + [FULL]
        for spec in heads:
            one = dataclasses.replace(cfg, heads=[parse_head(spec)])
            est = estimate_seconds(one, plan_cells(one), plots=False)
            k = parse_head(spec).options.get("groups", min(100, LARGE_CLASSES))
            ms = Calibration.for_config(one).head_step(one.backbones[0], spec, one.train_batch_size) * 1e3
            lines.append(f"| `{spec}` | {k} | {ms:.0f} | {duration(est)} |")
            print(lines[-1], flush=True)
    lines += ["", "The study's time budget is the pretrained rung's (all its studies within 90 minutes on a 2-core "
              "CPU): full decoding alone would take the estimate above."]
    os.makedirs(os.path.dirname(report), exist_ok=True)
    open(report, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:2])
