"""Claim 1: removing self-attention keeps accuracy and turns the head's cost from quadratic to linear in the
number of queries.

One file: the grid and hypotheses (``STUDY``, at the end) and the claim's report code above it: the cost rule
(log-log slopes of head GMACs against N), its table and plots.
"""
from __future__ import annotations

import math
from typing import Dict, List

import numpy as np

from ..analysis.stats import accuracy_rows
from ..report.kit import (INSUFFICIENT, NOT_REPRODUCED, NOT_RUN, REPRODUCED, Claim, Context, Part, bars, code,
                          cost_points, cost_rule, failures, fmt_num, head_options, lines_plot, loglog_slope, md_table,
                          metric_of, not_run_part, series_label, series_points, short_label, stat)
from ._base import EMOJI, PRETRAINED, PROXY, SETTING, SMALL, Hypothesis, Study, register_study

NUM_QUERIES = [80, 400, 1000, 2000, 5000, 10000]
PLAIN, WITH_SA, TXDEC = f"mldecoder({SMALL})", f"mldecoder({SMALL}, self_attn=True)", f"txdec({SMALL})"


def _heads(cfg):
    n = cfg["num_classes"]
    return [f"mldecoder(groups={n})", f"mldecoder(groups={n}, self_attn=True)", "txdec"]


# ------------------------------------------------------------------------------------------------ the report

def scaling_rule(slope_linear: float, slope_quadratic: float) -> str:
    """The cost rule: without self-attention the slope stays below ``linear_max_slope``, with it above
    ``quadratic_min_slope`` (at the top of the measured range)."""
    if not (np.isfinite(slope_linear) and np.isfinite(slope_quadratic)):
        return INSUFFICIENT
    ok = (slope_linear < cost_rule(STUDY, "linear_max_slope")
          and slope_quadratic > cost_rule(STUDY, "quadratic_min_slope"))
    return REPRODUCED if ok else NOT_REPRODUCED


def _kinds(cost) -> Dict[str, str]:
    """series -> "no_sa", "sa" or "txdec" for the full-decoding heads of the cost points (one query per class)."""
    kinds = {}
    for h, n, s in zip(cost["head"], cost["num_classes"], cost["series"]):
        name, opts = head_options(h)
        if name == "mldecoder" and opts.get("groups") == n:
            kinds[s] = "sa" if opts.get("self_attn") else "no_sa"
        elif name == "txdec":
            kinds[s] = "txdec"
    return kinds


def _slopes(cost, series: List[str]) -> Dict[str, Dict[str, float]]:
    """Per series, log-log slopes against N: head GMACs and head ms between the two largest N and over all N."""
    out = {}
    for s in series:
        g = cost[cost["series"] == s].sort_values("num_classes")
        n = g["num_classes"]
        out[s] = dict(gmacs=loglog_slope(n, g["gmacs_head"], top=2), gmacs_all=loglog_slope(n, g["gmacs_head"]),
                      ms=loglog_slope(n, g["head_ms_b1"], top=2), ms_all=loglog_slope(n, g["head_ms_b1"]))
    return out


def _cost_table(cost, series: List[str], slopes, ns, top: List[int]) -> str:
    rows = []
    for n in ns:
        cells = [cost[(cost["series"] == s) & (cost["num_classes"] == n)] for s in series]
        rows.append([f"{int(n)}"] + [fmt_num(g["gmacs_head"].iloc[0], 3) if len(g) else "—" for g in cells]
                    + [fmt_num(g["head_ms_b1"].iloc[0], 2) if len(g) else "—" for g in cells])
    rows.append([f"slope, N={'-'.join(map(str, top))}"] + [fmt_num(slopes[s]["gmacs"]) for s in series]
                + [fmt_num(slopes[s]["ms"]) for s in series])
    rows.append(["slope, all N"] + [fmt_num(slopes[s]["gmacs_all"]) for s in series]
                + [fmt_num(slopes[s]["ms_all"]) for s in series])
    bbs = ", ".join(code(b) for b in dict.fromkeys(cost["backbone"]))
    sizes = ", ".join(str(int(v)) for v in dict.fromkeys(cost["img_size"]))
    return (f"**Cost** on exactly the paper's head ({bbs} at {sizes} px, full decoding K = N, batch 1): head "
            "GMACs and head milliseconds against the number of queries N.\n\n"
            + md_table(["N"] + [f"GMACs {code(s)}" for s in series] + [f"ms {code(s)}" for s in series], rows))


def _slope(slopes, by_kind: Dict[str, str], kind: str, key: str) -> float:
    return slopes[by_kind[kind]][key] if kind in by_kind else math.nan


def _cost_part(slopes, by_kind: Dict[str, str], top: List[int]) -> Part:
    """The cost rule on the GMACs slopes; the latency slopes said beside it (not part of the rule)."""
    rule = (f"log-log slope of head GMACs against N between the two largest N: reproduced if below "
            f"{cost_rule(STUDY, 'linear_max_slope')} without self-attention and above "
            f"{cost_rule(STUDY, 'quadratic_min_slope')} with it (1 = linear, 2 = quadratic)")
    if not slopes:
        return Part("cost", NOT_RUN, "no cost rows: `bench study self-attention`", rule)
    s_no, s_sa = _slope(slopes, by_kind, "no_sa", "gmacs"), _slope(slopes, by_kind, "sa", "gmacs")
    why = f"slope {fmt_num(s_no)} without self-attention, {fmt_num(s_sa)} with it, at N={top[0]}-{top[-1]}"
    lat_no, lat_sa = _slope(slopes, by_kind, "no_sa", "ms"), _slope(slopes, by_kind, "sa", "ms")
    if np.isfinite(lat_no) and np.isfinite(lat_sa):
        agrees = scaling_rule(lat_no, lat_sa) == REPRODUCED
        why += (f"; head latency (batch 1) slopes {fmt_num(lat_no)} / {fmt_num(lat_sa)}"
                f" ({'agrees' if agrees else 'does not agree'}; timings are not part of the rule)")
    return Part("cost", scaling_rule(s_no, s_sa), why, rule)


def _accuracy_plot(rows, ctx: Context) -> List[str]:
    """The proxy accuracy per head (its verdicts are the hypotheses', rendered with every study's)."""
    acc = accuracy_rows(rows)
    metric = metric_of(acc)
    if metric is None or not ctx.make_plots:
        return []
    heads = list(dict.fromkeys(acc["head"]))
    return [bars(ctx.out_dir, "claim1_accuracy.png", [short_label(h) for h in heads],
                 [stat(acc[acc["head"] == h][metric]) for h in heads], f"{metric} (%), mean ± std",
                 "Claim 1: accuracy with and without self-attention (CPU proxy)")]


def claim_code(claim: Claim, rows, ctx: Context) -> None:
    """The claim's cost: head GMACs against N with and without self-attention (slopes, the cost rule, a table
    and a plot), and a plot of the proxy accuracy."""
    claim.paper_figure = "self-attention makes the head quadratic in N; removing it keeps COCO mAP"
    if rows is None:
        claim.parts.append(not_run_part("cost", STUDY.name))
        return
    cost = cost_points(rows)
    cost["series"] = [series_label(h, n) for h, n in zip(cost["head"], cost["num_classes"])]
    kinds = _kinds(cost)
    series = [s for s in dict.fromkeys(cost["series"]) if s in kinds]
    ns = sorted(cost["num_classes"].dropna().unique())
    top = [int(n) for n in ns[-2:]]
    slopes = _slopes(cost, series)
    claim.body.append(_cost_table(cost, series, slopes, ns, top))
    if ctx.make_plots and series:
        claim.plots.append(lines_plot(
            ctx.out_dir, "claim1_cost_vs_queries.png", {s: series_points(cost, s) for s in series},
            "number of queries N (= classes, full decoding)", "head GMACs per image",
            "Claim 1: head cost against the number of queries"))
    claim.plots += _accuracy_plot(rows, ctx)
    by_kind = {k: s for s, k in kinds.items()}
    claim.parts.append(_cost_part(slopes, by_kind, top))
    if series:
        claim.suite_figure = (f"head GMACs slope at N={top[0]}-{top[-1]}: "
                              f"{fmt_num(_slope(slopes, by_kind, 'no_sa', 'gmacs'))} without, "
                              f"{fmt_num(_slope(slopes, by_kind, 'sa', 'gmacs'))} with self-attention")
    fail = failures(rows)
    if fail:
        claim.body.append(fail)


STUDY = register_study(Study(
    name="self-attention",
    claim=1,
    statement="Removing self-attention keeps accuracy and turns the head's cost from quadratic to linear in the "
              "number of queries.",
    paper="Section 3: with self-attention the decoder's cost grows quadratically with the queries; removing it "
          "'does not degrade results' (COCO ablation) while making the head linear in the queries.",
    base=dict(PROXY),
    variations=[dict(backbones=["tresnet_m"], img_size=448, batch_sizes=[1], timing=True, cost_only=True,
                     num_classes=n, heads=_heads) for n in NUM_QUERIES]
    + [dict(heads=[PLAIN, WITH_SA, TXDEC])],
    notes="Full decoding (one query per class, K = N) so that the number of queries is N. txdec is the full "
          "decoder (self-attention, learnable queries). In eval mode the first layer's self-attention acts on "
          "image-independent queries, so this suite computes it once per batch; at batch 1 (as here) it is paid "
          "once per image, which is the cost the paper argues about.",
    hypotheses=[
        Hypothesis(name="without vs with self-attention",
                   statement="ML-Decoder without self-attention loses less than 1 mAP point against the same head "
                             "with it",
                   variant={"head": PLAIN}, reference={"head": WITH_SA}, test="not_worse", margin=1.0,
                   per=SETTING),
        Hypothesis(name="ML-Decoder vs the full decoder",
                   statement="ML-Decoder loses less than 1 mAP point against the full transformer decoder "
                             "(self-attention, learnable queries, one per class)",
                   variant={"head": PLAIN}, reference={"head": TXDEC}, test="not_worse", margin=1.0, per=SETTING),
    ],
    # Cost rule: log-log slope of head GMACs against N between the two largest N.
    cost_rules=dict(linear_max_slope=1.3, quadratic_min_slope=1.5),
    claim_code=claim_code,
))


PRETRAINED_STUDY = register_study(STUDY.on_rung(
    "pretrained",
    base=dict(PRETRAINED, dataset=EMOJI, epochs=4),
    variations=[dict(heads=[PLAIN, WITH_SA, TXDEC])],
    notes="The same heads and hypotheses on the frozen features of ImageNet-pretrained EfficientNet-Lite0 (128 px) "
          "on real colour emoji (100 classes, 2,500 training and 2,000 evaluation images, multi-label mAP), 4 "
          "epochs, 5 seeds. Full decoding: 100 queries, one per class.",
))
