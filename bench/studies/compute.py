"""Claim 3: ML-Decoder beats GAP on every backbone at a small extra cost (about +0.9 GMACs at 448).

One file: the grid (``STUDY``, at the end) and the claim's report code above it: GAP against ML-Decoder GMACs on
the paper's backbones, checked against the paper's figure values (the cost rule), a table and a plot.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np

from ..report.kit import (INSUFFICIENT, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED, Claim, Context, Part, code,
                          combine_checks, cost_points, cost_rule, failures, fmt_num, head_options, md_table,
                          not_run_part, num, pyplot, save_png)
from ._base import Study, grid, register_study

TABLE_TEXT = ("**Cost on exactly the paper's models** (random weights: cost does not depend on them), 80 classes, "
              "batch 1; 'extra' is ML-Decoder's GMACs over GAP's. The paper's figure values are read by eye from the "
              "official README figure 'COCO mAP vs FLOPs' (its FLOPs are MACs; its TResNet-L is `tresnet_v2_l`). "
              "GMP (global max pooling + linear, the pooling baseline of the `pooling` study) costs what GAP costs: "
              "the pooling is a max instead of a mean, uncounted as MACs either way.")
TABLE_HEADERS = ["backbone", "px", "GAP GMACs", "GMP GMACs", "ML-Decoder GMACs", "extra", "paper GMACs GAP / MLD",
                 "paper COCO mAP GAP / MLD", "head params (M)", "head share of GMACs", "latency b1 GAP / MLD (ms)",
                 "head share of time"]


# ------------------------------------------------------------------------------------------------ the report

def _accuracy_part() -> Part:
    return Part("accuracy", NOT_TESTABLE,
                "needs COCO 2014 and a GPU (the official checkpoints): `bench run --dataset coco2014 --data-root DIR "
                "--protocol eval --checkpoint FILE --backbone tresnet_v2_l --heads mldecoder --img-size 448` then "
                "`bench check --baseline results/paper/coco.csv`",
                "mAP on COCO against results/paper/coco.csv")


def _rule() -> str:
    return (f"this suite's backbone+head GMACs equal the paper's figure values within their reading tolerance (2x "
            f"the row's `gmacs_total_std`, else ±{cost_rule(STUDY, 'figure_tolerance')}) for every value the paper "
            "gives")


def _paper_rows(paper):
    """The paper's GMACs rows and its COCO figure's mAP rows."""
    if not len(paper):
        return paper, paper
    flops = paper[num(paper, "gmacs_total").notna()]
    figure = paper[(paper["dataset"].astype(str) == "coco2014") & num(paper, "map").notna()
                   & paper["source"].astype(str).str.contains("figure")]
    return flops, figure


def _paper_figure(flops) -> str:
    parts = []
    for bb, g in flops.groupby("backbone", sort=False):
        vals = {head_options(h)[0]: fmt_num(v, 1) for h, v in zip(g["head"], num(g, "gmacs_total"))}
        parts.append(f"{bb} {vals.get('gap', '—')} -> {vals.get('mldecoder', '—')}")
    return "GMACs at 448, GAP -> ML-Decoder: " + ", ".join(parts)


def _check(bb: str, size, kind: str, ours, flops) -> Optional[Tuple[str, str, str]]:
    """Our backbone+head GMACs against the paper's figure value for the same (backbone, size, head): (word, what
    was found, the paper's value), None when the paper gives none."""
    p = flops[(flops["backbone"].astype(str) == bb) & (num(flops, "img_size") == size)
              & (flops["head"].astype(str) == ours["head"])] if len(flops) else flops
    if not len(p):
        return None
    std = num(p, "gmacs_total_std").iloc[0] if "gmacs_total_std" in p.columns else math.nan
    tol = 2 * std if np.isfinite(std) else cost_rule(STUDY, "figure_tolerance")
    pval = float(num(p, "gmacs_total").iloc[0])
    ok = abs(ours["gmacs_total"] - pval) <= tol + 1e-9
    found = (f"{bb} {kind} {fmt_num(ours['gmacs_total'])} vs {fmt_num(pval, 1)} "
             f"({'within' if ok else 'outside'} ±{fmt_num(tol, 2)})")
    return (REPRODUCED if ok else NOT_REPRODUCED), found, fmt_num(pval, 1)


def _table_row(bb: str, size, g, pv: dict, figure) -> list:
    """One (backbone, size) of the table: GAP, GMP and ML-Decoder GMACs, the paper's values, shares, timings."""
    gp, ml = g[g["kind"] == "gap"].iloc[0], g[g["kind"] == "mldecoder"].iloc[0]
    gmp = g[g["kind"] == "gmp"]
    extra = ml["gmacs_total"] - gp["gmacs_total"]
    share = 100 * ml["gmacs_head"] / ml["gmacs_total"]
    t_share = 100 * ml["head_ms_b1"] / (ml["head_ms_b1"] + ml["backbone_ms_b1"])
    pf = figure[(figure["backbone"].astype(str) == bb) & (num(figure, "img_size") == size)] if len(figure) else figure
    pmap = {head_options(h)[0]: fmt_num(v, 1) for h, v in zip(pf["head"], num(pf, "map"))} if len(pf) else {}
    gm = fmt_num(gmp.iloc[0]["gmacs_total"]) if len(gmp) else "—"
    return [code(bb), int(size), fmt_num(gp["gmacs_total"]), gm, fmt_num(ml["gmacs_total"]), "+" + fmt_num(extra, 3),
            f"{pv.get('gap', '—')} / {pv.get('mldecoder', '—')}",
            f"{pmap.get('gap', '—')} / {pmap.get('mldecoder', '—')}", fmt_num(ml["params_head"] / 1e6, 2),
            fmt_num(share, 1, "%"), f"{fmt_num(gp['latency_ms_b1'], 1)} / {fmt_num(ml['latency_ms_b1'], 1)}",
            fmt_num(t_share, 1, "%"),
            f"{fmt_num(gp['throughput_img_s'], 1)} / {fmt_num(ml['throughput_img_s'], 1)}"]


def _plot(out_dir: str, cost, flops) -> str:
    """Backbone and head GMACs of GAP and ML-Decoder per (backbone, size), the paper's values marked."""
    plt = pyplot()
    keys = list(dict.fromkeys(zip(cost["backbone"], cost["img_size"])))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(keys)), 4.5))
    idx = np.arange(len(keys))
    for off, kind, color in ((-0.2, "gap", "0.6"), (0.2, "mldecoder", "tab:orange")):
        bb_vals, hd_vals, paper_vals = [], [], []
        for bb, size in keys:
            g = cost[(cost["backbone"] == bb) & (cost["img_size"] == size) & (cost["kind"] == kind)]
            bb_vals.append(float(g["gmacs_backbone"].iloc[0]) if len(g) else 0.0)
            hd_vals.append(float(g["gmacs_head"].iloc[0]) if len(g) else 0.0)
            p = flops[(flops["backbone"].astype(str) == bb) & (num(flops, "img_size") == size)
                      & (flops["head"].astype(str).map(lambda h: head_options(h)[0]) == kind)] if len(flops) else flops
            paper_vals.append(float(num(p, "gmacs_total").iloc[0]) if len(p) else np.nan)
        ax.bar(idx + off, bb_vals, width=0.4, color=color, label=f"{kind}: backbone")
        ax.bar(idx + off, hd_vals, width=0.4, bottom=bb_vals, color="tab:red" if kind == "mldecoder" else "k",
               label=f"{kind}: head")
        if np.isfinite(paper_vals).any():
            ax.plot(idx + off, paper_vals, "kx", ms=8, label=f"paper figure ({kind})")
    ax.set_xticks(idx)
    ax.set_xticklabels([f"{bb}\n{int(s)} px" for bb, s in keys], fontsize=7)
    ax.set_ylabel("GMACs per image (backbone + head)")
    ax.set_title("Claim 3: GAP vs ML-Decoder cost on the paper's backbones", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    return save_png(fig, out_dir, "claim3_compute.png")


def claim_code(claim: Claim, rows, ctx: Context) -> None:
    """The claim's cost: GAP against ML-Decoder GMACs on the paper's backbones, checked against the paper's figure
    values, a table and a plot; its accuracy part is not testable here (COCO and a GPU)."""
    flops, figure = _paper_rows(ctx.paper)
    if len(flops):
        claim.paper_figure = _paper_figure(flops)
    if rows is None:
        claim.parts += [not_run_part("cost", STUDY.name), _accuracy_part()]
        return
    cost = cost_points(rows)
    cost["kind"] = [head_options(h)[0] for h in cost["head"]]
    table, checks, found, summary = [], [], [], []
    for (bb, size), g in cost.groupby(["backbone", "img_size"], sort=False):
        if not (g["kind"] == "gap").any() or not (g["kind"] == "mldecoder").any():
            continue
        pv = {}
        for kind in ("gap", "mldecoder"):
            check = _check(bb, size, kind, g[g["kind"] == kind].iloc[0], flops)
            if check is not None:
                checks.append(check[0])
                found.append(check[1])
                pv[kind] = check[2]
        table.append(_table_row(bb, size, g, pv, figure))
        if pv:
            gp, ml = (g[g["kind"] == k].iloc[0]["gmacs_total"] for k in ("gap", "mldecoder"))
            summary.append(f"{bb} {fmt_num(gp)} -> {fmt_num(ml)} (+{fmt_num(ml - gp)})")
    tb = int(cost["timing_batch"].max()) if cost["timing_batch"].notna().any() else 1
    claim.body.append(TABLE_TEXT + "\n\n" + md_table(TABLE_HEADERS + [f"img/s b{tb} GAP / MLD"], table))
    claim.parts += [Part("cost", combine_checks(checks), "; ".join(found), _rule()) if checks else
                    Part("cost", INSUFFICIENT, "no row matches a paper figure value (backbone, head, size)", _rule()),
                    _accuracy_part()]
    if summary:
        claim.suite_figure = "GMACs at 448: " + ", ".join(summary)
    if ctx.make_plots and table:
        claim.plots.append(_plot(ctx.out_dir, cost, flops))
    fail = failures(rows)
    if fail:
        claim.body.append(fail)


STUDY = register_study(Study(
    name="compute",
    claim=3,
    statement="ML-Decoder beats GAP on every backbone at a small extra cost (about +0.9 GMACs at 448).",
    paper="README figure (COCO, 448): TResNet-M 23.0 -> 23.9 GFLOPs, TResNet-L 35.3 -> 36.2 GFLOPs (GAP -> "
          "ML-Decoder); mAP 87.3 -> 88.1 and 89.4 -> 90.0. The paper's FLOPs are MACs; its TResNet-L is "
          "timm's tresnet_v2_l.",
    base=dict(heads=["gap", "gmp", "mldecoder"], num_classes=80, batch_sizes=[1], cost_only=True, timing=True),
    variations=grid(backbones=[["tresnet_m"], ["tresnet_v2_l"], ["tresnet_l"]], img_size=[224, 448, 640]),
    notes="Cost is measured on exactly the paper's models (random weights: cost does not depend on them). "
          "Accuracy needs COCO and a GPU: `bench run --dataset coco2014 --data-root ... --protocol eval "
          "--checkpoint ...` then `bench check --baseline results/paper/coco.csv`.",
    # No accuracy hypothesis on the CPU (COCO and the official checkpoints are needed). Cost rule: backbone+head
    # GMACs within the figure's reading tolerance (2x the row's gmacs_total_std, else this many GMACs).
    cost_rules=dict(figure_tolerance=0.1),
    claim_code=claim_code,
))
