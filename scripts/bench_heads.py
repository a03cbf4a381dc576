"""Heads against the machine's own matmul rate (issue 2, "Performance").

On a CPU a classification head is matmul-bound, so its yardstick is what this machine's BLAS does on one large
float32 square matmul. Each head's achieved rate is its analytic MACs (``head.analytic_macs``) divided by its
median time. Everything runs in one process, eval mode, no_grad, float32, on a (B, 2048, 14, 14) feature map,
and the timed cases are interleaved (A B C ... A B C ...) so that drift and other load hit them alike.

    python scripts/bench_heads.py                     # writes reports/perf/heads.md
    python scripts/bench_heads.py --reps 5 --out -    # quicker, markdown to stdout
    python scripts/bench_heads.py --threads 1 --clock cpu --out -   # A/B of code changes on a shared machine

Targets (batch 32): mldecoder N=80 at >= 80% of the matmul rate; N=9605, K=200 at >= 85%; and the N=9605, K=100
head within 1.3x the time of N=80. Timings are not tests: this script reports, it never fails on a threshold.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
from tqdm import tqdm

from bench.heads import create_head
from bench.heads._base import batch_of_one, to_tokens
from bench.run.results import cpu_name

C, H, W = 2048, 14, 14
MATMUL_N = 2048


@dataclass
class Case:
    """One timed thing: ``fn()`` does ``macs`` multiply-accumulates."""
    name: str
    batch: int
    macs: int
    fn: Callable[[], torch.Tensor]
    role: str = ""  # which target it feeds, if any


def group_fc_loop(h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The official code's group FC: a Python loop of K small matmuls. h (B, K, D), weight (K, D, g) -> (B, K*g)."""
    return torch.cat([h[:, k] @ weight[k] for k in range(weight.shape[0])], 1)  # K x (B, g) -> (B, K*g)


def forward_with_loop_fc(head, x: torch.Tensor) -> torch.Tensor:
    """``head.forward`` with its batched group FC replaced by the per-group loop (fixed/learnable queries)."""
    mem = F.relu(head.input_proj(to_tokens(x)))  # (B, L, D)
    h = head.decoder(batch_of_one(head.queries), mem)  # (B, K, D)
    return group_fc_loop(h, head.pool_weight)[:, : head.num_classes] + head.pool_bias  # (B, N)


def make_cases(batches: List[int], matmul_n: int = MATMUL_N) -> List[Case]:
    """The matmul yardstick, then per batch: the heads, the loop variant, and the group FC alone."""
    torch.manual_seed(0)
    cases: List[Case] = []
    a, b = torch.randn(matmul_n, matmul_n), torch.randn(matmul_n, matmul_n)
    cases.append(Case(f"matmul {matmul_n}^3 float32", 0, matmul_n ** 3, lambda: torch.mm(a, b), "matmul"))
    configs = [  # (label, spec, N, role)
        ("mldecoder N=80", "mldecoder", 80, "n80"),
        ("mldecoder N=9605 K=100", "mldecoder(groups=100)", 9605, "k100"),
        ("mldecoder N=9605 K=200", "mldecoder(groups=200)", 9605, "k200"),
        ("mldecoder N=9605 K=200, loop group FC", "mldecoder(groups=200)", 9605, "k200loop"),
        ("gap N=80", "gap", 80, ""),
        ("txdec N=80", "txdec", 80, ""),
        ("csra N=80", "csra", 80, ""),
        ("attnpool N=80", "attnpool", 80, ""),
    ]
    heads: Dict[str, torch.nn.Module] = {}
    for batch in batches:
        x = torch.randn(batch, C, H, W)
        for label, spec, n, role in configs:
            key = f"{spec}/{n}"
            if key not in heads:
                heads[key] = create_head(spec, C, n).eval()
            head = heads[key]
            macs = head.analytic_macs(tokens=H * W, batch=batch)
            if "loop" in label:
                fn = (lambda head=head, x=x: forward_with_loop_fc(head, x))
            else:
                fn = (lambda head=head, x=x: head(x))
            cases.append(Case(label, batch, macs, fn, role))
        # The group FC alone at K=200, batched vs looped: the op the loop variant changes.
        head = heads["mldecoder(groups=200)/9605"]
        hk = torch.randn(batch, head.groups, head.embed)
        fc_macs = batch * head.groups * head.embed * head.group_size
        cases.append(Case("group FC alone K=200 g=49, bmm", batch, fc_macs,
                          lambda hk=hk, w=head.pool_weight: torch.bmm(hk.transpose(0, 1), w)))
        cases.append(Case("group FC alone K=200 g=49, einsum", batch, fc_macs,
                          lambda hk=hk, w=head.pool_weight: torch.einsum("bkd,kdg->bkg", hk, w)))
        cases.append(Case("group FC alone K=200 g=49, loop", batch, fc_macs,
                          lambda hk=hk, w=head.pool_weight: group_fc_loop(hk, w)))
    return cases


def run(cases: List[Case], reps: int, warmup: int, min_time: float,
        clock: Callable[[], float] = time.perf_counter) -> Dict[int, List[float]]:
    """Seconds per call for each case, ``reps`` interleaved rounds. A round times a case over as many calls as
    fill ``min_time`` (at least one), so that tiny cases are not all clock resolution."""
    calls = {}
    with torch.inference_mode():
        for i, c in enumerate(cases):  # warm up, and size the number of calls per round
            for _ in range(warmup):
                c.fn()
            t0 = clock()
            c.fn()
            dt = clock() - t0
            calls[i] = max(1, int(min_time / max(dt, 1e-6)))
        times: Dict[int, List[float]] = {i: [] for i in range(len(cases))}
        for _ in tqdm(range(reps), desc="rounds", unit="round", file=sys.stderr):
            for i, c in enumerate(cases):
                t0 = clock()
                for _ in range(calls[i]):
                    c.fn()
                times[i].append((clock() - t0) / calls[i])
    return times


def quartiles(xs: List[float]):
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return q[0], q[1], q[2]


def load_average() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def _load_verdict(loads, threads: int) -> str:
    """Whether other work shared the CPUs, read from the 1-minute load averages before and after the run."""
    try:
        one_min = [float(str(x).split("/")[0]) for x in loads]
    except ValueError:
        return "unknown whether other work shared the CPUs."
    if max(one_min) > threads + 0.5:
        return "above the thread count: other work shared the CPUs."
    return "not above the thread count: the machine was otherwise quiet."


def report(cases: List[Case], times: Dict[int, List[float]], args, command: str, loads) -> str:
    rows = []
    for i, c in enumerate(cases):
        q1, med, q3 = quartiles(times[i])
        rows.append(dict(case=c, q1=q1, med=med, q3=q3, gmacs=c.macs / 1e9, rate=c.macs / med / 1e9))
    mm = next(r for r in rows if r["case"].role == "matmul")
    peak = mm["rate"]

    def find(role, batch):
        return next(r for r in rows if r["case"].role == role and r["case"].batch == batch)

    lines = [
        "# Head performance on CPU (issue 2)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}, {platform.system()}; "
        f"{_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. Load average (1/5/15 min) "
        f"before the run {loads[0]}, after {loads[1]}: " + _load_verdict(loads, torch.get_num_threads()),
        "",
        f"Setup: eval, `torch.inference_mode()`, float32, C={C}, {H}x{W} map (L={H * W}), default widths "
        f"(D=768, FFN 2048, 8 heads). {args.reps} interleaved rounds after {args.warmup} warm-up calls; a round "
        f"times each case over >= {args.min_time:g} s of calls. Clock: "
        + ("wall (`time.perf_counter`)" if args.clock == "wall" else
           "process CPU time (`time.process_time`, one thread: time the process was not running is not counted)")
        + ". Rate = analytic MACs / median time; % = rate / matmul rate.",
        "",
        "| case | batch | GMACs | median ms | IQR ms | GMAC/s | % of matmul |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        c = r["case"]
        lines.append(f"| {c.name} | {c.batch or '-'} | {r['gmacs']:.3f} | {r['med'] * 1e3:.2f} | "
                     f"{(r['q3'] - r['q1']) * 1e3:.2f} | {r['rate']:.1f} | {100 * r['rate'] / peak:.0f}% |")
    lines += ["", "## Targets (batch 32)", ""]
    if 32 in args.batches:
        n80, k100, k200, loop = find("n80", 32), find("k100", 32), find("k200", 32), find("k200loop", 32)
        checks = [
            ("mldecoder N=80 rate >= 80% of matmul", n80["rate"] / peak, 0.80, "{:.0%}"),
            ("mldecoder N=9605 K=200 rate >= 85% of matmul", k200["rate"] / peak, 0.85, "{:.0%}"),
            ("mldecoder N=9605 K=100 time <= 1.3x N=80 time", k100["med"] / n80["med"], 1.3, "{:.2f}x"),
        ]
        lines += ["| target | measured | met |", "|---|---:|---|"]
        for text, value, bound, fmt in checks:
            met = value <= bound if "time" in text else value >= bound
            lines.append(f"| {text} | {fmt.format(value)} | {'yes' if met else 'NO'} |")
        lines += ["", f"The per-group loop (the official code's group FC) at K=200 takes {loop['med'] * 1e3:.1f} ms "
                  f"for the whole head against {k200['med'] * 1e3:.1f} ms with the batched group FC "
                  f"({loop['med'] / k200['med']:.2f}x)."]
    else:
        lines.append("(batch 32 not run)")
    lines += ["", "Timings on a shared machine are noisy; compare the ratios within one run, and look at the load "
              "average above: when it exceeds the thread count, rerun on a quiet machine (or with `--threads 1 "
              "--clock cpu`, which counts only the time the process ran).", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--reps", type=int, default=9, help="interleaved rounds (median and IQR over these)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--min-time", type=float, default=0.05, help="seconds of calls per case per round")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: perf_counter (the figure to report); cpu: process time, with --threads 1 only, "
                        "for comparing code changes on a machine that other work shares")
    p.add_argument("--matmul-n", type=int, default=MATMUL_N, help="size of the square matmul yardstick")
    p.add_argument("--out", default="reports/perf/heads.md", help="markdown report path, or - for stdout")
    args = p.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        p.error("--clock cpu needs --threads 1 (process time adds up the time of every thread)")
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else
                                                                           sys.argv[1:])])
    load_before = load_average()
    cases = make_cases(args.batches, args.matmul_n)
    times = run(cases, args.reps, args.warmup, args.min_time,
                time.perf_counter if args.clock == "wall" else time.process_time)
    text = report(cases, times, args, command, (load_before, load_average()))
    if args.out == "-":
        sys.stdout.write(text)
    else:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        sys.stdout.write(text.split("## Targets", 1)[1] if "## Targets" in text else text)
        sys.stdout.write(f"\nwrote {out}\n")


if __name__ == "__main__":
    main()
