"""What the CPU training step's cheaper pieces save, each against what it replaced, measured in one run (issue 13).

    usage: python scripts/step_cost.py [REPORT]     (default reports/perf/step_cost.md; about 2 minutes)

1. Dropout, forward + backward, p = 0.1: ``F.dropout`` against ``bench.heads._dropout.dropout`` (PCG64 bits), on
   the decoder heads' CPU-scale activations, interleaved in one process.
2. AdamW step on the parameters of ``attnpool`` on 512 channels (3.2M): foreach against fused (``training.adamw``).
3. The allocator: a fine-tuning step (test_resnet + gap, batch 64, 64 px, the default run's) and a probe step
   (txdec at CPU widths on resnet18's 512 x 3 x 3 features, batch 64), each in fresh processes with glibc's
   defaults and with ``bench.measure.alloc.keep_freed_memory``, alternating (the setting is per process).
Medians over rounds, at the run's thread count (``--threads`` of bench: here torch's default). Run it on a quiet
machine; the ratios hold better than the absolute times.
"""
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CHILD = r"""
import json, sys, time, torch
from bench.measure.alloc import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
from bench.heads import create_head
from bench.train.losses import compute_loss
from bench.backbones.model import build_model
from bench.train.training import ModelEMA, adamw
torch.manual_seed(0)
out = {}
for name in ("finetune", "probe"):
    if name == "finetune":
        m = build_model("test_resnet", "gap", 48, img_size=64).to(memory_format=torch.channels_last)
        x = torch.randn(64, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    else:
        m = create_head("txdec(embed=128, ffn=512, heads=4)", 512, 48)
        x = torch.randn(64, 512, 3, 3).contiguous(memory_format=torch.channels_last)
    m.train()
    y = (torch.rand(64, 48) < 0.1).float()
    opt, ema = adamw(m.parameters(), "cpu", lr=1e-3), ModelEMA(m, 0.999)
    def step():
        loss = compute_loss("asl", m(x), y, reduction="sum", gamma_neg=4, gamma_pos=0, clip=0.05, eps=1e-8)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); ema.update(m)
    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(15):
        step()
    out[name] = (time.perf_counter() - t0) / 15 * 1e3
print(json.dumps(out))
"""


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def interleaved(fns, rounds=7, calls=20):
    """{name: median ms per call} over ``rounds`` rounds that each time every function ``calls`` times."""
    times = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                f()
            times[k].append((time.perf_counter() - t0) / calls * 1e3)
    return {k: median(v) for k, v in times.items()}


def main(report=os.path.join(ROOT, "reports", "perf", "step_cost.md")):
    from bench.heads import create_head
    from bench.heads._dropout import dropout

    torch.manual_seed(0)
    load_before = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"]
    lines = ["# The CPU training step's pieces, against what they replaced (issue 13)", "",
             "Command: `python scripts/step_cost.py` (each comparison interleaved in one run; medians).", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, torch "
             f"{torch.__version__} with {torch.get_num_threads()} threads, Python {platform.python_version()}; "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; load average before "
             f"{'/'.join(load_before)}.", "",
             "| piece | before | ms | after | ms | after / before |", "|---|---|---:|---|---:|---:|"]
    for shape in [(64, 48, 512), (64, 48, 128)]:
        x = torch.randn(*shape, requires_grad=True)
        g = torch.randn_like(x)
        r = interleaved({"F.dropout": lambda: F.dropout(x, 0.1, True).backward(g),
                         "ours": lambda: dropout(x, 0.1, True).backward(g)})
        lines.append(f"| dropout fwd+bwd {shape} | F.dropout | {r['F.dropout']:.2f} | PCG64 mask | {r['ours']:.2f} | "
                     f"{r['ours'] / r['F.dropout']:.2f} |")
    head = create_head("attnpool", 512, 48)
    for p in head.parameters():
        p.grad = torch.randn_like(p)
    n = sum(p.numel() for p in head.parameters())
    foreach = torch.optim.AdamW(head.parameters(), lr=1e-3, foreach=True)
    fused = torch.optim.AdamW(head.parameters(), lr=1e-3, fused=True)
    r = interleaved({"foreach": foreach.step, "fused": fused.step})
    lines.append(f"| AdamW step, {n / 1e6:.1f}M params (attnpool) | foreach | {r['foreach']:.2f} | fused | "
                 f"{r['fused']:.2f} | {r['fused'] / r['foreach']:.2f} |")
    runs = {"default": [], "keep": []}
    for _ in range(3):
        for mode in runs:
            out = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout
            runs[mode].append(json.loads(out.strip().splitlines()[-1]))
    for name, what in (("finetune", "fine-tuning step, test_resnet + gap, batch 64 at 64 px"),
                       ("probe", "probe step, txdec(embed=128, ffn=512, heads=4), batch 64")):
        before, after = median([r[name] for r in runs["default"]]), median([r[name] for r in runs["keep"]])
        lines.append(f"| {what} | glibc defaults | {before:.1f} | keep_freed_memory | {after:.1f} | "
                     f"{after / before:.2f} |")
    lines += ["", "Allocator rows: 3 fresh processes each, alternating, 15 timed steps after 3 warm-up steps; the "
              "median process. Other rows: 7 interleaved rounds of 20 calls."]
    os.makedirs(os.path.dirname(report), exist_ok=True)
    open(report, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(*sys.argv[1:])
