"""Forward + backward time of the heads' CPU dropout (bench.heads._dropout) against F.dropout, at one thread.

    usage: python scripts/dropout_cost.py [REPORT]     (default reports/perf/dropout_cost.md; ~10 s)
Run it on a quiet machine: both are timed in one process, interleaved, so the ratio holds even when the absolute
times do not.
"""
import datetime
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F

from bench.heads._dropout import dropout


def seconds(fn, x, g, rounds=40):
    fn(x).backward(g)
    t = time.perf_counter()
    for _ in range(rounds):
        fn(x).backward(g)
    return (time.perf_counter() - t) / rounds


def main(report="reports/perf/dropout_cost.md"):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    lines = ["# Dropout on the CPU: bench.heads._dropout against F.dropout", "",
             "Command: `python scripts/dropout_cost.py` (forward + backward, p = 0.1, one thread, median of 5 "
             "interleaved rounds of 40 calls).", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch "
             f"{torch.__version__}; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
             "| activation | F.dropout ms | ours ms | ratio |", "|---|---:|---:|---:|"]
    for shape in [(64, 48, 512), (64, 48, 128)]:
        x = torch.randn(*shape, requires_grad=True)
        g = torch.randn_like(x)
        ref, ours = [], []
        for _ in range(5):
            ref.append(seconds(lambda t: F.dropout(t, 0.1, True), x, g))
            ours.append(seconds(lambda t: dropout(t, 0.1, True), x, g))
        r, o = sorted(ref)[2] * 1e3, sorted(ours)[2] * 1e3
        lines.append(f"| {tuple(shape)} | {r:.2f} | {o:.2f} | {o / r:.2f} |")
    os.makedirs(os.path.dirname(report), exist_ok=True)
    open(report, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
