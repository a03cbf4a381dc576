"""Plots from result rows: speed-accuracy Pareto fronts, or cost plots when there is no accuracy.

Readability rules: a point is named by the legend beside the axes (colour = head, marker = backbone), so no
label runs past the axes or over another; an axis is logarithmic only where its data span at least a decade
(``LOG_SPAN``), with labels at most at ``MAX_TICKS`` ticks and none on minor ticks, so tick labels never collide.
Files are written as PNG and SVG.
"""
from __future__ import annotations

import math
import os
from typing import List, Sequence

import numpy as np

from ..analysis.rows import ok_rows
from ..analysis.stats import t_critical
from .tables import primary_metric

LOG_SPAN = 10.0  # max / min of an axis's data from which it is drawn logarithmic
MAX_TICKS = 6
MARKERS = "os^DvPX*<>hp"


def set_scale(ax, axis: str, values) -> str:
    """Logarithmic when the positive data span at least LOG_SPAN, else linear; few, plain tick labels either way.
    Returns the scale chosen."""
    from matplotlib import ticker

    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    log = len(v) > 1 and (v > 0).all() and v.max() / v.min() >= LOG_SPAN
    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log" if log else "linear")
    if log:
        target.set_major_locator(ticker.LogLocator(base=10, numticks=MAX_TICKS))
        target.set_major_formatter(ticker.LogFormatterSciNotation())
        target.set_minor_formatter(ticker.NullFormatter())
    else:
        target.set_major_locator(ticker.MaxNLocator(nbins=MAX_TICKS - 1))
        target.set_major_formatter(ticker.ScalarFormatter(useOffset=False))
    return "log" if log else "linear"


def _legend_outside(ax, **kw):
    """The legend right of the axes, where it covers no point (the figure grows to hold it)."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False, **kw)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_front(xs: Sequence[float], ys: Sequence[float], higher_x_better: bool = False) -> List[int]:
    """Indices of the non-dominated points (lower x better unless ``higher_x_better``; higher y better),
    ordered by x."""
    pts = [(x if not higher_x_better else -x, -y, i) for i, (x, y) in enumerate(zip(xs, ys))
           if np.isfinite(x) and np.isfinite(y)]
    pts.sort()
    front, best = [], np.inf
    for x, negy, i in pts:
        if negy < best:
            front.append(i)
            best = negy
    return front


def _save(fig, out_dir: str, name: str, exts: Sequence[str] = ("png", "svg")) -> List[str]:
    os.makedirs(out_dir, exist_ok=True)
    files = []
    for ext in exts:
        path = os.path.join(out_dir, f"{name}.{ext}")
        fig.savefig(path, dpi=130, bbox_inches="tight")
        files.append(path)
    _plt().close(fig)
    return files


def accuracy_points(df) -> list:
    """One point per (backbone, head, img_size, dataset): accuracy mean/std over seeds, GMACs, throughput."""
    import pandas as pd

    ok = ok_rows(df)
    metric = primary_metric(ok)
    if metric is None:
        return []
    acc = ok[ok[metric].notna()]
    timed = ok[ok["throughput_img_s"].notna()]
    points = []
    for (bb, head, size, ds), g in acc.groupby(["backbone", "head", "img_size", "dataset"], sort=False):
        vals = pd.to_numeric(g[metric], errors="coerce").dropna()
        t = timed[(timed["backbone"] == bb) & (timed["head"] == head) & (timed["img_size"] == size)]
        thr = np.nan
        if len(t):
            bs = pd.to_numeric(t["batch_size"], errors="coerce")
            thr = float(t.loc[bs == bs.max(), "throughput_img_s"].astype(float).median())
        points.append(dict(backbone=bb, head=head, img_size=size, dataset=ds, metric=metric,
                           acc=vals.mean(), std=vals.std(ddof=1) if len(vals) > 1 else 0.0, n=len(vals),
                           gmacs=float(pd.to_numeric(g["gmacs_total"], errors="coerce").median()),
                           throughput=thr))
    return points


def plot_pareto(points: list, x: str, out_dir: str, name: str, title: str,
                exts: Sequence[str] = ("png", "svg"), interval: bool = False) -> List[str]:
    """Accuracy against GMACs or throughput, one point per (backbone, head) with its seed spread (``interval``:
    its 95% Student-t interval over seeds instead), the Pareto front dashed; the legend names each point (colour
    = head, marker = backbone)."""
    plt = _plt()
    pts = [p for p in points if np.isfinite(p[x])]
    heads = list(dict.fromkeys(p["head"] for p in pts))
    backbones = list(dict.fromkeys(p["backbone"] for p in pts))
    colors = {h: plt.cm.tab10(i % 10) for i, h in enumerate(heads)}
    markers = {b: MARKERS[i % len(MARKERS)] for i, b in enumerate(backbones)}
    fig, ax = plt.subplots(figsize=(7, 4.8))
    xs = np.array([p[x] for p in pts], dtype=float)
    ys = np.array([p["acc"] for p in pts], dtype=float)
    for p in pts:
        label = p["head"] if len(backbones) == 1 else f"{p['backbone']} + {p['head']}"
        err = p["std"] * (t_critical(p["n"]) / math.sqrt(p["n"]) if interval and p["n"] > 1 else 1.0)
        ax.errorbar(p[x], p["acc"], yerr=err if err > 0 else None, fmt=markers[p["backbone"]],
                    color=colors[p["head"]], capsize=3, ms=7, label=label)
    front = pareto_front(xs, ys, higher_x_better=(x == "throughput"))
    if len(front) > 1:
        ax.plot(xs[front], ys[front], "--", color="0.4", lw=1, label="Pareto front (non-dominated)", zorder=0)
    metric = points[0]["metric"]
    n = max(p["n"] for p in points)
    ax.set_xlabel("GMACs per image (backbone + head)" if x == "gmacs" else "throughput (images/s)")
    spread = "mean and 95% t-interval" if interval else "mean ± std"
    ax.set_ylabel(f"{metric} (%), {spread} over {n} seed(s)")
    set_scale(ax, "x", xs)
    set_scale(ax, "y", ys)
    ax.margins(x=0.08, y=0.1)
    title = title + (f" ({backbones[0]})" if len(backbones) == 1 else "")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    _legend_outside(ax, fontsize=7)
    return _save(fig, out_dir, name, exts)


def plot_head_share(df, out_dir: str) -> List[str]:
    """Stacked horizontal bars: backbone and head GMACs per (backbone, resolution, classes, head), the head's
    share printed at the bar's end. Horizontal, so every label reads level and none overlaps its neighbour;
    the resolution and N appear in a label only where they vary."""
    import pandas as pd

    plt = _plt()
    cost = df[df["gmacs_total"].notna()].drop_duplicates(["backbone", "head", "img_size", "num_classes"])
    if not len(cost):
        return []
    vary_px = cost["img_size"].nunique() > 1
    vary_n = cost["num_classes"].nunique() > 1
    labels = [f"{r.backbone}" + (f" @{int(r.img_size)}" if vary_px else "")
              + (f" N={int(r.num_classes)}" if vary_n else "") + f" + {r.head}" for r in cost.itertuples()]
    bb = pd.to_numeric(cost["gmacs_backbone"]).to_numpy()
    hd = pd.to_numeric(cost["gmacs_head"]).to_numpy()
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.32 * len(labels) + 1.2)))
    idx = np.arange(len(labels))[::-1]  # the first row on top
    ax.barh(idx, bb, label="backbone", color="0.7")
    ax.barh(idx, hd, left=bb, label="head", color="tab:orange")
    total = bb + hd
    for i, b, h in zip(idx, bb, hd):
        ax.annotate(f" {100 * h / (b + h):.1f}%", (b + h, i), ha="left", va="center", fontsize=7)
    ax.set_xlim(0, total.max() * 1.15)  # room for the share labels inside the axes
    ax.set_yticks(idx)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel("GMACs per image")
    sizes = "" if vary_px else f" at {int(cost['img_size'].iloc[0])} px"
    ax.set_title(f"Head share of the total cost{sizes} (label: head % of total)", fontsize=9)
    _legend_outside(ax, fontsize=8)
    return _save(fig, out_dir, "cost_head_share")


def plot_head_vs_classes(df, out_dir: str) -> List[str]:
    """Head GMACs against the number of classes, one line per head (when several N were measured)."""
    import pandas as pd

    plt = _plt()
    cost = df[df["gmacs_head"].notna()].copy()
    cost["num_classes"] = pd.to_numeric(cost["num_classes"], errors="coerce")
    if cost["num_classes"].nunique() < 2:
        return []
    fig, ax = plt.subplots(figsize=(7, 5))
    for (bb, head), g in cost.groupby(["backbone", "head"]):
        g = g.drop_duplicates("num_classes").sort_values("num_classes")
        ax.plot(g["num_classes"], pd.to_numeric(g["gmacs_head"]), "o-", label=f"{bb} + {head}")
    set_scale(ax, "x", pd.to_numeric(cost["num_classes"]).to_numpy())
    set_scale(ax, "y", pd.to_numeric(cost["gmacs_head"]).to_numpy())
    ax.set_xlabel("number of classes N")
    ax.set_ylabel("head GMACs per image")
    ax.set_title("Head cost against the number of classes", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    _legend_outside(ax, fontsize=7)
    return _save(fig, out_dir, "cost_head_vs_classes")


def plot_results(df, out_dir: str) -> List[str]:
    """Every plot the rows support; returns the files written."""
    files: List[str] = []
    points = accuracy_points(df)
    if points:
        ds = ", ".join(sorted({str(p["dataset"]) for p in points}))
        files += plot_pareto(points, "gmacs", out_dir, "pareto_gmacs", f"Accuracy vs cost on {ds}")
        if any(np.isfinite(p["throughput"]) for p in points):
            files += plot_pareto(points, "throughput", out_dir, "pareto_throughput",
                                 f"Accuracy vs throughput on {ds}")
    files += plot_head_share(df, out_dir)
    files += plot_head_vs_classes(df, out_dir)
    return files


def plot_accuracy_vs_cost(points: list, out_dir: str, name: str, title: str, cost_label: str = "head GMACs per image",
                          log_x: bool = True, exts: Sequence[str] = ("png", "svg")) -> List[str]:
    """Every head's accuracy with its interval against its cost, and the Pareto front of the means.

    ``points``: dicts with ``head``, ``cost`` (> 0 for a log axis), ``acc`` (the mean), ``low`` and ``high`` (the
    interval's ends), ``n`` (seeds) and ``metric``; ``interval`` names the interval for the axis label (e.g.
    "95% t-interval"). Heads are told apart by colour and marker in the legend, not by text at the points, so
    labels never run into each other or past the axes. A log x axis is used only when the costs span more than
    a factor of 10.
    """
    plt = _plt()
    if not points:
        raise ValueError("plot_accuracy_vs_cost needs at least one point")
    fig, ax = plt.subplots(figsize=(7, 5))
    xs = np.array([p["cost"] for p in points], dtype=float)
    ys = np.array([p["acc"] for p in points], dtype=float)
    markers = "osD^vP*Xh<>"
    # Points of equal cost (GAP, GMP and avgmax cost the same MACs) are spread a little sideways, so that their
    # intervals do not hide one another; the front is drawn at the true costs.
    same = {c: [i for i, x in enumerate(xs) if x == c] for c in set(xs.tolist())}
    for i, p in enumerate(points):
        group = same[xs[i]]
        shift = 1.06 ** (group.index(i) - (len(group) - 1) / 2)
        low, high = p.get("low", np.nan), p.get("high", np.nan)
        yerr = [[p["acc"] - low], [high - p["acc"]]] if np.isfinite(low) and np.isfinite(high) else None
        ax.errorbar(p["cost"] * shift, p["acc"], yerr=yerr, fmt=markers[i % len(markers)], color=plt.cm.tab10(i % 10),
                    capsize=3, ms=7, label=f"{p['head']} (n={p['n']})")
    front = pareto_front(xs, ys)
    if len(front) > 1:
        ax.plot(xs[front], ys[front], "--", color="0.4", lw=1, label="Pareto front of the means")
    finite = xs[np.isfinite(xs) & (xs > 0)]
    if log_x and len(finite) and finite.max() / finite.min() > 10:
        ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    interval = points[0].get("interval", "interval")
    ax.set_ylabel(f"{points[0]['metric']} (%), mean and {interval} over seeds")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # outside the axes
    return _save(fig, out_dir, name, exts)
