"""Claim 4: a smaller backbone with ML-Decoder beats a larger one with GAP (a better speed-accuracy trade-off).

One file: the grid and hypotheses (``STUDY``, at the end) and the claim's report code above it: the paper's pairs,
a speed-accuracy table with Pareto fronts and plots, and the cost part (the smaller backbone + ML-Decoder costs
less than the larger + GAP; the accuracy side is the hypotheses').
"""
from __future__ import annotations

import dataclasses
from typing import List, Tuple

import numpy as np

from ..analysis.stats import accuracy_rows
from ..report.kit import (NOT_REPRODUCED, NOT_RUN, REPRODUCED, Claim, Context, Part, code, combine_checks, failures,
                          fmt_num, head_options, md_table, not_run_part, num, ok_rows, stat)
from ..report.plots import accuracy_points, pareto_front, plot_pareto
from ._base import EMOJI, LITES, PRETRAINED, PROXY, RUNGS, SMALL, Hypothesis, Study, register_study

SMALLER, LARGER = "test_resnet", "resnet10t"
MLD = f"mldecoder({SMALL})"


# ------------------------------------------------------------------------------------------------ the report

COST_PART = "cost: smaller + ML-Decoder is cheaper"
RULE = ("for each pair of consecutive backbones by GAP cost: the smaller backbone + ML-Decoder costs fewer GMACs "
        "than the larger + GAP (the accuracy side is the study's hypotheses)")


def _paper_figure(paper) -> str:
    """The paper's pairs: each smaller backbone + ML-Decoder against the next larger + GAP, GMACs and mAP."""
    fl = paper[num(paper, "gmacs_total").notna()]
    fig = paper[(paper["dataset"].astype(str) == "coco2014") & num(paper, "map").notna()
                & paper["source"].astype(str).str.contains("figure")]
    pts = {}
    for r in fl.itertuples():
        m = fig[(fig["backbone"] == r.backbone) & (fig["head"] == r.head)]
        if len(m):
            pts[(r.backbone, head_options(r.head)[0])] = (float(r.gmacs_total), float(num(m, "map").iloc[0]))
    bbs = sorted({b for b, _ in pts}, key=lambda b: pts.get((b, "gap"), (0, 0))[0])
    return "; ".join(f"{sm}+MLD {pts[(sm, 'mldecoder')][0]:.1f}/{pts[(sm, 'mldecoder')][1]:.1f} vs {lg}+GAP "
                     f"{pts[(lg, 'gap')][0]:.1f}/{pts[(lg, 'gap')][1]:.1f} GMACs/mAP"
                     for sm, lg in zip(bbs, bbs[1:]) if (sm, "mldecoder") in pts and (lg, "gap") in pts)


def _table(points: list, metric: str, label: str) -> str:
    """Speed-accuracy of every (backbone, head) of one rung (``label``), with its place on the Pareto fronts (GMACs,
    throughput)."""
    ys = [p["acc"] for p in points]
    front = set(pareto_front([p["gmacs"] for p in points], ys))
    has_thr = any(np.isfinite(p["throughput"]) for p in points)
    front_thr = set(pareto_front([p["throughput"] for p in points], ys, higher_x_better=True)) if has_thr else set()
    rows = [[code(p["backbone"]), code(p["head"]), int(p["img_size"]), fmt_num(p["gmacs"], 3),
             fmt_num(p["throughput"], 1), str(p["stat"]), p["stat"].n, "yes" if i in front else "no",
             ("yes" if i in front_thr else "no") if has_thr else "—"] for i, p in enumerate(points)]
    return (f"**Speed-accuracy** ({metric}, {label}; GMACs per image at the training size; throughput at "
            "the largest timed batch; accuracy mean ± std over seeds).\n\n"
            + md_table(["backbone", "head", "px", "GMACs", "img/s", f"{metric} (%)", "n", "Pareto (GMACs)",
                        "Pareto (img/s)"], rows))


def _cost_part(points: list, rung: str) -> Tuple[Part, str]:
    """The cost part (each smaller backbone + ML-Decoder against the next larger + GAP), on the ``rung`` whose
    backbones it measures, and the summary's figure."""
    gap_cost = {p["backbone"]: p["gmacs"] for p in points if p["kind"] == "gap"}
    order = sorted(gap_cost, key=gap_cost.get)
    checks, why, summary = [], [], []
    for small, large in zip(order, order[1:]):
        sm = next((p for p in points if p["backbone"] == small and p["kind"] == "mldecoder"), None)
        lg = next((p for p in points if p["backbone"] == large and p["kind"] == "gap"), None)
        if sm is None or lg is None:
            continue
        checks.append(REPRODUCED if sm["gmacs"] < lg["gmacs"] else NOT_REPRODUCED)
        faster = ""
        if np.isfinite(sm["throughput"]) and np.isfinite(lg["throughput"]):
            faster = f", {fmt_num(sm['throughput'], 1)} vs {fmt_num(lg['throughput'], 1)} img/s"
        why.append(f"{small} + ML-Decoder {fmt_num(sm['gmacs'], 3)} vs {large} + GAP {fmt_num(lg['gmacs'], 3)} "
                   f"GMACs{faster}")
        summary.append(f"{small}+MLD {fmt_num(sm['gmacs'], 3)} vs {large}+GAP {fmt_num(lg['gmacs'], 3)} GMACs")
    part = Part(COST_PART, combine_checks(checks), "; ".join(why) or "needs GAP and ML-Decoder on two backbones",
                RULE, rung=rung)
    return part, "; ".join(summary)


def _plots(points: list, metric: str, ctx: Context, stem: str, rung: str) -> List[str]:
    out = []
    for x in ("gmacs", "throughput"):
        if x == "throughput" and not any(np.isfinite(p["throughput"]) for p in points):
            continue
        name = f"{stem}_{x}"
        plot_pareto(points, x, ctx.out_dir, name, f"Claim 4: {metric} against "
                    f"{'GMACs' if x == 'gmacs' else 'throughput'} ({rung})", exts=("png",), interval=True)
        out.append(name + ".png")
    return out


def claim_code_of(study_name: str, stem: str, rung: str):
    """The claim's code for one rung's study: its speed-accuracy table, Pareto plots (file names from ``stem``)
    and its cost part, which stands on that rung's backbones and so counts on ``rung`` (a key of ``RUNGS``)."""
    label = RUNGS[rung]

    def claim_code(claim: Claim, rows, ctx: Context) -> None:
        if len(ctx.paper):
            figure = _paper_figure(ctx.paper)
            if figure:
                claim.paper_figure = figure
        if rows is None:
            claim.parts.append(dataclasses.replace(not_run_part(COST_PART, study_name), rung=rung))
            return
        acc = accuracy_rows(rows)
        points = accuracy_points(ok_rows(rows)) if len(acc) else []
        if not points:
            claim.parts.append(Part(COST_PART, NOT_RUN, f"no accuracy rows: `bench study {study_name}`", RULE,
                                    rung=rung))
            return
        metric = points[0]["metric"]
        for p in points:
            p["stat"] = stat(acc[(acc["backbone"] == p["backbone"]) & (acc["head"] == p["head"])][metric])
            p["kind"] = head_options(p["head"])[0]
        claim.body.append(f"`{study_name}`: " + _table(points, metric, label))
        part, summary = _cost_part(points, rung)
        claim.parts.append(part)
        if summary:
            claim.suite_figure = summary if claim.suite_figure in ("", "—") else f"{claim.suite_figure}; {summary}"
        if ctx.make_plots:
            claim.plots += _plots(points, metric, ctx, stem, label)
        fail = failures(rows)
        if fail:
            claim.body.append(fail)

    return claim_code


STUDY = register_study(Study(
    name="backbone-vs-head",
    claim=4,
    statement="A smaller backbone with ML-Decoder beats a larger one with GAP (a better speed-accuracy "
              "trade-off).",
    paper="README figure (COCO, 448): TResNet-M + ML-Decoder 23.9 GFLOPs / 88.1 mAP against TResNet-L + GAP "
          "35.3 GFLOPs / 89.4 (not beaten there), and TResNet-S + ML-Decoder 19.5 / 87.7 against TResNet-M + GAP "
          "23.0 / 87.3 (beaten).",
    base=dict(PROXY, timing=True, batch_sizes=[1, 32], img_size=64),
    variations=[dict(backbones=[SMALLER, LARGER], heads=["gap", MLD])],
    notes="Two backbones 5.6x apart in MACs (timm's test_resnet and resnet10t at 64 px), each with GAP and with "
          "ML-Decoder; the Pareto plot shows whether a smaller "
          "backbone + ML-Decoder dominates a larger backbone + GAP at CPU scale (scenes, from scratch). On COCO "
          "with pretrained weights: --dataset coco2014 --data-root ... --pretrained --backbone tresnet_m,tresnet_l.",
    hypotheses=[
        Hypothesis(name="smaller + ML-Decoder beats larger + GAP",
                   statement=f"{SMALLER} + ML-Decoder has a higher mAP than {LARGER} + GAP (a win at lower cost)",
                   variant={"backbone": SMALLER, "head": MLD}, reference={"backbone": LARGER, "head": "gap"},
                   test="better", per=("dataset", "img_size")),
        Hypothesis(name="smaller + ML-Decoder as good as larger + GAP",
                   statement=f"{SMALLER} + ML-Decoder loses less than 1 mAP point against {LARGER} + GAP (a better "
                             "trade-off when it is also cheaper)",
                   variant={"backbone": SMALLER, "head": MLD}, reference={"backbone": LARGER, "head": "gap"},
                   test="not_worse", margin=1.0, per=("dataset", "img_size")),
    ],
    claim_code=claim_code_of("backbone-vs-head", "claim4_pareto", "scratch"),
))


def _pair(smaller: str, larger: str) -> List[Hypothesis]:
    """``smaller`` + ML-Decoder against ``larger`` + GAP: better, and not worse by 1 mAP point (as above)."""
    a, b = smaller.replace("tf_efficientnet_", ""), larger.replace("tf_efficientnet_", "")
    return [
        Hypothesis(name=f"{a} + ML-Decoder beats {b} + GAP",
                   statement=f"{smaller} + ML-Decoder has a higher mAP than {larger} + GAP (a win at lower cost)",
                   variant={"backbone": smaller, "head": MLD}, reference={"backbone": larger, "head": "gap"},
                   test="better", per=("dataset", "img_size")),
        Hypothesis(name=f"{a} + ML-Decoder as good as {b} + GAP",
                   statement=f"{smaller} + ML-Decoder loses less than 1 mAP point against {larger} + GAP",
                   variant={"backbone": smaller, "head": MLD}, reference={"backbone": larger, "head": "gap"},
                   test="not_worse", margin=1.0, per=("dataset", "img_size")),
    ]


PRETRAINED_STUDY = register_study(STUDY.on_rung(
    "pretrained",
    base=dict(PRETRAINED, dataset=EMOJI, epochs=4),
    variations=[dict(backbones=LITES, heads=["gap", MLD])],
    notes="Real backbones of increasing cost: ImageNet-pretrained EfficientNet-Lite0, -Lite1 and -Lite2, frozen, "
          "each with GAP and with ML-Decoder, on real colour emoji (100 classes, mAP) at 128 px, 4 epochs, 5 seeds. "
          "The pairs: lite0 + ML-Decoder against lite1 + GAP and against lite2 + GAP, lite1 + ML-Decoder against "
          "lite2 + GAP. GMACs per image at 128 px (backbone + head).",
    hypotheses=_pair(LITES[0], LITES[1]) + _pair(LITES[0], LITES[2]) + _pair(LITES[1], LITES[2]),
    claim_code=claim_code_of("backbone-vs-head-pretrained", "claim4_pareto_pretrained", "pretrained"),
))
