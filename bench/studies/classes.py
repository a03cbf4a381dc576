"""Claim 2 (classes): head cost against the number of classes for GAP, the full decoder, ML-Decoder with full
decoding and ML-Decoder with 100 groups.

One file: the grid (``STUDY``, at the end) and its report code above it: the claim's cost against N (table, the
cost rule, plot) and the section "which heads fit" from the memory rows.
"""
from __future__ import annotations

import math
import os
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd

from ..analysis.rows import ok_rows
from ..report.kit import (DEFAULT_GROUPS, INSUFFICIENT, NOT_REPRODUCED, NOT_RUN, REPRODUCED, Claim, Context, Part, code,
                          cost_points, cost_rule, failures, fmt_num, head_options, lines_plot, loglog_slope, md_table,
                          num, pyplot, series_label, series_points)
from ._base import Study, register_study

NUM_CLASSES = [80, 1000, 5000, 9605, 20000]
MEMORY_BATCH = 32
MIB = 2 ** 20


def _heads(cfg):
    n = cfg["num_classes"]
    return ["gap", "txdec", f"mldecoder(groups={n})", "mldecoder(groups=100)"]


# ------------------------------------------------------------------------------ the report: cost against N

def groups_rule(growth_k100: float, slope_full: float) -> str:
    """The cost rule: K=100 grows less than ``groups_max_growth`` times while full decoding grows about
    linearly (slope above ``full_min_slope``)."""
    if not (np.isfinite(growth_k100) and np.isfinite(slope_full)):
        return INSUFFICIENT
    return (REPRODUCED if growth_k100 < cost_rule(STUDY, "groups_max_growth")
            and slope_full > cost_rule(STUDY, "full_min_slope") else NOT_REPRODUCED)


def _rule() -> str:
    return (f"ML-Decoder with K=100 groups: head GMACs at the largest N over those at N_ref (the smallest N >= "
            f"100) below {cost_rule(STUDY, 'groups_max_growth')}x, while full decoding (K = N) grows about "
            f"linearly (log-log slope above {cost_rule(STUDY, 'full_min_slope')})")


def _is_plain_mldecoder(opts: dict) -> bool:
    return (not opts.get("self_attn") and opts.get("queries", "fixed") == "fixed"
            and not opts.get("query_noise") and not opts.get("random_queries"))


def _cost_table(cost, series: List[str], ns) -> str:
    rows = []
    for n in ns:
        r = [str(int(n))]
        for s in series:
            g = cost[(cost["series"] == s) & (cost["num_classes"] == n)]
            r.append(f"{fmt_num(g['gmacs_head'].iloc[0], 3)} / {fmt_num(g['params_head'].iloc[0] / 1e6, 2)} / "
                     f"{fmt_num(g['head_ms_b1'].iloc[0], 2)}" if len(g) else "—")
        rows.append(r)
    bbs = ", ".join(f"{code(b)} at {int(s)} px" for b, s in dict.fromkeys(zip(cost["backbone"], cost["img_size"])))
    return (f"**Head cost against the number of classes N** (exactly the paper's heads on {bbs}, batch 1); each "
            "cell: head GMACs / head params (M) / head ms. `groups=N` is full decoding (one query per class); "
            "`mldecoder` is the default K = min(100, N).\n\n" + md_table(["N"] + [code(s) for s in series], rows))


def _k100_and_full(cost):
    """The series of ML-Decoder with the default K = min(100, N) and with full decoding (K = N), or None."""
    kinds = {}
    for h, n, s in zip(cost["head"], cost["num_classes"], cost["series"]):
        name, opts = head_options(h)
        if name == "mldecoder" and _is_plain_mldecoder(opts):
            if opts.get("groups") == n:
                kinds.setdefault("full", s)
            elif "groups" not in opts:
                kinds.setdefault("k100", s)
    return kinds.get("k100"), kinds.get("full")


def _cost_part(cost, series: List[str], ns) -> Tuple[Part, str]:
    """The cost rule from N_ref (the smallest N >= 100) to the largest N, and the summary's figure."""
    k100, full = _k100_and_full(cost)
    n_ref = next((n for n in ns if n >= DEFAULT_GROUPS), None)
    n_max = ns[-1] if ns else None
    if not (k100 and full and n_ref is not None and n_max is not None and n_max > n_ref):
        return Part("cost against N", INSUFFICIENT, "needs ML-Decoder K=100 and K=N at two N >= 100", _rule()), ""

    def at(s, n):
        g = cost[(cost["series"] == s) & (cost["num_classes"] == n)]
        return float(g["gmacs_head"].iloc[0]) if len(g) else math.nan

    growth = at(k100, n_max) / at(k100, n_ref)
    full_rows = cost[(cost["series"] == full) & (cost["num_classes"] >= n_ref)]
    slope_full = loglog_slope(full_rows["num_classes"], full_rows["gmacs_head"])
    extra = [f"{code(s)} {fmt_num(at(s, n_ref), 3)} -> {fmt_num(at(s, n_max), 3)}" for s in series
             if s not in (k100, full)]
    why = (f"K=100: {fmt_num(at(k100, n_ref), 3)} -> {fmt_num(at(k100, n_max), 3)} GMACs from N={int(n_ref)} to "
           f"{int(n_max)} (x{fmt_num(growth)}, +{fmt_num(at(k100, n_max) - at(k100, n_ref), 3)} GMACs: the group "
           f"FC); full decoding {fmt_num(at(full, n_ref), 3)} -> {fmt_num(at(full, n_max), 3)} "
           f"(x{fmt_num(at(full, n_max) / at(full, n_ref), 1)}, "
           f"slope {fmt_num(slope_full)})" + ("; " + ", ".join(extra) if extra else ""))
    summary = (f"K=100 head x{fmt_num(growth)} from N={int(n_ref)} to {int(n_max)}; full decoding "
               f"x{fmt_num(at(full, n_max) / at(full, n_ref), 1)}")
    return Part("cost against N", groups_rule(growth, slope_full), why, _rule()), summary


def _paper_figure(paper) -> str:
    oi = paper[(paper["dataset"].astype(str) == "openimages") & num(paper, "map").notna()] if len(paper) else paper
    if not len(oi):
        return ""
    r = oi.iloc[0]
    return (f"Open Images ({int(float(r['num_classes']))} classes), {r['backbone']} {code(r['head'])}: "
            f"{fmt_num(r['map'], 1)} mAP")


def claim_code(claim: Claim, rows, ctx: Context) -> None:
    """The claim's cost against N: head GMACs, params and ms of every head at every N, the cost rule (K=100
    against full decoding), a plot (the groups study adds the cost against K)."""
    figure = _paper_figure(ctx.paper)
    if figure:
        claim.paper_figure = figure
    if rows is None:
        claim.parts.append(Part("cost against N", NOT_RUN, "`bench study classes`", _rule()))
        return
    cost = cost_points(rows)
    cost["series"] = [series_label(h, n) for h, n in zip(cost["head"], cost["num_classes"])]
    series = list(dict.fromkeys(cost["series"]))
    ns = sorted(cost["num_classes"].dropna().unique())
    claim.body.append(_cost_table(cost, series, ns))
    part, summary = _cost_part(cost, series, ns)
    claim.parts.append(part)
    if summary:
        claim.suite_figure = summary
    if ctx.make_plots and series:
        claim.plots.append(lines_plot(
            ctx.out_dir, "claim2_cost_vs_classes.png", {s: series_points(cost, s) for s in series},
            "number of classes N", "head GMACs per image", "Claim 2: head cost against the number of classes"))
    fail = failures(rows)
    if fail:
        claim.body.append("classes study: " + fail)


# ------------------------------------------------------------------------ the report: which heads fit

# The section "which heads fit": for each head, the largest number of classes N whose training step fits a
# memory budget at a batch size, from the study's memory rows (a pure function of result rows).
#
# A training step's *footprint* is what a device must hold: the weights (fp32, ``params_total``), the input batch,
# and the step's peak above those (``mem_train_peak_mib``: activations, gradients, AdamW state). Per head (the
# head spec with ``groups=<N>`` written ``groups=N``, so ML-Decoder's full decoding is one head across N), the
# largest N within the budget is
#
# - *measured* when the footprint was measured within the budget at the study's largest N, or when a measured N
#   within the budget is followed by a measured N above it (then the crossing is interpolated between the two);
# - *extrapolated* otherwise: beyond the largest N measured, or where the larger N did not fit on the measuring
#   machine (``train_status`` "oom", or measured only at a smaller batch). The head's own share (footprint minus
#   the backbone alone's) is extrapolated as a power of N through the two largest measured N (exponent ``p``: 1
#   for a head linear in N, 2 for self-attention over N queries), or linearly when a share is not positive.

def training_footprints(df, batch: int = 32):
    """One row per (head family, N) at ``batch``: ``footprint_mib`` (NaN when not measured at that batch),
    ``backbone_mib`` (the backbone alone's footprint), ``fits_here`` False when the step was out of memory."""
    ok = ok_rows(df)
    ok = ok[num(ok, "batch_size") == batch]
    status = ok["train_status"].astype(str) if "train_status" in ok.columns else pd.Series("", index=ok.index)
    tb = num(ok, "train_batch_size")
    ok = ok[(status != "") & (status != "nan") | num(ok, "mem_train_peak_mib").notna()]
    if not len(ok):
        return pd.DataFrame(columns=["head", "num_classes", "footprint_mib", "backbone_mib", "fits_here"])
    status, tb = status.loc[ok.index], tb.loc[ok.index]
    img = num(ok, "img_size")
    batch_mib = batch * 3 * img ** 2 * 4 / MIB  # (B, 3, H, W) fp32
    measured = (tb == batch) & num(ok, "mem_train_peak_mib").notna()
    out = pd.DataFrame({
        "head": [series_label(h, n) for h, n in zip(ok["head"], ok["num_classes"])],
        "num_classes": num(ok, "num_classes").astype(int),
        "footprint_mib": (num(ok, "mem_train_peak_mib") + num(ok, "params_total") * 4 / MIB + batch_mib)
        .where(measured),
        "backbone_mib": (num(ok, "mem_train_backbone_mib") + num(ok, "params_backbone") * 4 / MIB + batch_mib)
        .where(measured),
        "fits_here": ~((status == "oom") | (tb < batch)),
    })
    return out.groupby(["head", "num_classes"], sort=False, as_index=False).agg(
        footprint_mib=("footprint_mib", "median"), backbone_mib=("backbone_mib", "median"),
        fits_here=("fits_here", "all")).sort_values(["head", "num_classes"], kind="stable")


def largest_n(points, budget_mib: float) -> dict:
    """The largest N within ``budget_mib`` from one head's rows of ``training_footprints`` (see the notes above).

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
    """N where the footprint reaches the budget, through the two largest measured N (see the notes above)."""
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


def memory_section(df, out_dir: str, budget_gib: float = 16.0, batch: int = 32,
                   make_plots: bool = True) -> Tuple[str, List[str]]:
    """The "which heads fit" section (markdown) and its plot of training footprint against N, written into
    ``out_dir`` (``memory_vs_classes.png``) when ``make_plots``. ``df``: result rows (the classes study's); rows at
    other batch sizes are ignored. Returns ``(markdown, [plot paths])``; with no memory rows, a line saying so and
    no plot."""
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
    return text, [_plot(fp, results, budget, batch, out_dir)] if make_plots else []


def _plot(fp, results, budget_mib: float, batch: int, out_dir: str) -> str:
    plt = pyplot()
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


def claim_section(rows, ctx: Context) -> Tuple[str, List[str]]:
    """The study's section after its verdicts: which heads fit (``memory_section``)."""
    text, plots = memory_section(rows, ctx.out_dir, make_plots=ctx.make_plots)
    return text, [os.path.basename(p) for p in plots]


STUDY = register_study(Study(
    name="classes",
    claim=2,
    statement="Group decoding makes the cost independent of N beyond the group FC: it scales to thousands of "
              "classes.",
    paper="Open Images, 9605 classes, TResNet-M 224 with 200 groups: 86.8 mAP; full decoding or a transformer "
          "decoder with one query per class would be prohibitive at that N.",
    base=dict(backbones=["tresnet_m"], img_size=224, batch_sizes=[1], cost_only=True, timing=True, memory=False,
              train_timing=False),  # latency at batch 1; the batch-32 configurations below opt in to memory
    variations=[dict(num_classes=n, heads=_heads) for n in NUM_CLASSES]
    # Memory at scale: peak memory of inference and of a training step, and the step's time, at batch 32 (what
    # decides whether a head can be trained at that N at all). Latency at batch 32 is left out: at N=20,000 the
    # full decoder's forward alone takes minutes on a CPU.
    + [dict(num_classes=n, heads=_heads, batch_sizes=[MEMORY_BATCH], latency=False, memory=True,
            train_timing=True) for n in NUM_CLASSES],
    notes="The paper's Open Images setting (TResNet-M at 224). Expected: GAP and ML-Decoder K=100 grow only by "
          "their final linear/group FC (linear in N with a small slope), ML-Decoder full decoding grows linearly "
          "with a large slope, txdec quadratically. The batch-32 configurations add peak memory and the training "
          "step: a step that does not fit is recorded (train_status 'oom'), and the report's 'which heads fit' "
          "extrapolates from the measured slope.",
    # A cost claim, no accuracy hypothesis. Cost rule: ML-Decoder K=100 grows by less than this factor from N_ref
    # (the smallest N >= 100) to the largest N, while full decoding grows about linearly (log-log slope above).
    cost_rules=dict(groups_max_growth=1.5, full_min_slope=0.8),
    claim_code=claim_code,
    claim_section=claim_section,
))
