"""Summary tables from result rows: cost and accuracy side by side, accuracy as mean ± spread over seeds."""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from ..analysis.rows import metric_of, unique_rows
from ..analysis.stats import CONTRADICTED, SUPPORTED, decide, paired_difference

ACC_METRICS = ("map", "top1", "zsl_map", "gzsl_map", "cf1", "of1")


def primary_metric(df) -> Optional[str]:
    """The accuracy column a table or plot leads with: mAP for multi-label, top-1 for single-label, else the
    zero-shot mAP."""
    return metric_of(df, ("map", "top1", "zsl_map"))


def summarize(df, group=("backbone", "head")) -> List[dict]:
    """One row per (backbone, head): cost at batch 1 and the largest batch, accuracy mean ± std over seeds.

    Every head after the first of a backbone (and of the same other ``group`` values) is compared with that
    first head seed by seed (the heads of a seed share the backbone's initial weights and the data order):
    ``delta`` is the mean paired difference, ``delta_low``/``delta_high`` its 95% interval, ``delta_n`` the
    shared seeds and ``delta_word`` says it in words (``compare_word``).
    """
    import pandas as pd

    ok = unique_rows(df)  # one row per measurement: a seed counts once however often it was written
    metric = primary_metric(ok)
    rows = []
    for keys, g in ok.groupby(list(group), sort=False):
        r = dict(zip(group, keys))
        for c in ("params_head", "params_total", "gmacs_head", "gmacs_total"):
            r[c] = pd.to_numeric(g[c], errors="coerce").dropna().iloc[0] if g[c].notna().any() else np.nan
        timed = g[g["latency_ms_p50"].notna()] if "latency_ms_p50" in g else g.iloc[0:0]
        if len(timed):
            bs = pd.to_numeric(timed["batch_size"], errors="coerce")
            r["latency_ms_b1"] = timed.loc[bs == bs.min(), "latency_ms_p50"].astype(float).median()
            r["throughput_img_s"] = timed.loc[bs == bs.max(), "throughput_img_s"].astype(float).median()
            r["head_ms"] = timed.loc[bs == bs.max(), "head_ms_p50"].astype(float).median()
            r["timing_batch"] = int(bs.max())
        if metric:
            metric_g = primary_metric(g) or metric  # a study over datasets mixes top-1 and mAP rows
            vals = pd.to_numeric(g[metric_g], errors="coerce").dropna()
            r["metric"] = metric_g
            r["acc_mean"] = vals.mean() if len(vals) else np.nan
            r["acc_std"] = vals.std(ddof=1) if len(vals) > 1 else np.nan
            r["n_seeds"] = len(vals)
            ema = metric_g + "_ema"
            if ema in g.columns:
                ev = pd.to_numeric(g[ema], errors="coerce").dropna()
                r["acc_ema_mean"] = ev.mean() if len(ev) else np.nan
            r["_by_seed"] = _by_seed(g, metric_g)
        rows.append(r)
    if metric:
        base = {}
        setting = [c for c in group if c != "head"]
        for r in rows:
            b = base.setdefault(tuple(r[c] for c in setting), r)
            if r is b:
                continue
            d = paired_difference(r["_by_seed"], b["_by_seed"])
            r.update(delta=d.mean, delta_low=d.low, delta_high=d.high, delta_n=d.n, delta_word=compare_word(d))
    for r in rows:
        r.pop("_by_seed", None)
    return rows


def _by_seed(g, metric) -> dict:
    """seed -> metric of one (backbone, head) group (the latest row of a seed measured twice)."""
    import pandas as pd

    seeds = pd.to_numeric(g["seed"], errors="coerce") if "seed" in g.columns else pd.Series(dtype=float)
    vals = pd.to_numeric(g[metric], errors="coerce")
    return {int(s): float(v) for s, v in zip(seeds, vals) if s == s and v == v}


def compare_word(d) -> str:
    """A paired difference (``bench.analysis.stats.Difference``, head minus first head) in words: "better" or "worse"
    when its 95% interval excludes 0, else "not distinguishable at n seeds"."""
    if d.n < 2:
        return f"not distinguishable at {d.n} seed{'s' if d.n != 1 else ''} (no interval)"
    outcome = decide(d, "better").outcome
    if outcome == SUPPORTED:
        return "better"
    if outcome == CONTRADICTED:
        return "worse"
    return f"not distinguishable at {d.n} seeds"
