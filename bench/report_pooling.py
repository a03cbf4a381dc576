"""The report section of the ``pooling`` study: each head's accuracy with its interval against its cost, and a
Pareto plot of the same (the hypotheses' verdicts are rendered with every study's, from ``bench.stats``).

``pooling_section(df, out_dir)`` takes the study's rows (``study-pooling.csv``) and returns the section's markdown
and the plot files it wrote. ``compute_df`` (the ``compute`` study's rows), when given, adds the cost of GAP, GMP
and ML-Decoder on the paper's backbones.
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

SETTING = ["backbone", "dataset", "img_size"]


def mean_interval(values: Sequence[float]) -> Tuple[float, float, float, float, int]:
    """(mean, sd, low, high, n): the mean over seeds and its 95% Student-t interval (``bench.stats``; NaN ends
    for n < 2)."""
    from .stats import t_critical

    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan, 0
    mean = float(v.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan, n
    sd = float(v.std(ddof=1))
    half = t_critical(n) * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half, n


def _ok(df):
    import pandas as pd

    ok = df[df["status"].astype(str) == "ok"].copy()
    for col in ("seed", "gmacs_head", "gmacs_total", "params_head"):
        if col in ok.columns:
            ok[col] = pd.to_numeric(ok[col], errors="coerce")
    return ok


def head_points(df, metric: str = "map") -> List[dict]:
    """One point per (backbone, dataset, img_size, head), in the order the heads first appear: the metric's mean,
    sd and 95% interval over seeds, n, and the head's cost (GMACs and parameters per image, from the rows)."""
    import pandas as pd

    ok = _ok(df)
    if metric not in ok.columns:
        return []
    ok[metric] = pd.to_numeric(ok[metric], errors="coerce")
    acc = ok[ok[metric].notna()]
    points = []
    for (bb, ds, size, head), g in acc.groupby(SETTING + ["head"], sort=False):
        per_seed = g.groupby("seed")[metric].mean()  # one value per seed
        mean, sd, low, high, n = mean_interval(per_seed.to_numpy())
        points.append(dict(backbone=bb, dataset=ds, img_size=size, head=head, metric=metric, acc=mean, sd=sd,
                           low=low, high=high, n=n, interval="95% t-interval",
                           cost=float(g["gmacs_head"].median()), gmacs_total=float(g["gmacs_total"].median()),
                           params_head=float(g["params_head"].median())))
    return points


def _f(v, digits: int = 2) -> str:
    if v is None or not np.isfinite(v):
        return "—"
    if v != 0 and abs(v) < 10 ** -digits:
        return f"{v:.2g}"
    return f"{v:.{digits}f}"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _cost_table(compute_df) -> str:
    """GAP, GMP and ML-Decoder GMACs on the compute study's backbones and sizes (pooling costs no MACs)."""
    ok = _ok(compute_df)
    ok = ok[ok["gmacs_total"].notna()]
    ok = ok.assign(kind=ok["head"].astype(str).str.split("(").str[0])
    kinds = [k for k in ("gap", "gmp", "mldecoder") if k in set(ok["kind"])]
    rows = []
    for (bb, size), g in ok.groupby(["backbone", "img_size"], sort=False):
        cells = {k: g.loc[g["kind"] == k, "gmacs_total"].median() for k in kinds}
        rows.append([f"`{bb}`", int(size)] + [_f(cells[k]) for k in kinds])
    if not rows:
        return ""
    return ("**Cost on the paper's backbones** (compute study, GMACs per image, backbone + head, 80 classes):\n\n"
            + _md_table(["backbone", "px"] + [f"{k} GMACs" for k in kinds], rows))


def pooling_section(df, out_dir: str, compute_df=None, make_plots: bool = True) -> Tuple[str, List[str]]:
    """The pooling study's section: a table per setting (mean ± sd, 95% interval, n, head GMACs and params) and a
    Pareto plot of accuracy against head GMACs; the hypotheses' verdicts are the report's generic lines
    (``bench.stats.evaluate``). Returns (markdown, plot file names in ``out_dir``)."""
    from .plots import plot_accuracy_vs_cost
    from .studies import get_study

    st = get_study("pooling")
    metric = st.hypotheses[0].metric if st.hypotheses else "map"
    parts = [f"### Pooling baselines and Query2Label\n\n{st.statement}\n\n*Published:* {st.paper}\n\n"
             f"*Setting:* {st.notes}"]
    plots: List[str] = []
    points = head_points(df, metric) if df is not None and len(df) else []
    if not points:
        parts.append(f"Not run yet: `bench study pooling` (no finished rows with `{metric}`).")
    settings = list(dict.fromkeys((p["backbone"], p["dataset"], p["img_size"]) for p in points))
    for i, (bb, ds, size) in enumerate(settings):
        pts = [p for p in points if (p["backbone"], p["dataset"], p["img_size"]) == (bb, ds, size)]
        rows = [[f"`{p['head']}`", f"{_f(p['acc'], 1)} ± {_f(p['sd'], 1)}", f"[{_f(p['low'], 1)}, {_f(p['high'], 1)}]",
                 p["n"], _f(p["cost"], 4), f"{p['params_head'] / 1e6:.3g}", _f(p["gmacs_total"], 4)] for p in pts]
        parts.append(f"**{bb} on {ds} at {int(size)} px** ({metric}, mean ± sd and 95% t-interval over seeds):\n\n"
                     + _md_table(["head", f"{metric}", "95% interval", "n", "head GMACs", "head params (M)",
                                  "total GMACs"], rows))
        if make_plots:
            name = "pooling_pareto" + (f"_{i}" if len(settings) > 1 else "")
            files = plot_accuracy_vs_cost(pts, out_dir, name, f"Heads on {bb}, {ds}, {int(size)} px: accuracy "
                                          "against the head's own cost", exts=("png",))
            plots += [os.path.basename(f) for f in files]
    if compute_df is not None and len(compute_df):
        table = _cost_table(compute_df)
        if table:
            parts.append(table)
    return "\n\n".join(parts) + "\n", plots
