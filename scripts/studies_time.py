"""How long a rung of the studies takes on this machine, from the studies' own estimator, and measured.

    usage: python scripts/studies_time.py [--rung RUNG] [--report FILE] [--run RESULTS_DIR] [--lanes N]
      --rung    the studies of one rung of evidence (bench.studies.RUNGS): scratch [default] (the claims on
                synthetic images, backbones from scratch), pretrained (frozen ImageNet-pretrained backbones on real
                images) or finetuned; the paper's claims only
      --report  where the table goes [default: reports/perf/studies_time.md, studies_time_<rung>.md for another
                rung]; about a minute
      --run     then run the accuracy studies on those lanes into RESULTS_DIR (resumable: finished cells are
                skipped), each lane one `bench study NAME` after another, add each study's measured wall time and
                the whole set's to the report, and record them in RESULTS_DIR/times.csv (which `bench report`
                shows beside each study)
      --lanes   studies run side by side, each lane one `bench study NAME` after another with an equal share of
                the cores [default: 2]. The pretrained rung's studies share cached features: a feature file that
                two lanes need at the same moment is extracted by both (written atomically; the time counts)
      --cold    with --run: an empty cache ($HEADBENCH_CACHE in a temporary folder), so that the measured time
                includes extracting each (backbone, dataset, split, resolution)'s features once, converting the
                pretrained weights and embedding the class names, as on a fresh machine

Every study's training configurations are planned from scratch (an empty results folder: every cell pending) at a
lane's threads and estimated by bench.measure.estimate (quick measurements of each cell's work: a training step,
forward passes, data reads), the figure `bench study NAME` prints before it starts. Its cost-only configurations
(paper-scale models timed at their batch sizes) are left out: the classes study's batch-32 ones alone are days on
a CPU. The accuracy studies are then scheduled on the lanes, longest first (on a 2-core machine, two `bench study
NAME --threads 1` at a time for the scratch rung). Run it on a quiet machine: the estimate is measured.
"""
import argparse
import csv
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

import torch  # noqa: E402

from bench.measure.estimate import duration, estimate_seconds  # noqa: E402
from bench.report.render import TIMES  # noqa: E402  (the file the report reads the times from)
from bench.run.config import default_threads  # noqa: E402
from bench.run.results import environment  # noqa: E402
from bench.run.runner import plan_cells  # noqa: E402
from bench.studies import RUNGS, get_study, list_studies  # noqa: E402

TIME_FIELDS = ["study", "rung", "wall_s", "exit_code", "lane", "lanes", "threads", "cold_cache", "cpu",
               "torch_version", "git_commit", "timestamp", "command"]


def run_lanes(lanes, results_dir, threads: int, env: dict):
    """Run each lane's studies one after another, the lanes side by side; {study: (wall s, exit code, lane)}."""
    env = dict(env, OMP_NUM_THREADS=str(threads))
    measured = {}

    def lane_worker(lane, names):
        for name in names:
            t = time.perf_counter()
            rc = subprocess.call([sys.executable, "-m", "bench", "study", name, "--threads", str(threads),
                                  "--results-dir", results_dir], env=env, stdout=subprocess.DEVNULL)
            measured[name] = (time.perf_counter() - t, rc, lane)
            print(f"{name}: {duration(measured[name][0])} (exit {rc})", flush=True)

    workers = [threading.Thread(target=lane_worker, args=(i, lane)) for i, lane in enumerate(lanes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return measured


def rung_studies(rung: str):
    """The studies testing the paper's claims on a rung, by name. A study beyond the claims has its own time target
    and is timed by its own `bench study NAME` (the probing study's rows record theirs)."""
    return [n for n in list_studies() if get_study(n).rung == rung and get_study(n).claim is not None]


def estimate(names, threads: int):
    """Per study (name, configurations, cells, trained cells, estimated seconds or None for a cost-only study),
    each planned from scratch (an empty results folder) at ``threads`` threads."""
    rows = []
    with tempfile.TemporaryDirectory() as empty:
        for name in names:
            configs = [cfg for cfg in get_study(name).configs(results_dir=empty, threads=threads)
                       if not cfg.cost_only]
            if not configs:  # a cost-only study (paper-scale models timed at their batch sizes): not estimated here
                rows.append((name, 0, 0, 0, None))
                continue
            cells = [(cfg, plan_cells(cfg)) for cfg in configs]
            trained = sum(1 for _, cs in cells for c in cs if c.kind == "accuracy")
            s = sum(estimate_seconds(cfg, cs, plots=False) for cfg, cs in cells)
            rows.append((name, len(configs), sum(len(cs) for _, cs in cells), trained, s))
            print(f"{name}: {len(configs)} configurations, {trained} trained cells, ~{duration(s)}", flush=True)
    return rows


def schedule(accuracy: dict, lanes: int):
    """The studies on ``lanes`` lanes, longest first onto the shorter lane: (lanes, each lane's estimate)."""
    out, length = [[] for _ in range(lanes)], [0.0] * lanes
    for name in sorted(accuracy, key=accuracy.get, reverse=True):
        i = length.index(min(length))
        out[i].append(name)
        length[i] += accuracy[name]
    return out, length


def record_times(results_dir: str, measured: dict, rung: str, lanes: int, threads: int, cold: bool) -> str:
    """Append each study's measured wall time and its lane to ``results_dir/times.csv`` (a study measured again gets
    a new row; the report shows the latest, and a rung's wall time as its longest lane's)."""
    os.makedirs(results_dir, exist_ok=True)
    path = os.path.join(results_dir, TIMES)
    env = environment("cpu")
    new = not os.path.exists(path)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=TIME_FIELDS)
        if new:
            w.writeheader()
        for name, (wall, rc, lane) in measured.items():
            w.writerow(dict(study=name, rung=rung, wall_s=f"{wall:.1f}", exit_code=rc, lane=lane, lanes=lanes,
                            threads=threads,
                            cold_cache=int(cold), cpu=env["cpu"], torch_version=env["torch_version"],
                            git_commit=env["git_commit"], timestamp=now,
                            command=f"python scripts/studies_time.py --rung {rung} --run {results_dir}"
                                    + (" --cold" if cold else "") + (f" --lanes {lanes}" if lanes != 2 else "")))
    return path


def main(rung="scratch", report=None, run=None, lanes=None, cold=False):
    n_lanes = lanes or 2
    threads = max(1, default_threads() // n_lanes)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    report = report or ("reports/perf/studies_time.md" if rung == "scratch" else
                        f"reports/perf/studies_time_{rung}.md")
    rows = estimate(rung_studies(rung), threads)
    accuracy = {name: s for name, _, _, trained, s in rows if trained}
    plan, length = schedule(accuracy, n_lanes)
    total = sum(accuracy.values())
    lines = [f"# The studies' time on this machine: rung {rung} ({RUNGS[rung]})", "",
             f"Command: `python scripts/studies_time.py --rung {rung}` (each study planned from scratch at {threads} "
             f"thread(s) and estimated by `bench.measure.estimate`, the figure `bench study NAME` prints before it "
             "starts).", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch "
             f"{torch.__version__}; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
             f"| study | configurations | cells | trained cells | estimate at {threads} thread(s) |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {n} | {k} | {c} | {t} | {duration(s)} |" if s is not None else
              f"| {n} | cost only | | | not estimated (paper-scale cost; `bench study {n}` prints its estimate) |"
              for n, k, c, t, s in rows]
    lines += ["", f"Accuracy studies one after another: ~{duration(total)}."]
    if n_lanes > 1:
        lines[-1] += (f" On {n_lanes} lanes of {threads} thread(s) (longest first): ~{duration(max(length))}, lanes "
                      + "; ".join(", ".join(lane) + f" (~{duration(n)})" for lane, n in zip(plan, length)) + ".")
    if run:
        env = dict(os.environ)
        with tempfile.TemporaryDirectory() as cache:
            if cold:
                env["HEADBENCH_CACHE"] = cache
            t = time.perf_counter()
            measured = run_lanes(plan, run, threads, env)
            whole = time.perf_counter() - t
        path = record_times(run, measured, rung, n_lanes, threads, cold)
        lines += ["", f"Run into `{run}` (`--run`{', `--cold`: an empty cache' if cold else ''}): the whole set in "
                  f"{duration(whole)} of wall time; per study "
                  + ", ".join(f"{n} {duration(w)}" + ("" if rc == 0 else f" (exit {rc})")
                              for n, (w, rc) in measured.items()) + f". Recorded in `{path}`."]
    os.makedirs(os.path.dirname(report), exist_ok=True)
    open(report, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rung", default="scratch", choices=list(RUNGS))
    ap.add_argument("--report", default=None)
    ap.add_argument("--run", default=None, metavar="RESULTS_DIR")
    ap.add_argument("--lanes", type=int, default=None)
    ap.add_argument("--cold", action="store_true")
    a = ap.parse_args()
    main(a.rung, a.report, a.run, a.lanes, a.cold)
