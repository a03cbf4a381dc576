"""Which head is worth its cost on a frozen pretrained backbone? The heads of frozen-feature probing, ranked.

The attentive-probing literature ("Attention, Please! Revisiting Attentive Probing", Psomas et al., ICLR 2026)
compares poolings on frozen features from one run per row, the best epoch picked on the evaluation split. Here:
every probing head and the multi-label heads, on the frozen features of the three ImageNet-pretrained
EfficientNet-Lites available offline, on a single-label and a multi-label real dataset, five seeds, the last epoch;
per setting a paired interval against the linear probe; across settings the interquartile mean with
stratified-bootstrap intervals, the probability of improvement over the linear probe and a rank test
(``bench.analysis.aggregate``); a k-NN baseline (``bench.train.knn``) beside them.
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Tuple

import numpy as np

from ..analysis import aggregate as agg
from ..analysis.rows import accuracy_rows, cost_rows, num as _num
from ..analysis.stats import by_seed, evaluate, select, t_critical
from ..report.fmt import fmt_interval, format_count, md_table
from ..report.kit import Context
from ..report.plots import plot_accuracy_vs_cost
from ._base import EMOJI, FASHION, LITES as BACKBONES, SETTING, SMALL, Hypothesis, Study, register_study

# The datasets (``bench.studies._base``'s, shared with the claims' pretrained rung, so one extraction of their
# features serves both), with the metric each is judged by. Sizes chosen so that the study's 30 probe cells fit the
# 45-minute budget on the 2-core CPU (see ``notes``).
METRICS = {FASHION: "top1", EMOJI: "map"}
# The linear probe: GAP -> BatchNorm without affine -> linear, the probing papers' readout (bench.heads._readout).
LINEAR = "gap(bn=True)"
# Heads of frozen-feature probing, with their papers' defaults and the probes' BatchNorm readout (their default).
PROBES = ["simpool", "lseplus", "prr", "ep", "vjepa"]
# The multi-label heads of the suite beside them: attention pooling (CLIP-style), CSRA at its README's COCO
# setting, ML-Decoder at the suite's CPU-scale widths.
OTHERS = ["attnpool", "csra(heads=4, lam=0.5)", f"mldecoder({SMALL})"]
HEADS = [LINEAR] + PROBES + OTHERS
KNN = 20  # DINO's k (bench.train.knn)
KNN_HEAD = f"knn(k={KNN})"
SEEDS = [0, 1, 2, 3, 4]


def _hypotheses() -> List[Hypothesis]:
    """Each head against the linear probe, on each dataset with its metric, one verdict per backbone: better by
    any amount (margin 0, stated before the runs). A setting whose linear probe is within 10 points of chance
    (``ABOVE_CHANCE``) is uninformative."""
    out = []
    for ds, metric in METRICS.items():
        name = ds.split("(")[0]
        for head in PROBES + OTHERS + [KNN_HEAD]:
            out.append(Hypothesis(f"{head}-vs-linear-{name}", f"{head} is better than the linear probe on {name}.",
                                  {"head": head, "dataset": ds}, {"head": LINEAR, "dataset": ds}, test="better",
                                  margin=0.0, metric=metric, per=SETTING))
    return out


def _short(backbone: str) -> str:
    return backbone.replace("tf_efficientnet_", "")


def _interval(values) -> Tuple[float, float, float, int]:
    """(mean, low, high, n): the mean over seeds and its 95% Student-t interval."""
    v = np.asarray([x for x in values if x == x], dtype=float)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    if n < 2:
        return float(v.mean()), math.nan, math.nan, 1
    half = t_critical(n) * v.std(ddof=1) / math.sqrt(n)
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half), n


def _fmt_acc(mean, low, high) -> str:
    if mean != mean:
        return "—"
    if low != low:
        return f"{mean:.1f}"
    return f"{mean:.1f} [{low:.1f}, {high:.1f}]"


def _cost_of(acc_rows, cost_rows, head: str) -> Dict[str, float]:
    """Head params and GMACs per image (from the accuracy rows: the k-NN baseline has no cost rows) and the
    training-step time (ms, batch 64, on features, from the cost rows) of ``head``, medians over the backbones
    of the rows given (one dataset's)."""
    out = {}
    for col, rows in (("params_head", acc_rows), ("gmacs_head", acc_rows), ("train_step_ms_p50", cost_rows)):
        sel = select(rows, {"head": head})
        v = _num(sel, col).dropna() if len(sel) else []
        out[col] = float(np.median(v)) if len(v) else math.nan
    return out


def _scores(acc, heads: List[str]) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """``{head: (settings x seeds) scores}`` over the settings where every head has at least two shared seeds,
    and the settings' names; a setting's score is its dataset's metric."""
    settings, scores = [], {h: [] for h in heads}
    for ds, metric in METRICS.items():
        for bb in BACKBONES:
            per_head = {h: by_seed(select(acc, {"head": h, "dataset": ds, "backbone": bb}), metric) for h in heads}
            seeds = sorted(set.intersection(*(set(s) for s in per_head.values()))) if per_head else []
            if len(seeds) < 2:
                continue
            settings.append(f"{_short(bb)} {ds.split('(')[0]}")
            for h in heads:
                scores[h].append([per_head[h][s] for s in seeds])
    n = min((len(r) for rows in scores.values() for r in rows), default=0)
    return {h: np.asarray([r[:n] for r in rows], dtype=float) for h, rows in scores.items()}, settings


def _leaderboard(acc, costs, heads: List[str]) -> Tuple[List[str], Dict[str, float]]:
    """One table per dataset, heads x backbones with each head's cost; and each head's GMACs, averaged over the
    datasets (the Pareto plot's cost)."""
    out, gmacs = [], {h: [] for h in heads}
    for ds, metric in METRICS.items():
        ds_acc = select(acc, {"dataset": ds})
        classes = _num(ds_acc, "num_classes").median()
        ds_cost = costs[_num(costs, "num_classes") == classes]
        rows = []
        for h in heads:
            c = _cost_of(ds_acc, ds_cost, h)
            gmacs[h].append(c["gmacs_head"])
            cells = [_fmt_acc(*_interval(_num(select(ds_acc, {"head": h, "backbone": bb}), metric))[:3])
                     for bb in BACKBONES]
            rows.append([f"`{h}`"] + cells + [_count(c["params_head"]), _gmacs(c["gmacs_head"]),
                                               _ms(c["train_step_ms_p50"])])
        chance = _num(ds_acc, f"{metric}_chance").mean()
        out.append(f"**{ds.split('(')[0]}** (`{ds}`), {metric} (%), mean and 95% t-interval over seeds; chance "
                   f"{chance:.1f}:\n\n" + md_table(["head"] + [_short(b) for b in BACKBONES]
                                                   + ["head params", "head GMACs", "train step (ms)"], rows))
    out.append("Head params and GMACs per image at the dataset's classes; the training step is forward, loss, "
               "backward and AdamW on cached features at batch 64 (median, `train_step_ms_p50`). The k-NN baseline "
               "has no parameters; its GMACs are the similarities to the training images.")
    means = {h: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan for h, v in gmacs.items()}
    return out, means


UNFIT = 2.0  # a head whose last-epoch training loss is this many times the linear probe's did not fit


def _unfit(acc, heads: List[str]) -> str:
    """The (head, setting) pairs whose training loss stayed above UNFIT times the linear probe's: in this budget
    they did not fit the training split, so their scores speak of the recipe, not of the head."""
    found = []
    for ds in METRICS:
        for bb in BACKBONES:
            rows = select(acc, {"dataset": ds, "backbone": bb})
            ref = _num(select(rows, {"head": LINEAR}), "train_loss").mean()
            for h in heads:
                loss = _num(select(rows, {"head": h}), "train_loss").mean()
                if h != LINEAR and ref > 0 and loss > UNFIT * ref:
                    found.append(f"`{h}` on {_short(bb)} {ds.split('(')[0]} ({loss:.0f} against {ref:.0f})")
    if not found:
        return (f"Every head fitted its training split at least as well as {UNFIT:g} times the linear probe's "
                "last-epoch training loss.")
    return (f"Did not fit the training split in this budget (last-epoch training loss, mean over seeds, above "
            f"{UNFIT:g} times the linear probe's): " + "; ".join(found) + ". Their scores describe this recipe "
            "(2 epochs at the probe learning rate), not what the head can do.")


def _per_setting(df, heads: List[str]) -> str:
    """Each head minus the linear probe per setting: the paired interval and the verdict of its hypothesis."""
    by_cell = {(v.hypothesis.variant["head"], v.hypothesis.variant["dataset"], v.setting.get("backbone")): v
               for v in evaluate(STUDY, df)}
    rows = []
    for h in heads:
        if h == LINEAR:
            continue
        cells = []
        for ds in METRICS:
            for bb in BACKBONES:
                v = by_cell.get((h, ds, bb))
                d = v.difference if v is not None else None
                cells.append("—" if d is None or d.n == 0 else
                             f"{fmt_interval(d.mean, d.low, d.high)} {_word(v.outcome)}")
        rows.append([f"`{h}`"] + cells)
    settings = [f"{_short(b)} {ds.split('(')[0]}" for ds in METRICS for b in BACKBONES]
    return ("Each head minus the linear probe (`gap(bn=True)`), paired by seed, mean and 95% interval, with the "
            "verdict of *better than the linear probe* (margin 0, stated before the runs; *uninformative* when the "
            "linear probe is within 10 points of chance):\n\n" + md_table(["head"] + settings, rows))


def _aggregates(acc, heads: List[str], gmacs: Dict[str, float], out_dir: str,
                make_plots: bool) -> Tuple[str, List[str]]:
    """Across settings: IQM with stratified-bootstrap intervals, P(head > linear probe), the rank test; the rank
    plot and the Pareto plot of the IQM against head GMACs."""
    scores, names = _scores(acc, heads)
    if len(names) < 2 or LINEAR not in scores:
        return "", []
    iqms = agg.iqm(scores)
    ranks = agg.rank_test(agg.mean_table(scores, names)) \
        if len(names) >= agg.MIN_SETTINGS_RANKED and len(heads) >= 3 else None
    rank_of = dict(zip(ranks.methods, ranks.mean_ranks)) if ranks else {}
    rows, points = [], []
    for h in sorted(heads, key=lambda h: -iqms[h].value):
        e = iqms[h]
        poi = agg.probability_of_improvement(scores, h, LINEAR) if h != LINEAR else None
        rows.append([f"`{h}`", f"{e.value:.1f} [{e.low:.1f}, {e.high:.1f}]",
                     "—" if poi is None else f"{poi.value:.2f} [{poi.low:.2f}, {poi.high:.2f}]",
                     f"{rank_of[h]:.2f}" if h in rank_of else "—"])
        points.append(dict(head=h, cost=gmacs[h], acc=e.value, low=e.low, high=e.high, n=e.n_runs * e.n_settings,
                           metric="IQM of top-1 / mAP", interval="95% stratified-bootstrap interval"))
    text = ("Across the settings (" + ", ".join(names) + f"; {scores[LINEAR].shape[1]} seeds each): the interquartile "
            "mean of the scores (Fashion-MNIST top-1 and emoji mAP, both in points) with its stratified-bootstrap 95% "
            "interval, the probability that a run of the head beats a run of the linear probe on the same setting, "
            "P(head > linear), with its interval, and the mean rank over settings (1 = best):\n\n"
            + md_table(["head", "IQM", "P(head > linear)", "mean rank"], rows))
    if ranks is not None:
        text += (f"\n\nFriedman test over {ranks.n_settings} settings: p = {ranks.pvalue:.3g}"
                 + (f"; Nemenyi critical difference {ranks.cd:.2f} ranks at alpha {ranks.alpha:g}: heads joined by "
                    "a bar in the rank plot are not told apart." if ranks.significant else
                    " (not significant: the ranks do not tell the heads apart)."))
    plots = []
    if make_plots:
        if ranks is not None:
            plots.append(os.path.basename(agg.plot_ranks(ranks, os.path.join(out_dir, "probing_ranks"))[0]))
        pts = [p for p in points if p["cost"] == p["cost"] and p["cost"] > 0]
        if pts:
            plots.append(os.path.basename(plot_accuracy_vs_cost(
                pts, out_dir, "probing_pareto", "Frozen-feature probing: IQM over settings against head GMACs",
                cost_label="head GMACs per image")[0]))
    return text, plots


def section(df, ctx: Context) -> Tuple[str, List[str]]:
    """The study's report section: leaderboard, per-setting intervals, aggregates, rank plot, Pareto plot."""
    acc = accuracy_rows(df)
    heads = [h for h in HEADS + [KNN_HEAD] if len(select(acc, {"head": h}))]
    parts, gmacs = _leaderboard(acc, cost_rows(df), heads)
    parts.append(_per_setting(df, heads))
    parts.append(_unfit(acc, heads))
    text, plots = _aggregates(acc, heads, gmacs, ctx.out_dir, ctx.make_plots)
    return "\n\n".join(p for p in parts + [text] if p), plots


def _word(outcome: str) -> str:
    return {"supported": "**better**", "contradicted": "not better", "inconclusive": "inconclusive",
            "uninformative": "uninformative", "not run": "not run"}.get(outcome, outcome)


def _count(v: float) -> str:
    return "—" if v != v else format_count(v)


def _gmacs(v: float) -> str:
    return "—" if v != v else f"{v:.2g}" if v < 0.001 else f"{v:.4f}" if v < 0.1 else f"{v:.2f}"


def _ms(v: float) -> str:
    return "—" if v != v else f"{v:.1f}"


STUDY = register_study(Study(
    name="probing",
    rung="pretrained",
    claim=None,
    statement="Attentive probes beat the linear probe on frozen pretrained features, by enough to pay for "
              "their cost.",
    paper="Psomas et al. (ICLR 2026), ImageNet top-1, linear probe -> efficient probe: MAE ViT-B 67.8 -> 75.5, "
          "MAE ViT-L 76.0 -> 79.5, DINOv2 ViT-L 85.2 -> 85.6; RADIO ViT-L 84.4 -> 83.9 and iBOT ViT-L 80.5 -> 80.0 "
          "(the efficient probe loses). One run per row, best epoch on val.",
    base=dict(backbones=BACKBONES, pretrained=True, protocol="probe", img_size=128, epochs=2, seeds=SEEDS,
              knn=KNN, timing=True, latency=False, memory=False, train_timing=True, batch_sizes=[64],
              train_batch_size=64, min_time_s=0.5, workers=0, heads=HEADS),
    variations=[dict(dataset=FASHION), dict(dataset=EMOJI)],
    hypotheses=_hypotheses(),
    section=section,
    notes="Frozen ImageNet-pretrained EfficientNet-Lite0/1/2 (offline weights) at 128 px (a 4x4x1280 map), "
          "features extracted once per (backbone, dataset, split) and shared by every head and seed; Fashion-MNIST "
          "(single-label, top-1) and emoji (100 classes, multi-label, mAP), 2500 training and 2000 evaluation "
          "images each; 2 epochs at the probe learning rate; every head of a (backbone, seed) trained together on "
          "one pass over the features; the last epoch reported (nothing selected on the evaluation split). CNN "
          "features, not the ViT tokens the probing papers use: no pretrained ViT is available offline.",
))
