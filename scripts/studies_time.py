"""How long the whole set of studies takes on this machine, from the studies' own estimator.

    usage: python scripts/studies_time.py [--report FILE] [--run RESULTS_DIR]
      --report  where the table goes [default: reports/perf/studies_time.md]; about a minute
      --run     then run the accuracy studies on those lanes into RESULTS_DIR (resumable: finished cells are
                skipped), each lane one `bench study NAME --threads 1` after another, and add each study's
                measured wall time and the whole set's to the report

Every study's training configurations are planned from scratch (an empty results folder: every cell pending) at
one thread and estimated by bench.measure.estimate (quick measurements of each cell's work: a training step, forward
passes, data reads), the figure `bench study NAME` prints before it starts. Its cost-only configurations
(paper-scale models timed at their batch sizes) are left out: the classes study's batch-32 ones alone are days on
a CPU. The accuracy studies are then scheduled on two single-thread lanes, longest first (two `bench study NAME
--threads 1` at a time, one per core of a 2-core machine). Run it on a quiet machine: the estimate is measured.
"""
import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from bench.measure.estimate import duration, estimate_seconds  # noqa: E402
from bench.run.runner import plan_cells  # noqa: E402
from bench.studies import get_study, list_studies  # noqa: E402

LANES = 2


def run_lanes(lanes, results_dir):
    """Run each lane's studies one after another, the lanes side by side; {study: (wall s, exit code)}."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    measured = {}

    def lane_worker(names):
        for name in names:
            t = time.perf_counter()
            rc = subprocess.call([sys.executable, "-m", "bench", "study", name, "--threads", "1",
                                  "--results-dir", results_dir], env=env, stdout=subprocess.DEVNULL)
            measured[name] = (time.perf_counter() - t, rc)
            print(f"{name}: {duration(measured[name][0])} (exit {rc})", flush=True)

    threads = [threading.Thread(target=lane_worker, args=(lane,)) for lane in lanes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return measured


def main(report="reports/perf/studies_time.md", run=None):
    torch.set_num_threads(1)
    rows, accuracy = [], {}
    with tempfile.TemporaryDirectory() as empty:
        for name in list_studies():
            configs = [cfg for cfg in get_study(name).configs(results_dir=empty, threads=1) if not cfg.cost_only]
            if not configs:  # a cost-only study (paper-scale models timed at their batch sizes): not estimated here
                rows.append((name, 0, 0, 0, None))
                continue
            cells = [(cfg, plan_cells(cfg)) for cfg in configs]
            trained = sum(1 for _, cs in cells for c in cs if c.kind == "accuracy")
            s = sum(estimate_seconds(cfg, cs, plots=False) for cfg, cs in cells)
            rows.append((name, len(configs), sum(len(cs) for _, cs in cells), trained, s))
            print(f"{name}: {len(configs)} configurations, {trained} trained cells, ~{duration(s)}", flush=True)
            if trained:
                accuracy[name] = s
    lanes, length = [[] for _ in range(LANES)], [0.0] * LANES
    for name in sorted(accuracy, key=accuracy.get, reverse=True):  # longest first onto the shorter lane
        i = length.index(min(length))
        lanes[i].append(name)
        length[i] += accuracy[name]
    total = sum(accuracy.values())
    lines = ["# The studies' time on this machine", "",
             "Command: `python scripts/studies_time.py` (each study planned from scratch at one thread and estimated "
             "by `bench.measure.estimate`, the figure `bench study NAME` prints before it starts).", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch "
             f"{torch.__version__}; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
             "| study | configurations | cells | trained cells | estimate at 1 thread |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {k} | {c} | {t} | {duration(s)} |" if s is not None else
              f"| {n} | cost only | | | not estimated (paper-scale cost; `bench study {n}` prints its estimate) |"
              for n, k, c, t, s in rows]
    lines += ["", f"Accuracy studies one after another: ~{duration(total)}. On {LANES} single-thread lanes (two "
              f"`bench study NAME --threads 1` at a time, longest first): ~{duration(max(length))}, lanes "
              + "; ".join(", ".join(lane) + f" (~{duration(n)})" for lane, n in zip(lanes, length)) + "."]
    if run:
        t = time.perf_counter()
        measured = run_lanes(lanes, run)
        lines += ["", f"Run into `{run}` (`--run`): the whole set in {duration(time.perf_counter() - t)} of wall "
                  "time; per study " + ", ".join(f"{n} {duration(w)}" + ("" if rc == 0 else f" (exit {rc})")
                                                 for n, (w, rc) in measured.items()) + "."]
    os.makedirs(os.path.dirname(report), exist_ok=True)
    open(report, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", default="reports/perf/studies_time.md")
    ap.add_argument("--run", default=None, metavar="RESULTS_DIR")
    a = ap.parse_args()
    main(a.report, a.run)
