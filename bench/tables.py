"""Summary tables from result rows: cost and accuracy side by side, accuracy as mean ± spread over seeds."""
from __future__ import annotations

from typing import List, Optional

import numpy as np

ACC_METRICS = ("map", "top1", "zsl_map", "gzsl_map", "cf1", "of1")


def primary_metric(df) -> Optional[str]:
    """The accuracy column a table or plot leads with: mAP for multi-label, top-1 for single-label."""
    for m in ("map", "top1", "zsl_map"):
        if m in df.columns and df[m].notna().any():
            return m
    return None


def summarize(df, group=("backbone", "head")) -> List[dict]:
    """One row per (backbone, head): cost at batch 1 and the largest batch, accuracy mean ± std over seeds.

    Adds ``delta`` (difference of the mean from the first head of the same backbone) and ``delta_noise``
    (the combined seed spread of the two), so a difference can be read against the noise.
    """
    import pandas as pd

    from .results import unique_rows

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
            vals = pd.to_numeric(g[metric], errors="coerce").dropna()
            r["metric"] = metric
            r["acc_mean"] = vals.mean() if len(vals) else np.nan
            r["acc_std"] = vals.std(ddof=1) if len(vals) > 1 else np.nan
            r["n_seeds"] = len(vals)
            ema = metric + "_ema"
            if ema in g.columns:
                ev = pd.to_numeric(g[ema], errors="coerce").dropna()
                r["acc_ema_mean"] = ev.mean() if len(ev) else np.nan
        rows.append(r)
    if metric:
        base = {}
        for r in rows:
            b = base.setdefault(r["backbone"], r)
            if r is b:
                continue
            r["delta"] = r["acc_mean"] - b["acc_mean"]
            spread = np.sqrt(np.nansum([r.get("acc_std", np.nan) ** 2, b.get("acc_std", np.nan) ** 2]))
            r["delta_noise"] = spread if spread > 0 else np.nan
    return rows


def fmt_pm(mean, std, digits=1) -> str:
    if mean is None or mean != mean:
        return ""
    if std is None or std != std:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def verdict(delta, noise) -> str:
    """A difference is called real only when it exceeds twice the combined seed spread."""
    if delta is None or delta != delta:
        return ""
    if noise is None or noise != noise:
        return "no spread (1 seed)"
    return "above noise" if abs(delta) > 2 * noise else "within noise"
