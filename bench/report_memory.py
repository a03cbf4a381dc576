"""The report's section "which heads fit": for each head, the largest number of classes N whose training step
fits a memory budget at a batch size, from the classes study's memory rows (a pure function of result rows).

A training step's *footprint* is what a device must hold: the weights (fp32, ``params_total``), the input batch,
and the step's peak above those (``mem_train_peak_mib``: activations, gradients, AdamW state). Per head (the
head spec with ``groups=<N>`` written ``groups=N``, so ML-Decoder's full decoding is one head across N), the
largest N within the budget is

- *measured* when the footprint was measured within the budget at the study's largest N, or when a measured N
  within the budget is followed by a measured N above it (then the crossing is interpolated between the two);
- *extrapolated* otherwise: beyond the largest N measured, or where the larger N did not fit on the measuring
  machine (``train_status`` "oom", or measured only at a smaller batch). The head's own share (footprint minus
  the backbone alone's) is extrapolated as a power of N through the two largest measured N (exponent ``p``: 1
  for a head linear in N, 2 for self-attention over N queries), or linearly when a share is not positive.
"""
from __future__ import annotations

import math
import os
import re
from typing import List, Optional, Tuple

import numpy as np

MIB = 2 ** 20


def head_family(head: str, num_classes) -> str:
    """The head spec with ``groups=<num_classes>`` written ``groups=N`` (full decoding at every N)."""
    try:
        n = int(float(num_classes))
    except (TypeError, ValueError):
        return head
    return re.sub(rf"\bgroups={n}\b", "groups=N", head)


def _num(df, col):
    import pandas as pd

    return pd.to_numeric(df[col], errors="coerce") if col in df.columns else pd.Series(np.nan, index=df.index)


def training_footprints(df, batch: int = 32):
    """One row per (head family, N) at ``batch``: ``footprint_mib`` (NaN when not measured at that batch),
    ``backbone_mib`` (the backbone alone's footprint), ``fits_here`` False when the step was out of memory."""
    import pandas as pd

    ok = df[df["status"].astype(str) == "ok"] if "status" in df.columns else df
    ok = ok[_num(ok, "batch_size") == batch]
    status = ok["train_status"].astype(str) if "train_status" in ok.columns else pd.Series("", index=ok.index)
    tb = _num(ok, "train_batch_size")
    ok = ok[(status != "") & (status != "nan") | _num(ok, "mem_train_peak_mib").notna()]
    if not len(ok):
        return pd.DataFrame(columns=["head", "num_classes", "footprint_mib", "backbone_mib", "fits_here"])
    status, tb = status.loc[ok.index], tb.loc[ok.index]
    img = _num(ok, "img_size")
    batch_mib = batch * 3 * img ** 2 * 4 / MIB  # (B, 3, H, W) fp32
    measured = (tb == batch) & _num(ok, "mem_train_peak_mib").notna()
    out = pd.DataFrame({
        "head": [head_family(h, n) for h, n in zip(ok["head"], ok["num_classes"])],
        "num_classes": _num(ok, "num_classes").astype(int),
        "footprint_mib": (_num(ok, "mem_train_peak_mib") + _num(ok, "params_total") * 4 / MIB + batch_mib)
        .where(measured),
        "backbone_mib": (_num(ok, "mem_train_backbone_mib") + _num(ok, "params_backbone") * 4 / MIB + batch_mib)
        .where(measured),
        "fits_here": ~((status == "oom") | (tb < batch)),
    })
    return out.groupby(["head", "num_classes"], sort=False, as_index=False).agg(
        footprint_mib=("footprint_mib", "median"), backbone_mib=("backbone_mib", "median"),
        fits_here=("fits_here", "all")).sort_values(["head", "num_classes"], kind="stable")


def largest_n(points, budget_mib: float) -> dict:
    """The largest N within ``budget_mib`` from one head's rows of ``training_footprints`` (see module docs).

    Returns ``n`` (None when no N can fit: even the smallest measured is over budget), ``how`` ("measured",
    "interpolated" or "extrapolated ..."), ``largest_measured`` (the largest N with a measured footprint),
    ``over`` (True when ``n`` is an upper bound: the smallest measured N is already over the budget).
    """
    pts = points.sort_values("num_classes")
    meas = pts[pts["footprint_mib"].notna()]
    if not len(meas):
        return dict(n=None, how="no measurement", largest_measured=None, over=False)
    ns, fp = meas["num_classes"].to_numpy(float), meas["footprint_mib"].to_numpy(float)
    within = fp <= budget_mib
    if not within[0]:
        return dict(n=None, how=f"over the budget at the smallest N measured ({int(ns[0])})",
                    largest_measured=int(ns[-1]), over=True)
    first_over = np.flatnonzero(~within)
    if len(first_over):  # crossing between two measured N
        i = int(first_over[0])
        n0, n1, f0, f1 = ns[i - 1], ns[i], fp[i - 1], fp[i]
        n = n0 + (budget_mib - f0) * (n1 - n0) / (f1 - f0)
        return dict(n=int(n), how=f"interpolated between measured N={int(n0)} and {int(n1)}",
                    largest_measured=int(ns[-1]), over=False)
    all_n = pts["num_classes"].to_numpy(float)
    if ns[-1] >= all_n.max() and len(ns) < 2:
        return dict(n=int(ns[-1]), how="measured (the largest N measured)", largest_measured=int(ns[-1]),
                    over=False)
    n = _extrapolate(meas, budget_mib)
    reason = "beyond the largest N measured" if ns[-1] >= all_n.max() else \
        "the larger N did not fit at this batch on the measuring machine"
    if n is None:
        return dict(n=int(ns[-1]), how=f"measured up to N={int(ns[-1])}; no growth to extrapolate",
                    largest_measured=int(ns[-1]), over=False)
    value, model = n
    return dict(n=int(value), how=f"extrapolated ({model}; {reason})", largest_measured=int(ns[-1]), over=False)


def _extrapolate(meas, budget_mib: float) -> Optional[Tuple[float, str]]:
    """N where the footprint reaches the budget, through the two largest measured N (see module docs)."""
    if len(meas) < 2:
        return None
    (n1, f1, b1), (n2, f2, b2) = meas[["num_classes", "footprint_mib", "backbone_mib"]].to_numpy(float)[-2:]
    s1, s2 = f1 - b1, f2 - b2
    if all(v == v for v in (s1, s2)) and s1 > 0 and s2 > s1:
        p = math.log(s2 / s1) / math.log(n2 / n1)
        return n2 * ((budget_mib - b2) / s2) ** (1 / p), f"head's share ~ N^{p:.2f}"
    slope = (f2 - f1) / (n2 - n1)
    if slope <= 0:
        return None
    return n2 + (budget_mib - f2) / slope, f"linear, {slope * 1000:.3g} MiB per 1000 classes"


def memory_section(df, out_dir: str, budget_gib: float = 16.0, batch: int = 32) -> Tuple[str, List[str]]:
    """The "which heads fit" section (markdown) and its plot of training footprint against N, written into
    ``out_dir`` (``memory_vs_classes.png``). ``df``: result rows (the classes study's); rows at other batch sizes
    are ignored. Returns ``(markdown, [plot paths])``; with no memory rows, a line saying so and no plot."""
    title = f"### Which heads fit: training at batch {batch} within {budget_gib:g} GiB\n\n"
    fp = training_footprints(df, batch)
    if not len(fp):
        return title + (f"No training-memory rows at batch {batch} (run `bench study classes`, whose batch-{batch} "
                        "configurations measure them).\n"), []
    budget = budget_gib * 1024
    lines = ["| head | measured at N | largest N within budget | how | footprint at the largest N measured |",
             "|---|---|---|---|---|"]
    results = {}
    for head, pts in fp.groupby("head", sort=False):
        r = results[head] = largest_n(pts, budget)
        meas = pts[pts["footprint_mib"].notna()]
        failed = pts[~pts["fits_here"]]["num_classes"].tolist()
        at = ", ".join(f"{n:,}" for n in meas["num_classes"]) or "none"
        if failed:
            at += " (out of memory here at " + ", ".join(f"{n:,}" for n in failed) + ")"
        n = "none" if r["n"] is None else f"{r['n']:,}"
        last = f"{meas['footprint_mib'].iloc[-1] / 1024:.2f} GiB" if len(meas) else "-"
        lines.append(f"| {head} | {at} | {n} | {r['how']} | {last} |")
    text = title + "\n".join(lines) + "\n\n" + (
        f"Footprint = fp32 weights + the input batch + the training step's peak above them (activations, "
        f"gradients, AdamW state), measured in a fresh process per row (CPU: peak RSS growth; CUDA: "
        f"max_memory_allocated). 'Measured' values lie between measured points; extrapolations follow the head's "
        f"own share through the two largest N measured, so they are estimates, not measurements.\n")
    return text, [_plot(fp, results, budget, batch, out_dir)]


def _plot(fp, results, budget_mib: float, batch: int, out_dir: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (head, pts) in enumerate(fp.groupby("head", sort=False)):
        color = f"C{i}"
        meas = pts[pts["footprint_mib"].notna()]
        ax.plot(meas["num_classes"], meas["footprint_mib"] / 1024, "o-", color=color, label=head)
        n = results[head]["n"]
        if n and results[head]["how"].startswith("extrapolated") and len(meas):
            ax.plot([meas["num_classes"].iloc[-1], n], [meas["footprint_mib"].iloc[-1] / 1024, budget_mib / 1024],
                    "--", color=color)
        failed = pts[~pts["fits_here"]]
        if len(failed):
            ax.plot(failed["num_classes"], [budget_mib / 1024 * 1.05] * len(failed), "x", color=color, ms=9)
    ax.axhline(budget_mib / 1024, color="grey", lw=1)
    ax.text(fp["num_classes"].min(), budget_mib / 1024 * 1.01,
            f"{budget_mib / 1024:g} GiB", color="grey", va="bottom", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("number of classes N")
    ax.set_ylabel(f"training footprint at batch {batch} (GiB)")
    ax.set_title("Training memory against N (x: out of memory on the measuring machine; dashed: extrapolated)",
                 fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out_dir, "memory_vs_classes.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["head_family", "largest_n", "memory_section", "training_footprints"]
