"""`bench report`: the ML-Decoder paper's claims 1-7, one section each, with the paper's statement and figure,
this suite's figure, tables, plots and verdicts.

A pure function of result files: it reads the study files ``<results-dir>/study-<name>.csv`` and the paper's
figures (``results/paper/*.csv``), never builds or runs a model, and imports neither torch nor timm. Every number
in the report comes from a row.

Accuracy verdicts are not made here: each study declares its hypotheses (``bench.studies.Hypothesis``) and
``bench.stats.evaluate`` decides them; this module renders every verdict it returns, for every registered study
(a new study with hypotheses appears with no code here). Per-claim code below keeps only what is specific to a
claim: its cost figures, their rules (thresholds from the study's ``cost_rules``) and its plots.

Verdict words: "reproduced", "partly reproduced", "not reproduced", "inconclusive", "not testable here", "not run
yet". A claim has parts (a cost rule, each hypothesis in each setting); each part gets a word, and the claim's word
combines them (``combine``).
"""
from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import stats as st
from .spec import parse_spec
from .stats import accuracy_rows  # noqa: F401  (re-exported: the report's rows are the statistics' rows)
from .tables import fmt_pm, md_table

REPRODUCED = "reproduced"
PARTLY = "partly reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
UNINFORMATIVE = "uninformative"  # a part's word only: the setting cannot tell (reference near chance, ...)
NOT_TESTABLE = "not testable here"
NOT_RUN = "not run yet"
INSUFFICIENT = "insufficient data"  # a part's word only: rows exist but cannot decide (one point)
# A hypothesis' outcome (bench.stats) as a part's word.
OUTCOME_WORDS = {st.SUPPORTED: REPRODUCED, st.CONTRADICTED: NOT_REPRODUCED, st.INCONCLUSIVE: INCONCLUSIVE,
                 st.UNINFORMATIVE: UNINFORMATIVE, st.NOT_RUN: NOT_RUN}
COMBINE_RULE = ("A claim's verdict combines its parts (each cost rule; each hypothesis in each setting): "
                "*reproduced* when every part is; *not reproduced* when at least one part is and none is "
                "reproduced; *partly reproduced* when some parts are reproduced and others are not, are "
                "inconclusive, uninformative or cannot be tested here; *inconclusive* when no part is decided "
                "either way and at least one is inconclusive (more seeds would decide it); otherwise *not run "
                "yet* (a study is missing) or *not testable here* (every part uninformative or needing data this "
                "machine lacks).")

# Claim 7: backbones whose names contain one of these are transformers (token features); the others CNNs.
TRANSFORMER_MARKERS = ("vit", "deit", "swin", "beit", "eva", "cait", "xcit")
DEFAULT_GROUPS = 100  # ML-Decoder's K = min(groups, N) when `groups` is not given

PROXY_NOTE = ("CPU-scale proxy: the embedded `scenes` data (synthetic multi-label images) or Fashion-MNIST, a "
              "tiny timm backbone trained from scratch on this CPU; not the paper's benchmark (COCO, pretrained "
              "TResNets, GPUs).")


# ------------------------------------------------------------------------------------------------ data types

@dataclass
class Stat:
    """A metric over seeds: mean, sample std (NaN with one seed) and n."""

    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        return fmt_pm(self.mean, self.std) or "—"


@dataclass
class Part:
    """One testable part of a claim: its verdict word, why (numbers from rows) and the rule applied."""

    name: str
    verdict: str
    why: str
    rule: str = ""


@dataclass
class Claim:
    number: int
    statement: str
    studies: List[str]
    paper_figure: str = "—"
    suite_figure: str = "—"
    parts: List[Part] = field(default_factory=list)
    body: List[str] = field(default_factory=list)  # markdown blocks
    plots: List[str] = field(default_factory=list)  # PNG file names in the out dir

    @property
    def verdict(self) -> str:
        return combine(self.parts)


def combine(parts: Sequence[Part]) -> str:
    """A claim's word from its parts' words (``COMBINE_RULE`` says it in words, in the report).

    reproduced: every part reproduced. not reproduced: some part not reproduced and none reproduced. partly
    reproduced: some part reproduced and another not (not reproduced, inconclusive, uninformative, not testable,
    not run). No part reproduced or not reproduced: inconclusive when a part is, else not run yet when a part's
    study is missing, else not testable here (uninformative settings and rows too thin to decide included).
    """
    words = [p.verdict for p in parts]
    decided = [w for w in words if w in (REPRODUCED, PARTLY, NOT_REPRODUCED)]
    if not decided:
        if INCONCLUSIVE in words:
            return INCONCLUSIVE
        return NOT_RUN if NOT_RUN in words else NOT_TESTABLE
    if all(w == REPRODUCED for w in words):
        return REPRODUCED
    if all(w == NOT_REPRODUCED for w in decided):
        return NOT_REPRODUCED
    return PARTLY


def _combine_checks(words: Sequence[str]) -> str:
    """Several checks of one cost part: all reproduced -> reproduced, none -> not reproduced, else partly; an
    undecided check makes the part insufficient unless another already failed."""
    if not words:
        return INSUFFICIENT
    if all(w == REPRODUCED for w in words):
        return REPRODUCED
    if INSUFFICIENT in words and NOT_REPRODUCED not in words:
        return INSUFFICIENT
    if all(w == NOT_REPRODUCED for w in words):
        return NOT_REPRODUCED
    return PARTLY


# ------------------------------------------------------------------------------------------ numbers and rules

def cost_rule(study: str, name: str) -> float:
    """A threshold of a study's cost rule (``Study.cost_rules``); ValueError naming the valid ones."""
    from .studies import get_study

    rules = get_study(study).cost_rules
    if name not in rules:
        raise ValueError(f"study {study!r} has no cost rule {name!r}; valid: {', '.join(sorted(rules)) or 'none'}")
    return float(rules[name])


def stat(values) -> Stat:
    import pandas as pd

    v = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").dropna().astype(float)
    return Stat(float(v.mean()) if len(v) else math.nan, float(v.std(ddof=1)) if len(v) > 1 else math.nan,
                len(v))


def loglog_slope(xs: Sequence[float], ys: Sequence[float], top: Optional[int] = None) -> float:
    """Least-squares slope of log y against log x, over the ``top`` largest x (all when None); NaN with fewer
    than two usable points. Slope 1: linear growth; 2: quadratic."""
    pts = sorted((float(x), float(y)) for x, y in zip(xs, ys)
                 if np.isfinite(x) and np.isfinite(y) and x > 0 and y > 0)
    if top is not None:
        pts = pts[-top:]
    if len({x for x, _ in pts}) < 2:
        return math.nan
    lx, ly = np.log([x for x, _ in pts]), np.log([y for _, y in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def scaling_rule(slope_linear: float, slope_quadratic: float) -> str:
    """Claim 1's cost rule: without self-attention the slope stays below the self-attention study's
    ``linear_max_slope``, with it above ``quadratic_min_slope`` (at the top of the measured range)."""
    if not (np.isfinite(slope_linear) and np.isfinite(slope_quadratic)):
        return INSUFFICIENT
    ok = (slope_linear < cost_rule("self-attention", "linear_max_slope")
          and slope_quadratic > cost_rule("self-attention", "quadratic_min_slope"))
    return REPRODUCED if ok else NOT_REPRODUCED


def groups_rule(growth_k100: float, slope_full: float) -> str:
    """Claim 2's cost rule: K=100 grows less than the classes study's ``groups_max_growth`` times while full
    decoding grows about linearly (slope above ``full_min_slope``)."""
    if not (np.isfinite(growth_k100) and np.isfinite(slope_full)):
        return INSUFFICIENT
    return (REPRODUCED if growth_k100 < cost_rule("classes", "groups_max_growth")
            and slope_full > cost_rule("classes", "full_min_slope") else NOT_REPRODUCED)


# ---------------------------------------------------------------------------------------------- row helpers

def _num(df, col):
    import pandas as pd

    if col not in df.columns:
        return pd.Series(np.nan, index=df.index)
    return pd.to_numeric(df[col], errors="coerce")


def ok_rows(df):
    return df[df["status"].astype(str) == "ok"] if len(df) else df


def failed_rows(df):
    return df[df["status"].astype(str) == "error"] if len(df) else df


def cost_points(df):
    """One row per (backbone, head, img_size, num_classes) of the cost cells (no seed): GMACs and params, and
    when timed the latency and head time at the smallest batch and the throughput at the largest."""
    import pandas as pd

    ok = ok_rows(df)
    cost = ok[_num(ok, "seed").isna() & _num(ok, "gmacs_head").notna()].copy()
    # A training configuration also measures the cost of what it trains (the CPU proxy's backbone and heads):
    # those rows belong to its accuracy table, not to the cost tables of the paper's models.
    trained = {(r["backbone"], r["head"]) for r in accuracy_rows(df)[["backbone", "head"]].to_dict("records")}
    cost = cost[[(b, h) not in trained for b, h in zip(cost["backbone"], cost["head"])]]
    out = []
    keys = ["backbone", "head", "img_size", "num_classes"]
    for c in ("img_size", "num_classes"):
        cost[c] = _num(cost, c)
    for k, g in cost.groupby(keys, sort=False):
        r = dict(zip(keys, k))
        for c in ("gmacs_head", "gmacs_total", "gmacs_backbone", "params_head", "params_total"):
            r[c] = float(_num(g, c).dropna().iloc[0]) if _num(g, c).notna().any() else math.nan
        timed = g[_num(g, "latency_ms_p50").notna()]
        if len(timed):
            bs = _num(timed, "batch_size")
            b1 = timed[bs == bs.min()]
            bmax = timed[bs == bs.max()]
            r["latency_ms_b1"] = float(_num(b1, "latency_ms_p50").median())
            r["head_ms_b1"] = float(_num(b1, "head_ms_p50").median())
            r["backbone_ms_b1"] = float(_num(b1, "backbone_ms_p50").median())
            r["throughput_img_s"] = float(_num(bmax, "throughput_img_s").median())
            r["timing_batch"] = int(bs.max())
        out.append(r)
    return pd.DataFrame(out, columns=keys + ["gmacs_head", "gmacs_total", "gmacs_backbone", "params_head",
                                             "params_total", "latency_ms_b1", "head_ms_b1", "backbone_ms_b1",
                                             "throughput_img_s", "timing_batch"])


def head_options(head: str) -> Tuple[str, dict]:
    """(name, options) of a head label; a label that does not parse is its own name."""
    try:
        spec = parse_spec(str(head))
        return spec.name, dict(spec.kwargs)
    except ValueError:
        return str(head), {}


def num_queries(head: str, num_classes: float) -> Optional[int]:
    """ML-Decoder's K = min(groups, N)."""
    name, opts = head_options(head)
    if name != "mldecoder" or not np.isfinite(num_classes):
        return None
    return int(min(opts.get("groups", DEFAULT_GROUPS), num_classes))


def series_label(head: str, num_classes) -> str:
    """The head label with full decoding written as ``groups=N``, so one series spans every N."""
    try:
        n = int(num_classes)
    except (TypeError, ValueError):
        return str(head)
    return re.sub(rf"\bgroups={n}\b", "groups=N", str(head))


def metric_of(rows) -> Optional[str]:
    for m in ("map", "top1"):
        if m in rows.columns and _num(rows, m).notna().any():
            return m
    return None


def _is_plain_mldecoder(opts: dict) -> bool:
    return (not opts.get("self_attn") and opts.get("queries", "fixed") == "fixed"
            and not opts.get("query_noise") and not opts.get("random_queries"))


# ------------------------------------------------------------------------------------------------ rendering

def _f(v, digits=2, suffix="") -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "—"
    if not np.isfinite(v):
        return "—"
    return f"{v:.{digits}f}{suffix}"


def _signed(v, digits=1) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:+.{digits}f}"


def _code(s) -> str:
    return f"`{s}`"


def _proxy_line(rows) -> str:
    """What the accuracy rows are: dataset, backbone, protocol, epochs, size, seeds (read from the rows)."""
    if not len(rows):
        return ""
    seeds = sorted({int(s) for s in _num(rows, "seed").dropna()})
    parts = []
    for (ds, bb, proto, ep, size), _ in rows.groupby(["dataset", "backbone", "protocol", "epochs", "img_size"],
                                                     sort=False):
        parts.append(f"{_code(ds)}, {_code(bb)} ({proto}, {int(float(ep))} epochs, {int(float(size))} px)")
    return ("Accuracy rows (CPU-scale proxy): " + "; ".join(parts) + f"; seeds {', '.join(map(str, seeds))}; "
            "mean ± std over seeds of the last epoch.")


def _plt():
    from .plots import _plt as plots_plt

    return plots_plt()


def _save_png(fig, out_dir: str, name: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(os.path.join(out_dir, name), dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return name


def _bars(out_dir: str, name: str, labels: Sequence[str], stats: Sequence[Stat], ylabel: str, title: str,
          colors: Optional[Sequence[str]] = None) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(labels)), 4.0))
    idx = np.arange(len(labels))
    means = [s.mean for s in stats]
    errs = [s.std if np.isfinite(s.std) else 0.0 for s in stats]
    ax.bar(idx, means, yerr=errs, capsize=4, color=colors or "tab:blue")
    ax.set_xticks(idx)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    return _save_png(fig, out_dir, name)


def _short(head: str) -> str:
    """A head label without the CPU-scale widths, for plot ticks (tables keep the full label)."""
    from .spec import format_spec

    name, opts = head_options(head)
    return format_spec(name, {k: v for k, v in opts.items() if k not in ("embed", "ffn", "heads")})


def _lines_plot(out_dir: str, name: str, series: Dict[str, Tuple[list, list]], xlabel: str, ylabel: str,
                title: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, "o-", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _save_png(fig, out_dir, name)


# -------------------------------------------------------------------------------------------------- claims

@dataclass
class Context:
    studies: Dict[str, object]  # name -> DataFrame, or None when the study file is missing
    paper: object  # the paper's rows (DataFrame, maybe empty)
    out_dir: str
    make_plots: bool = True


def _not_run_part(name: str, study: str) -> Part:
    return Part(name, NOT_RUN, f"`bench study {study}`")


def _failures(df) -> str:
    bad = failed_rows(df)
    if not len(bad):
        return ""
    first = str(bad["error"].dropna().iloc[0])[:200] if bad["error"].notna().any() else ""
    return f"{len(bad)} row(s) failed (first error: {first})."


def claim_self_attention(ctx: Context) -> Claim:
    """Claim 1: cost vs N with and without self-attention (slopes) and proxy accuracy with and without it."""
    from .studies import get_study

    st = get_study("self-attention")
    c = Claim(1, st.statement, ["self-attention"],
              paper_figure="self-attention makes the head quadratic in N; removing it keeps COCO mAP")
    df = ctx.studies.get("self-attention")
    if df is None:
        c.parts = [_not_run_part("cost", "self-attention")]
        return c
    cost = cost_points(df)
    cost["series"] = [series_label(h, n) for h, n in zip(cost["head"], cost["num_classes"])]
    kinds = {}
    for h, n, s in zip(cost["head"], cost["num_classes"], cost["series"]):
        name, opts = head_options(h)
        if name == "mldecoder" and opts.get("groups") == n:
            kinds[s] = "sa" if opts.get("self_attn") else "no_sa"
        elif name == "txdec":
            kinds[s] = "txdec"
    series = [s for s in dict.fromkeys(cost["series"]) if s in kinds]
    ns = sorted(cost["num_classes"].dropna().unique())
    slopes, lat_slopes, slopes_all = {}, {}, {}
    rows = []
    for n in ns:
        r = [f"{int(n)}"]
        for s in series:
            g = cost[(cost["series"] == s) & (cost["num_classes"] == n)]
            r.append(_f(g["gmacs_head"].iloc[0], 3) if len(g) else "—")
        for s in series:
            g = cost[(cost["series"] == s) & (cost["num_classes"] == n)]
            r.append(_f(g["head_ms_b1"].iloc[0], 2) if len(g) else "—")
        rows.append(r)
    for s in series:
        g = cost[cost["series"] == s].sort_values("num_classes")
        slopes[s] = loglog_slope(g["num_classes"], g["gmacs_head"], top=2)
        slopes_all[s] = loglog_slope(g["num_classes"], g["gmacs_head"])
        lat_slopes[s] = loglog_slope(g["num_classes"], g["head_ms_b1"], top=2)
    top = [int(n) for n in ns[-2:]]
    rows.append([f"slope, N={'-'.join(map(str, top))}"] + [_f(slopes[s]) for s in series]
                + [_f(lat_slopes[s]) for s in series])
    rows.append(["slope, all N"] + [_f(slopes_all[s]) for s in series]
                + [_f(loglog_slope(cost[cost["series"] == s]["num_classes"],
                                   cost[cost["series"] == s]["head_ms_b1"])) for s in series])
    by_kind = {k: s for s, k in kinds.items()}
    s_no, s_sa = slopes.get(by_kind.get("no_sa"), math.nan), slopes.get(by_kind.get("sa"), math.nan)
    bbs = ", ".join(_code(b) for b in dict.fromkeys(cost["backbone"]))
    sizes = ", ".join(str(int(v)) for v in dict.fromkeys(cost["img_size"]))
    rule = (f"log-log slope of head GMACs against N between the two largest N: reproduced if below "
            f"{cost_rule('self-attention', 'linear_max_slope')} without self-attention and above "
            f"{cost_rule('self-attention', 'quadratic_min_slope')} with it (1 = linear, "
            f"2 = quadratic)")
    if len(series):
        lat_no, lat_sa = lat_slopes.get(by_kind.get("no_sa"), math.nan), lat_slopes.get(by_kind.get("sa"), math.nan)
        why = f"slope {_f(s_no)} without self-attention, {_f(s_sa)} with it, at N={top[0]}-{top[-1]}"
        if np.isfinite(lat_no) and np.isfinite(lat_sa):
            agrees = scaling_rule(lat_no, lat_sa) == REPRODUCED
            why += (f"; head latency (batch 1) slopes {_f(lat_no)} / {_f(lat_sa)}"
                    f" ({'agrees' if agrees else 'does not agree'}; timings are not part of the rule)")
        cost_part = Part("cost", scaling_rule(s_no, s_sa), why, rule)
    else:
        cost_part = Part("cost", NOT_RUN, "no cost rows: `bench study self-attention`", rule)
    c.body.append(f"**Cost** on exactly the paper's head ({bbs} at {sizes} px, full decoding K = N, batch 1): head "
                  "GMACs and head milliseconds against the number of queries N.\n\n"
                  + md_table(["N"] + [f"GMACs {_code(s)}" for s in series] + [f"ms {_code(s)}" for s in series],
                             rows))
    if ctx.make_plots and len(series):
        c.plots.append(_lines_plot(
            ctx.out_dir, "claim1_cost_vs_queries.png",
            {s: (list(cost[cost["series"] == s].sort_values("num_classes")["num_classes"]),
                 list(cost[cost["series"] == s].sort_values("num_classes")["gmacs_head"])) for s in series},
            "number of queries N (= classes, full decoding)", "head GMACs per image",
            "Claim 1: head cost against the number of queries"))

    # accuracy (CPU proxy): the verdicts are the study's hypotheses (rendered generically); here only the plot
    acc = accuracy_rows(df)
    metric = metric_of(acc)
    if metric is not None and ctx.make_plots:
        heads = list(dict.fromkeys(acc["head"]))
        c.plots.append(_bars(ctx.out_dir, "claim1_accuracy.png", [_short(h) for h in heads],
                             [stat(acc[acc["head"] == h][metric]) for h in heads], f"{metric} (%), mean ± std",
                             "Claim 1: accuracy with and without self-attention (CPU proxy)"))
    c.parts = [cost_part]
    c.suite_figure = (f"head GMACs slope at N={top[0]}-{top[-1]}: {_f(s_no)} without, {_f(s_sa)} with "
                      f"self-attention" if series else "—")
    fail = _failures(df)
    if fail:
        c.body.append(fail)
    return c


def claim_groups(ctx: Context) -> Claim:
    """Claim 2: head cost against N (classes study) and against K (groups study), proxy accuracy against K."""
    from .studies import get_study

    st = get_study("classes")
    c = Claim(2, st.statement, ["classes", "groups"])
    paper = ctx.paper
    oi = paper[(paper["dataset"].astype(str) == "openimages") & _num(paper, "map").notna()] if len(paper) else paper
    if len(oi):
        r = oi.iloc[0]
        c.paper_figure = (f"Open Images ({int(float(r['num_classes']))} classes), {r['backbone']} "
                          f"{_code(r['head'])}: {_f(r['map'], 1)} mAP")
    parts: List[Part] = []
    summary = []
    rule = (f"ML-Decoder with K=100 groups: head GMACs at the largest N over those at N_ref (the smallest N >= 100) "
            f"below {cost_rule('classes', 'groups_max_growth')}x, while full decoding (K = N) grows about linearly "
            f"(log-log slope above {cost_rule('classes', 'full_min_slope')})")
    df = ctx.studies.get("classes")
    if df is None:
        parts.append(Part("cost against N", NOT_RUN, "`bench study classes`", rule))
    else:
        cost = cost_points(df)
        cost["series"] = [series_label(h, n) for h, n in zip(cost["head"], cost["num_classes"])]
        series = list(dict.fromkeys(cost["series"]))
        ns = sorted(cost["num_classes"].dropna().unique())
        rows = []
        for n in ns:
            r = [str(int(n))]
            for s in series:
                g = cost[(cost["series"] == s) & (cost["num_classes"] == n)]
                r.append(f"{_f(g['gmacs_head'].iloc[0], 3)} / {_f(g['params_head'].iloc[0] / 1e6, 2)} / "
                         f"{_f(g['head_ms_b1'].iloc[0], 2)}" if len(g) else "—")
            rows.append(r)
        bbs = ", ".join(f"{_code(b)} at {int(s)} px" for b, s in
                        dict.fromkeys(zip(cost["backbone"], cost["img_size"])))
        c.body.append(f"**Head cost against the number of classes N** (exactly the paper's heads on {bbs}, batch "
                      "1); each cell: head GMACs / head params (M) / head ms. `groups=N` is full decoding (one "
                      "query per class); `mldecoder` is the default K = min(100, N).\n\n"
                      + md_table(["N"] + [_code(s) for s in series], rows))
        kinds = {}
        for h, n, s in zip(cost["head"], cost["num_classes"], cost["series"]):
            name, opts = head_options(h)
            if name == "mldecoder" and _is_plain_mldecoder(opts):
                if opts.get("groups") == n:
                    kinds.setdefault("full", s)
                elif "groups" not in opts:
                    kinds.setdefault("k100", s)
        k100, full = kinds.get("k100"), kinds.get("full")
        n_ref = next((n for n in ns if n >= DEFAULT_GROUPS), None)
        n_max = ns[-1] if ns else None
        if k100 and full and n_ref is not None and n_max is not None and n_max > n_ref:
            def at(s, n):
                g = cost[(cost["series"] == s) & (cost["num_classes"] == n)]
                return float(g["gmacs_head"].iloc[0]) if len(g) else math.nan

            growth = at(k100, n_max) / at(k100, n_ref)
            full_rows = cost[(cost["series"] == full) & (cost["num_classes"] >= n_ref)]
            slope_full = loglog_slope(full_rows["num_classes"], full_rows["gmacs_head"])
            extra = []
            for s in series:
                if s in (k100, full):
                    continue
                extra.append(f"{_code(s)} {_f(at(s, n_ref), 3)} -> {_f(at(s, n_max), 3)}")
            why = (f"K=100: {_f(at(k100, n_ref), 3)} -> {_f(at(k100, n_max), 3)} GMACs from N={int(n_ref)} to "
                   f"{int(n_max)} (x{_f(growth)}, +{_f(at(k100, n_max) - at(k100, n_ref), 3)} GMACs: the group FC); "
                   f"full decoding {_f(at(full, n_ref), 3)} -> {_f(at(full, n_max), 3)} "
                   f"(x{_f(at(full, n_max) / at(full, n_ref), 1)}, "
                   f"slope {_f(slope_full)})" + ("; " + ", ".join(extra) if extra else ""))
            parts.append(Part("cost against N", groups_rule(growth, slope_full), why, rule))
            summary.append(f"K=100 head x{_f(growth)} from N={int(n_ref)} to {int(n_max)}; full decoding "
                           f"x{_f(at(full, n_max) / at(full, n_ref), 1)}")
        else:
            parts.append(Part("cost against N", INSUFFICIENT, "needs ML-Decoder K=100 and K=N at two N >= 100",
                              rule))
        if ctx.make_plots and series:
            c.plots.append(_lines_plot(
                ctx.out_dir, "claim2_cost_vs_classes.png",
                {s: (list(cost[cost["series"] == s].sort_values("num_classes")["num_classes"]),
                     list(cost[cost["series"] == s].sort_values("num_classes")["gmacs_head"])) for s in series},
                "number of classes N", "head GMACs per image", "Claim 2: head cost against the number of classes"))
        fail = _failures(df)
        if fail:
            c.body.append("classes study: " + fail)

    df = ctx.studies.get("groups")
    crule = "head GMACs do not decrease as K grows (fewer groups cost less)"
    if df is None:
        parts += [Part("cost against K", NOT_RUN, "`bench study groups`", crule)]
    else:
        cost = cost_points(df)
        cost = cost[[head_options(h)[0] == "mldecoder" for h in cost["head"]]].copy()
        cost["K"] = [num_queries(h, n) for h, n in zip(cost["head"], cost["num_classes"])]
        cost = cost.sort_values(["num_classes", "K"])
        if len(cost):
            rows = [[int(r.num_classes), int(r.K), _code(r.head), _f(r.gmacs_head, 3), _f(r.params_head / 1e6, 2),
                     _f(r.head_ms_b1, 2)] for r in cost.itertuples()]
            bbs = ", ".join(f"{_code(b)} at {int(s)} px"
                            for b, s in dict.fromkeys(zip(cost["backbone"], cost["img_size"])))
            c.body.append(f"**Head cost against the number of groups K** ({bbs}, batch 1).\n\n"
                          + md_table(["N", "K", "head", "head GMACs", "head params (M)", "head ms"], rows))
            mono = all(np.diff(g["gmacs_head"].to_numpy()).min(initial=0) >= 0
                       for _, g in cost.groupby("num_classes"))
            lo, hi = cost.iloc[0], cost.iloc[-1]
            parts.append(Part("cost against K", REPRODUCED if mono else NOT_REPRODUCED,
                              f"K={int(lo.K)}: {_f(lo.gmacs_head, 3)} GMACs ... K={int(hi.K)}: {_f(hi.gmacs_head, 3)} "
                              f"GMACs at N={int(hi.num_classes)}", crule))
        else:
            parts.append(Part("cost against K", NOT_RUN, "no cost rows: `bench study groups`", crule))
        acc = accuracy_rows(df)
        metric = metric_of(acc)
        if metric is not None and ctx.make_plots:  # the verdicts are the study's hypotheses; here the plot
            acc = acc.copy()
            acc["K"] = [num_queries(h, float(n)) for h, n in zip(acc["head"], _num(acc, "num_classes"))]
            heads = sorted(dict.fromkeys(acc["head"]), key=lambda h: (acc[acc["head"] == h]["K"].iloc[0] or 0))
            stats = {h: stat(acc[acc["head"] == h][metric]) for h in heads}
            c.plots.append(_groups_plot(ctx.out_dir, cost, acc, metric, heads, stats))
        fail = _failures(df)
        if fail:
            c.body.append("groups study: " + fail)
    c.parts = parts
    c.suite_figure = "; ".join(summary) or "—"
    return c


def _groups_plot(out_dir, cost, acc, metric, heads, stats) -> str:
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for n, g in cost.groupby("num_classes"):
        a1.plot(g["K"], g["gmacs_head"], "o-", label=f"N={int(n)}")
    a1.set_xscale("log")
    a1.set_xlabel("groups K")
    a1.set_ylabel("head GMACs per image")
    a1.set_title("cost against K", fontsize=9)
    a1.grid(alpha=0.3, which="both")
    if len(cost):
        a1.legend(fontsize=7)
    ks = [int(acc[acc["head"] == h]["K"].iloc[0]) for h in heads]
    a2.errorbar(ks, [stats[h].mean for h in heads],
                yerr=[stats[h].std if np.isfinite(stats[h].std) else 0 for h in heads], fmt="o-", capsize=3)
    a2.set_xscale("log")
    a2.set_xlabel("groups K")
    a2.set_ylabel(f"{metric} (%), mean ± std")
    a2.set_title("accuracy against K (CPU proxy)", fontsize=9)
    a2.grid(alpha=0.3, which="both")
    fig.suptitle("Claim 2: group decoding", fontsize=10)
    return _save_png(fig, out_dir, "claim2_groups.png")


def claim_compute(ctx: Context) -> Claim:
    """Claim 3: GAP vs ML-Decoder GMACs on the paper's backbones, against the README figure values."""
    from .studies import get_study

    st = get_study("compute")
    c = Claim(3, st.statement, ["compute"])
    paper = ctx.paper
    flops = paper[_num(paper, "gmacs_total").notna()] if len(paper) else paper
    figure = paper[(paper["dataset"].astype(str) == "coco2014") & _num(paper, "map").notna()
                   & paper["source"].astype(str).str.contains("figure")] if len(paper) else paper
    if len(flops):
        parts = []
        for bb, g in flops.groupby("backbone", sort=False):
            vals = {head_options(h)[0]: _f(v, 1) for h, v in zip(g["head"], _num(g, "gmacs_total"))}
            parts.append(f"{bb} {vals.get('gap', '—')} -> {vals.get('mldecoder', '—')}")
        c.paper_figure = "GMACs at 448, GAP -> ML-Decoder: " + ", ".join(parts)
    rule_cost = (f"this suite's backbone+head GMACs equal the paper's figure values within their reading "
                 f"tolerance (2x the row's `gmacs_total_std`, else ±{cost_rule('compute', 'figure_tolerance')}) "
                 f"for every value the paper "
                 f"gives")
    acc_part = Part("accuracy", NOT_TESTABLE,
                    "needs COCO 2014 and a GPU (the official checkpoints): `bench run --dataset coco2014 "
                    "--data-root DIR --protocol eval --checkpoint FILE --backbone tresnet_v2_l --heads mldecoder "
                    "--img-size 448` then `bench check --baseline results/paper/coco.csv`",
                    "mAP on COCO against results/paper/coco.csv")
    df = ctx.studies.get("compute")
    if df is None:
        c.parts = [_not_run_part("cost", "compute"), acc_part]
        return c
    cost = cost_points(df)
    cost["kind"] = [head_options(h)[0] for h in cost["head"]]
    rows, checks, found, summary = [], [], [], []
    for (bb, size), g in cost.groupby(["backbone", "img_size"], sort=False):
        gap = g[g["kind"] == "gap"]
        mld = g[(g["kind"] == "mldecoder")]
        if not len(gap) or not len(mld):
            continue
        gp, ml = gap.iloc[0], mld.iloc[0]
        gmp = g[g["kind"] == "gmp"]
        gm = _f(gmp.iloc[0]["gmacs_total"]) if len(gmp) else "—"
        pv = {}
        for kind, ours in (("gap", gp), ("mldecoder", ml)):
            p = flops[(flops["backbone"].astype(str) == bb) & (_num(flops, "img_size") == size)
                      & (flops["head"].astype(str) == ours["head"])] if len(flops) else flops
            if len(p):
                std = _num(p, "gmacs_total_std").iloc[0] if "gmacs_total_std" in p.columns else math.nan
                tol = 2 * std if np.isfinite(std) else cost_rule("compute", "figure_tolerance")
                pval = float(_num(p, "gmacs_total").iloc[0])
                ok = abs(ours["gmacs_total"] - pval) <= tol + 1e-9
                checks.append(REPRODUCED if ok else NOT_REPRODUCED)
                found.append(f"{bb} {kind} {_f(ours['gmacs_total'])} vs {_f(pval, 1)} "
                             f"({'within' if ok else 'outside'} ±{_f(tol, 2)})")
                pv[kind] = _f(pval, 1)
        extra = ml["gmacs_total"] - gp["gmacs_total"]
        share = 100 * ml["gmacs_head"] / ml["gmacs_total"]
        t_share = 100 * ml["head_ms_b1"] / (ml["head_ms_b1"] + ml["backbone_ms_b1"])
        pf = (figure[(figure["backbone"].astype(str) == bb) & (_num(figure, "img_size") == size)]
              if len(figure) else figure)
        pmap = {head_options(h)[0]: _f(v, 1) for h, v in zip(pf["head"], _num(pf, "map"))} if len(pf) else {}
        rows.append([_code(bb), int(size), _f(gp["gmacs_total"]), gm, _f(ml["gmacs_total"]), "+" + _f(extra, 3),
                     f"{pv.get('gap', '—')} / {pv.get('mldecoder', '—')}",
                     f"{pmap.get('gap', '—')} / {pmap.get('mldecoder', '—')}",
                     _f(ml["params_head"] / 1e6, 2), _f(share, 1, "%"),
                     f"{_f(gp['latency_ms_b1'], 1)} / {_f(ml['latency_ms_b1'], 1)}", _f(t_share, 1, "%"),
                     f"{_f(gp['throughput_img_s'], 1)} / {_f(ml['throughput_img_s'], 1)}"])
        if pv:
            summary.append(f"{bb} {_f(gp['gmacs_total'])} -> {_f(ml['gmacs_total'])} (+{_f(extra)})")
    tb = int(cost["timing_batch"].max()) if cost["timing_batch"].notna().any() else 1
    c.body.append("**Cost on exactly the paper's models** (random weights: cost does not depend on them), 80 "
                  "classes, batch 1; 'extra' is ML-Decoder's GMACs over GAP's. The paper's figure values are read "
                  "by eye from the official README figure "
                  "'COCO mAP vs FLOPs' (its FLOPs are MACs; its TResNet-L is `tresnet_v2_l`). GMP (global max "
                  "pooling + linear, the pooling baseline of the `pooling` study) costs what GAP costs: the pooling "
                  "is a max instead of a mean, uncounted as MACs either way.\n\n"
                  + md_table(["backbone", "px", "GAP GMACs", "GMP GMACs", "ML-Decoder GMACs", "extra",
                              "paper GMACs GAP / MLD",
                              "paper COCO mAP GAP / MLD", "head params (M)", "head share of GMACs",
                              "latency b1 GAP / MLD (ms)", "head share of time", f"img/s b{tb} GAP / MLD"], rows))
    if checks:
        cost_part = Part("cost", _combine_checks(checks), "; ".join(found), rule_cost)
    else:
        cost_part = Part("cost", INSUFFICIENT, "no row matches a paper figure value (backbone, head, size)",
                         rule_cost)
    c.parts = [cost_part, acc_part]
    c.suite_figure = ("GMACs at 448: " + ", ".join(summary)) if summary else "—"
    if ctx.make_plots and rows:
        c.plots.append(_compute_plot(ctx.out_dir, cost, flops))
    fail = _failures(df)
    if fail:
        c.body.append(fail)
    return c


def _compute_plot(out_dir, cost, flops) -> str:
    plt = _plt()
    keys = list(dict.fromkeys(zip(cost["backbone"], cost["img_size"])))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(keys)), 4.5))
    idx = np.arange(len(keys))
    for off, kind, color in ((-0.2, "gap", "0.6"), (0.2, "mldecoder", "tab:orange")):
        bb_vals, hd_vals, paper_vals = [], [], []
        for bb, size in keys:
            g = cost[(cost["backbone"] == bb) & (cost["img_size"] == size) & (cost["kind"] == kind)]
            bb_vals.append(float(g["gmacs_backbone"].iloc[0]) if len(g) else 0.0)
            hd_vals.append(float(g["gmacs_head"].iloc[0]) if len(g) else 0.0)
            p = flops[(flops["backbone"].astype(str) == bb) & (_num(flops, "img_size") == size)
                      & (flops["head"].astype(str).map(lambda h: head_options(h)[0]) == kind)] if len(flops) else flops
            paper_vals.append(float(_num(p, "gmacs_total").iloc[0]) if len(p) else np.nan)
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
    return _save_png(fig, out_dir, "claim3_compute.png")


def claim_backbone_vs_head(ctx: Context) -> Claim:
    """Claim 4: does the smaller backbone + ML-Decoder beat the larger backbone + GAP (accuracy at lower cost)?"""
    from .plots import accuracy_points, pareto_front
    from .studies import get_study

    st = get_study("backbone-vs-head")
    c = Claim(4, st.statement, ["backbone-vs-head"])
    paper = ctx.paper
    if len(paper):
        fl = paper[_num(paper, "gmacs_total").notna()]
        fig = paper[(paper["dataset"].astype(str) == "coco2014") & _num(paper, "map").notna()
                    & paper["source"].astype(str).str.contains("figure")]
        pts = {}
        for r in fl.itertuples():
            m = fig[(fig["backbone"] == r.backbone) & (fig["head"] == r.head)]
            if len(m):
                pts[(r.backbone, head_options(r.head)[0])] = (float(r.gmacs_total), float(_num(m, "map").iloc[0]))
        bbs = sorted({b for b, _ in pts}, key=lambda b: pts.get((b, "gap"), (0, 0))[0])
        pairs = [f"{s}+MLD {pts[(s, 'mldecoder')][0]:.1f}/{pts[(s, 'mldecoder')][1]:.1f} vs {l}+GAP "
                 f"{pts[(l, 'gap')][0]:.1f}/{pts[(l, 'gap')][1]:.1f} GMACs/mAP"
                 for s, l in zip(bbs, bbs[1:]) if (s, "mldecoder") in pts and (l, "gap") in pts]
        if pairs:
            c.paper_figure = "; ".join(pairs)
    rule = ("for each pair of consecutive backbones by GAP cost: the smaller backbone + ML-Decoder costs fewer "
            "GMACs than the larger + GAP (the accuracy side is the study's hypotheses)")
    df = ctx.studies.get("backbone-vs-head")
    if df is None:
        c.parts = [_not_run_part("cost: smaller + ML-Decoder is cheaper", "backbone-vs-head")]
        return c
    ok = ok_rows(df)
    points = accuracy_points(ok) if len(accuracy_rows(df)) else []
    if not points:
        c.parts = [Part("cost: smaller + ML-Decoder is cheaper", NOT_RUN,
                        "no accuracy rows: `bench study backbone-vs-head`", rule)]
        return c
    metric = points[0]["metric"]
    acc = accuracy_rows(df)
    for p in points:
        g = acc[(acc["backbone"] == p["backbone"]) & (acc["head"] == p["head"])]
        p["stat"] = stat(g[metric])
        p["kind"] = head_options(p["head"])[0]
    xs = [p["gmacs"] for p in points]
    ys = [p["acc"] for p in points]
    front = set(pareto_front(xs, ys))
    has_thr = any(np.isfinite(p["throughput"]) for p in points)
    front_thr = set(pareto_front([p["throughput"] for p in points], ys, higher_x_better=True)) if has_thr else set()
    rows = [[_code(p["backbone"]), _code(p["head"]), int(p["img_size"]), _f(p["gmacs"], 3), _f(p["throughput"], 1),
             str(p["stat"]), p["stat"].n, "yes" if i in front else "no",
             ("yes" if i in front_thr else "no") if has_thr else "—"] for i, p in enumerate(points)]
    c.body.append(f"**Speed-accuracy** ({metric}, CPU-scale proxy; GMACs per image at the training size; throughput "
                  "at the largest timed batch; accuracy mean ± std over seeds).\n\n"
                  + md_table(["backbone", "head", "px", "GMACs", "img/s", f"{metric} (%)", "n",
                              "Pareto (GMACs)", "Pareto (img/s)"], rows))
    gap_cost = {p["backbone"]: p["gmacs"] for p in points if p["kind"] == "gap"}
    order = sorted(gap_cost, key=gap_cost.get)
    checks, why, summary = [], [], []
    for small, large in zip(order, order[1:]):
        sm = next((p for p in points if p["backbone"] == small and p["kind"] == "mldecoder"), None)
        lg = next((p for p in points if p["backbone"] == large and p["kind"] == "gap"), None)
        if sm is None or lg is None:
            continue
        cheaper = sm["gmacs"] < lg["gmacs"]
        checks.append(REPRODUCED if cheaper else NOT_REPRODUCED)
        faster = ""
        if np.isfinite(sm["throughput"]) and np.isfinite(lg["throughput"]):
            faster = f", {_f(sm['throughput'], 1)} vs {_f(lg['throughput'], 1)} img/s"
        why.append(f"{small} + ML-Decoder {_f(sm['gmacs'], 3)} vs {large} + GAP {_f(lg['gmacs'], 3)} GMACs{faster}")
        summary.append(f"{small}+MLD {_f(sm['gmacs'], 3)} vs {large}+GAP {_f(lg['gmacs'], 3)} GMACs")
    c.parts = [Part("cost: smaller + ML-Decoder is cheaper", _combine_checks(checks),
                    "; ".join(why) or "needs GAP and ML-Decoder on two backbones", rule)]
    c.suite_figure = "; ".join(summary) or "—"
    if ctx.make_plots:
        from .plots import plot_pareto

        for x, name in (("gmacs", "claim4_pareto_gmacs"), ("throughput", "claim4_pareto_throughput")):
            if x == "throughput" and not has_thr:
                continue
            plot_pareto(points, x, ctx.out_dir, name, f"Claim 4: {metric} against "
                        f"{'GMACs' if x == 'gmacs' else 'throughput'} (CPU proxy)", exts=("png",))
            c.plots.append(name + ".png")
    fail = _failures(df)
    if fail:
        c.body.append(fail)
    return c


def claim_queries(ctx: Context) -> Claim:
    """Claim 5: fixed random queries against learnable ones (and word queries): the plot (verdicts are the
    study's hypotheses)."""
    from .studies import get_study

    st_ = get_study("queries")
    c = Claim(5, st_.statement, ["queries"], paper_figure="frozen random queries = learnable ones (COCO ablation)")
    df = ctx.studies.get("queries")
    acc = accuracy_rows(df) if df is not None else None
    metric = metric_of(acc) if acc is not None else None
    if metric is not None and ctx.make_plots:
        heads = list(dict.fromkeys(acc["head"]))
        kinds = [str(head_options(h)[1].get("queries", "fixed")) if head_options(h)[0] == "mldecoder"
                 else head_options(h)[0] for h in heads]
        c.plots.append(_bars(ctx.out_dir, "claim5_queries.png", kinds, [stat(acc[acc["head"] == h][metric])
                                                                        for h in heads],
                             f"{metric} (%), mean ± std", "Claim 5: fixed vs learnable vs word queries (CPU proxy)"))
    if df is not None:
        fail = _failures(df)
        if fail:
            c.body.append(fail)
    return c


def _zsl_name(dataset: str, head: str) -> str:
    opts = head_options(head)[1]
    aug = []
    if opts.get("query_noise"):
        aug.append(f"noise {opts['query_noise']}")
    if opts.get("random_queries"):
        aug.append(f"{opts['random_queries']} random queries")
    is_ctrl = head_options(dataset)[1].get("embeddings") == "random"
    return ("control: random embeddings" if is_ctrl else "word queries") + (" + " + " + ".join(aug) if aug else "")


def claim_zsl(ctx: Context) -> Claim:
    """Claim 6: word queries on held-out classes against a random-embedding control; query augmentations. The
    paper's figure and the plot (verdicts are the study's hypotheses)."""
    from .studies import get_study

    st_ = get_study("zsl")
    c = Claim(6, st_.statement, ["zsl"])
    paper = ctx.paper
    zs = paper[_num(paper, "zsl_map").notna()] if len(paper) else paper
    if len(zs):
        src = str(zs.iloc[0]["source"])
        m = re.search(r"prior methods ([\d.]+ - [\d.]+)", src)
        c.paper_figure = (f"{zs.iloc[0]['dataset']} ZSL mAP {_f(_num(zs, 'zsl_map').iloc[0], 1)}"
                          + (f" (prior methods {m.group(1)})" if m else "") + "; augmentations said to help")
    df = ctx.studies.get("zsl")
    if df is None:
        return c
    acc = accuracy_rows(df)
    acc = acc[_num(acc, "zsl_map").notna()]
    if len(acc) and ctx.make_plots:
        keys = list(dict.fromkeys(zip(acc["dataset"], acc["head"])))
        names = [_zsl_name(ds, h) for ds, h in keys]
        c.plots.append(_bars(ctx.out_dir, "claim6_zsl.png", names,
                             [stat(acc[(acc["dataset"] == ds) & (acc["head"] == h)]["zsl_map"]) for ds, h in keys],
                             "ZSL mAP on held-out classes (%), mean ± std",
                             "Claim 6: zero-shot with word queries (CPU proxy)",
                             colors=["0.6" if n.startswith("control") else "tab:blue" for n in names]))
    fail = _failures(df)
    if fail:
        c.body.append(fail)
    return c


def claim_drop_in(ctx: Context) -> Claim:
    """Claim 7: what the rows cover (a CNN and a ViT, multi- and single-label, two resolutions, no failed
    ML-Decoder row) and the plot; whether ML-Decoder is not worse than GAP is the study's hypotheses."""
    from .studies import get_study

    st_ = get_study("drop-in")
    c = Claim(7, st_.statement, ["drop-in"])
    paper = ctx.paper
    if len(paper):
        inet = paper[_num(paper, "top1").notna()]
        voc = paper[(paper["dataset"].astype(str) == "voc2007") & _num(paper, "map").notna()]
        bits = []
        if len(inet):
            v = {head_options(h)[0]: _f(t, 1) for h, t in zip(inet["head"], _num(inet, "top1"))}
            bits.append(f"ImageNet top-1 {v.get('mldecoder', '—')} vs GAP {v.get('gap', '—')} (ResNet50)")
        if len(voc):
            bits.append(f"VOC mAP {_f(_num(voc, 'map').iloc[0], 1)}")
        if bits:
            c.paper_figure = "; ".join(bits) + "; 224-640 px"
    rule = ("ML-Decoder trains and evaluates without failure on a CNN and a transformer, multi-label (mAP) and "
            "single-label (top-1), at two resolutions or more: reproduced; some of these missing or a failed "
            "ML-Decoder row: partly")
    name = "coverage: runs unchanged everywhere"
    df = ctx.studies.get("drop-in")
    if df is None:
        c.parts = [_not_run_part(name, "drop-in")]
        return c
    acc = accuracy_rows(df)
    if not len(acc):
        c.parts = [Part(name, NOT_RUN, "no accuracy rows: `bench study drop-in`", rule)]
        return c
    covered = dict(cnn=False, transformer=False, map=False, top1=False)
    sizes = set()
    plot_labels, plot_stats, plot_colors = [], [], []
    for (bb, ds, size), g in acc.groupby(["backbone", "dataset", "img_size"], sort=False):
        metric = metric_of(g)
        mld = [h for h in dict.fromkeys(g["head"]) if head_options(h)[0] == "mldecoder"]
        if metric is None or not mld:
            continue
        kind = "transformer" if any(m in str(bb).lower() for m in TRANSFORMER_MARKERS) else "cnn"
        covered[kind] = covered[metric] = True
        sizes.add(int(size))
        label = f"{bb} {int(size)}px {head_options(ds)[0]}"
        for h in dict.fromkeys(g["head"]):
            plot_labels.append(f"{label}\n{'ML-Decoder' if h in mld else _short(h)}")
            plot_stats.append(stat(g[g["head"] == h][metric]))
            plot_colors.append("tab:orange" if h in mld else "0.6")
    missing = [k for k, v in covered.items() if not v] + (["two resolutions"] if len(sizes) < 2 else [])
    failed = failed_rows(df)
    failed_mld = failed[[head_options(h)[0] == "mldecoder" for h in failed["head"]]] if len(failed) else failed
    kinds = " + ".join(k for k, label in (("CNN", "cnn"), ("ViT", "transformer")) if covered[label])
    metrics = " + ".join(m for m in ("map", "top1") if covered[m])
    why = f"ML-Decoder rows on {kinds or 'no backbone'}; {metrics or 'no metric'}; {', '.join(map(str, sorted(sizes)))} px"
    word = REPRODUCED
    if missing:
        why += "; not covered: " + ", ".join(missing)
        word = PARTLY
    if len(failed_mld):
        why += f"; {len(failed_mld)} ML-Decoder row(s) failed"
        word = PARTLY
    c.parts = [Part(name, word, why, rule)]
    c.suite_figure = f"runs on {kinds}; {metrics}; {', '.join(map(str, sorted(sizes)))} px"
    if ctx.make_plots and plot_stats:
        c.plots.append(_bars(ctx.out_dir, "claim7_drop_in.png", plot_labels, plot_stats,
                             "accuracy (%), mean ± std (mAP or top-1)", "Claim 7: GAP vs ML-Decoder per setting "
                             "(CPU proxy)", colors=plot_colors))
    fail = _failures(df)
    if fail:
        c.body.append(fail)
    return c


# What is specific to each claim of the paper (cost figures, their rules, plots), by claim number. A study whose
# claim has no entry here still gets its section: its statement, accuracy table, verdicts and a plot.
CLAIM_CODE = {1: claim_self_attention, 2: claim_groups, 3: claim_compute, 4: claim_backbone_vs_head,
              5: claim_queries, 6: claim_zsl, 7: claim_drop_in}


# ------------------------------------------------------------------------------------- verdicts, generically

def _setting_text(setting: Dict[str, object]) -> str:
    bits = []
    for k, v in setting.items():
        if k == "img_size" and _f(v, 0) != "—":
            bits.append(f"{_f(v, 0)} px")
        else:
            bits.append(str(v))
    return ", ".join(bits)


def _test_text(h) -> str:
    if h.test == "not_worse":
        return f"not worse: the interval must lie above -{h.margin:g}"
    return f"better: the interval must lie above {'+' if h.margin else ''}{h.margin:g}"


def verdict_text(v: "st.Verdict") -> str:
    """One accuracy verdict in words: the statement, the means, the paired mean difference with its 95% interval,
    the margin, n and the outcome (with how many seeds would decide an inconclusive one, or why a setting is
    uninformative)."""
    h, d = v.hypothesis, v.difference
    text = h.statement.rstrip(".")
    if d is None:
        return f"{text}. " + "; ".join(v.reasons) + "."
    m = h.metric
    text += f". {m} {_f(v.variant_mean, 1)} (variant) vs {_f(v.reference_mean, 1)} (reference); "
    if d.n >= 2:
        text += (f"paired difference {d.mean:+.2f} {m}, 95% interval [{d.low:+.2f}, {d.high:+.2f}], margin "
                 f"{h.margin:g} ({_test_text(h)}), n={d.n}")
    else:
        text += (f"paired difference {_signed(d.mean, 2)} {m} over n={d.n} shared seed(s): no interval, margin "
                 f"{h.margin:g} ({_test_text(h)})")
    if v.outcome == st.INCONCLUSIVE:
        if d.n < 2:
            text += "; fewer than two shared seeds decide nothing"
        elif v.seeds_needed is not None:
            text += f"; about {v.seeds_needed} seeds would decide it at this spread"
        else:
            text += "; at this mean no number of seeds would decide it"
    elif v.outcome == st.UNINFORMATIVE:
        text += (f"; the interval alone would say {v.decision.outcome}, but the setting is uninformative: "
                 + "; ".join(v.reasons))
    return text + "."


def hypothesis_parts(verdicts: Sequence["st.Verdict"]) -> List[Part]:
    """One claim part per verdict: its word (``OUTCOME_WORDS``) and ``verdict_text``."""
    parts = []
    for v in verdicts:
        name = v.hypothesis.name + (f" ({_setting_text(v.setting)})" if v.setting else "")
        parts.append(Part(name, OUTCOME_WORDS[v.outcome], verdict_text(v)))
    return parts


def verdict_summary(verdicts: Sequence["st.Verdict"]) -> str:
    """The summary table's figure: per hypothesis, its interval (one setting) or its outcomes (several)."""
    out = []
    by_name: Dict[str, list] = {}
    for v in verdicts:
        by_name.setdefault(v.hypothesis.name, []).append(v)
    for name, vs in by_name.items():
        if len(vs) == 1:
            d = vs[0].difference
            if d is not None and d.n >= 2:
                out.append(f"{name}: {d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}] {vs[0].hypothesis.metric}, "
                           f"n={d.n} ({vs[0].outcome})")
            else:
                out.append(f"{name}: {vs[0].outcome}")
        else:
            counts = {o: sum(v.outcome == o for v in vs) for o in st.OUTCOMES}
            out.append(f"{name}: " + ", ".join(f"{k} {o}" for o, k in counts.items() if k) + " settings")
    return "; ".join(out)


def _metrics_of(study, acc) -> List[str]:
    out = [h.metric for h in study.hypotheses]
    primary = metric_of(acc)
    if primary:
        out.append(primary)
    return [m for m in dict.fromkeys(out) if _num(acc, m).notna().any()]


def accuracy_table(study, df) -> str:
    """Every trained (setting, head) of a study: the hypotheses' metrics as mean ± std over seeds, n, the
    recorded chance level and how far the queries moved (when the rows have them), training seconds per cell."""
    acc = accuracy_rows(df)
    if not len(acc):
        return ""
    metrics = _metrics_of(study, acc)
    chance = [m for m in metrics if _num(acc, f"{m}_chance").notna().any()]
    shift = _num(acc, "query_shift").notna().any()
    rows = []
    keys = ["backbone", "dataset", "img_size", "epochs", "head"]
    for k, g in acc.groupby(keys, sort=False):
        r = [_code(k[0]), _code(k[1]), _f(k[2], 0), _f(k[3], 0), _code(k[4])]
        stats = [stat(g[m]) for m in metrics]
        # n of the first metric the setting has: a table of map and top1 rows counts top-1 seeds on top-1 rows
        r += [str(s) for s in stats] + [next((s.n for s in stats if s.n), 0) if metrics else len(g)]
        r += [_f(_num(g, f"{m}_chance").mean(), 1) for m in chance]
        if shift:
            r.append(_f(_num(g, "query_shift").mean(), 3))
        r.append(_f(_num(g, "train_s").mean(), 0))
        rows.append(r)
    headers = (["backbone", "dataset", "px", "epochs", "head"] + [f"{m} (%)" for m in metrics] + ["n"]
               + [f"{m} chance" for m in chance] + (["query shift"] if shift else []) + ["train s / cell"])
    return ("**Accuracy** (CPU-scale proxy; mean ± std over seeds, last epoch; chance: a constant predictor on the "
            "evaluation split; query shift: ||q - q0|| / ||q0|| after training).\n\n" + md_table(headers, rows))


def training_time(df) -> Tuple[float, int]:
    """(sum of the rows' train_s, trained cells) of a study's accuracy rows: the CPU time its training took."""
    if df is None:
        return 0.0, 0
    acc = accuracy_rows(df)
    return float(_num(acc, "train_s").fillna(0).sum()), len(acc)


def _time_text(df) -> str:
    secs, cells = training_time(df)
    if not cells:
        return "*Training time:* none (cost rows only)."
    return (f"*Training time:* {secs:.0f} s ({secs / 60:.1f} min) over {cells} trained cells (sum of the rows' "
            "`train_s`).")


def _study_plot(ctx: "Context", study, df) -> Optional[str]:
    """A bar plot of a study's first hypothesis metric per (setting, head), for studies without claim code."""
    acc = accuracy_rows(df)
    metrics = _metrics_of(study, acc)
    if not len(acc) or not metrics:
        return None
    labels, stats = [], []
    for (bb, ds, size, head), g in acc.groupby(["backbone", "dataset", "img_size", "head"], sort=False):
        if _num(g, metrics[0]).notna().any():
            labels.append(f"{bb} {_f(size, 0)}px\n{_short(head)}")
            stats.append(stat(g[metrics[0]]))
    return _bars(ctx.out_dir, f"study_{study.name}.png", labels, stats, f"{metrics[0]} (%), mean ± std",
                 f"{study.name} (CPU proxy)")


def add_study(c: Claim, study, df, ctx: "Context", plot: bool = False) -> List["st.Verdict"]:
    """Append a study's generic section to its claim: accuracy table, training time, one part per verdict."""
    verdicts = st.evaluate(study, df)
    if study.name not in c.studies:
        c.studies.append(study.name)
    if df is not None:
        table = accuracy_table(study, df)
        if table:
            acc = accuracy_rows(df)
            c.body.append(f"`{study.name}`: " + table + "\n\n" + _proxy_line(acc))
        c.body.append(f"`{study.name}`: " + _time_text(df))
        if plot and ctx.make_plots:
            name = _study_plot(ctx, study, df)
            if name:
                c.plots.append(name)
    c.parts += hypothesis_parts(verdicts)
    return verdicts


def _pooling_section(df, out_dir, compute_df, make_plots):
    from .report_pooling import pooling_section

    return pooling_section(df, out_dir, compute_df=compute_df, make_plots=make_plots)


def _memory_section(df, out_dir, compute_df, make_plots):
    from .report_memory import memory_section

    text, plots = memory_section(df, out_dir) if make_plots else (memory_section(df, out_dir)[0], [])
    return text, [os.path.basename(p) for p in plots]


# Sections a study adds beyond the generic verdicts and table (its own figures), by study name.
STUDY_SECTIONS = {"pooling": _pooling_section, "classes": _memory_section}


def build_claims(ctx: "Context") -> List[Claim]:
    """Every claim: its claim code (when it has some) and, for each of its registered studies, the verdicts of
    the study's hypotheses."""
    from .studies import get_study

    by_claim: Dict[int, List[str]] = {}
    for name in ctx.studies:
        if get_study(name).claim is not None:  # a study beyond the paper's claims has its own part
            by_claim.setdefault(get_study(name).claim, []).append(name)
    claims = []
    for number in sorted(set(CLAIM_CODE) | set(by_claim)):
        names = by_claim.get(number, [])
        code = CLAIM_CODE.get(number)
        if code is not None:
            c = code(ctx)
        else:
            first = get_study(names[0])
            c = Claim(number, first.statement, [])
        verdicts = []
        for name in names:
            verdicts += add_study(c, get_study(name), ctx.studies.get(name), ctx, plot=code is None)
            section = STUDY_SECTIONS.get(name)
            if section is not None and ctx.studies.get(name) is not None:
                text, plots = section(ctx.studies[name], ctx.out_dir, ctx.studies.get("compute"), ctx.make_plots)
                c.body.append(text.strip())
                c.plots += plots
        acc_figure = verdict_summary(verdicts)
        if acc_figure:
            c.suite_figure = acc_figure if c.suite_figure in ("", "—") else f"{c.suite_figure}; {acc_figure}"
        claims.append(c)
    return claims


@dataclass
class Section:
    """The part of the report of a study that tests no claim of the paper: its own section's text and plots."""

    study: str
    text: str = ""
    plots: List[str] = field(default_factory=list)


def build_sections(ctx: "Context") -> List[Section]:
    """The studies beyond the paper's claims (``claim`` None), each rendered by its own ``section``."""
    from .studies import get_study

    out = []
    for name, df in ctx.studies.items():
        study = get_study(name)
        if study.claim is not None:
            continue
        sec = Section(name)
        if df is not None and study.section is not None:
            sec.text, sec.plots = study.section(df, ctx.out_dir, ctx.make_plots)
            sec.text += "\n\n" + _time_text(df)
        elif df is not None:  # no section of its own: the generic table and verdicts
            c = Claim(0, study.statement, [])
            add_study(c, study, df, ctx, plot=True)
            sec.text = "\n\n".join(c.body + [f"- {p.name}: **{p.verdict}**: {p.why}" for p in c.parts])
            sec.plots = c.plots
        out.append(sec)
    return out


# ------------------------------------------------------------------------------------------------- the report

def load_studies(results_dir: str) -> Dict[str, object]:
    """name -> rows of ``<results_dir>/study-<name>.csv`` (None when the file is missing or empty), each ok
    measurement once (``results.unique_rows``: a file written by an older version may hold a row twice)."""
    import pandas as pd

    from .results import read_results, unique_rows
    from .studies import get_study, list_studies

    out = {}
    for name in sorted(list_studies(), key=lambda n: (get_study(n).claim is None, get_study(n).claim or 0, n)):
        path = os.path.join(results_dir, f"study-{name}.csv")
        df = read_results([path]) if os.path.isfile(path) and os.path.getsize(path) > 0 else None
        if df is not None:  # a measurement counts once, however often a file holds it; failures are kept
            df = pd.concat([unique_rows(df), df[df["status"].astype(str) != "ok"]], ignore_index=True)
        out[name] = df
    return out


def load_paper(paper_dir: Optional[str]):
    """The paper's figures as rows (every CSV in ``paper_dir``); empty when there is none."""
    import pandas as pd

    from .results import COLUMNS, read_results

    if not paper_dir or not os.path.isdir(paper_dir):
        return pd.DataFrame(columns=COLUMNS)
    df = read_results([paper_dir])
    return df


def _show_path(p: str) -> str:
    if not os.path.isabs(p):
        return os.path.normpath(p)
    rel = os.path.relpath(p)
    return rel if not rel.startswith("..") else p


def _environment(studies: Dict[str, object]) -> str:
    rows = []
    fields = ("cpu", "gpu", "threads", "torch_version", "timm_version", "bench_version", "git_commit")
    seen = {f: [] for f in fields}
    for name, df in studies.items():
        if df is None:
            rows.append([name, "—", "—", "—", "—", "—"])
            continue
        ok, bad = len(ok_rows(df)), len(failed_rows(df))
        ts = sorted(str(t)[:10] for t in df["timestamp"].dropna().astype(str) if t and t != "nan")
        dates = (ts[0] if ts[0] == ts[-1] else f"{ts[0]} to {ts[-1]}") if ts else "—"
        commits = ", ".join(sorted({str(v) for v in df["git_commit"].dropna().astype(str)})) or "—"
        secs, cells = training_time(df)
        rows.append([name, ok, bad, dates, commits, f"{secs:.0f}" if cells else "— (cost only)"])
        for f in fields:
            for v in df[f].dropna():
                s = str(int(v)) if f == "threads" and isinstance(v, (int, float)) else str(v)
                if s and s != "nan" and s not in seen[f]:
                    seen[f].append(s)
    labels = dict(cpu="CPU", gpu="GPU", threads="torch threads", torch_version="torch", timm_version="timm",
                  bench_version="headbench", git_commit="git commit")
    env = [f"- {labels[f]}: {', '.join(seen[f])}" for f in fields if seen[f]]
    total = sum(training_time(df)[0] for df in studies.values())
    return ("Taken from the rows' environment columns. Training time: the sum of the rows' `train_s` (seconds "
            f"spent training; cost rows train nothing), {total:.0f} s ({total / 60:.1f} min) in all. Rows of one "
            "study may come from runs on different machines and at different loads, so these are records, not a "
            "benchmark: how long the whole set takes on a machine is what `python scripts/studies_time.py` "
            "estimates there (and measures with `--run DIR`; reports/perf/studies_time.md).\n\n"
            + "\n".join(env) + "\n\n"
            + md_table(["study", "rows ok", "rows failed", "dates", "commit", "training s"], rows))


def render_sections(sections: Sequence[Section], studies: Dict[str, object]) -> List[str]:
    """The parts of the report for studies beyond the paper's claims."""
    from .studies import get_study

    out = []
    for sec in sections:
        study = get_study(sec.study)
        out += [f"<a id=\"study-{sec.study}\"></a>", f"## Beyond the paper: {study.statement}", "",
                f"**The literature** ({_code('bench study ' + sec.study)}): {study.paper}", ""]
        if study.notes:
            out += [f"*About this study:* {study.notes}", ""]
        if studies.get(sec.study) is None:
            out += [f"**Not run yet:** `bench study {sec.study}`", ""]
            continue
        out += [sec.text, ""]
        for p in sec.plots:
            out += [f"![{sec.study}]({p})", ""]
    return out


def render(claims: Sequence[Claim], studies: Dict[str, object], commands: Dict[str, str],
           sections: Sequence[Section] = ()) -> str:
    """The README text."""
    out = ["# ML-Decoder's claims, tested by headbench", "",
           "Each claim of *ML-Decoder: Scalable and Versatile Classification Head* (Ridnik et al., WACV 2023) "
           "with the paper's figure, this suite's figure, the rows behind it and a verdict computed by the rule "
           "written next to it. Cost claims are measured on exactly the paper's models (random weights: MACs, "
           "params and latency do not depend on them). Accuracy claims are tested on the " + PROXY_NOTE + " Every "
           "accuracy table says which rows it shows. A proxy verdict says whether the claim holds at that scale, "
           "not whether the "
           "paper's numbers reproduce.", "",
           "This file is generated by `bench report`, a pure function of the result files: it runs no model. "
           "Every number below comes from a row.", "",
           "## How this report was made", "", "```"]
    for name in studies:
        out.append(f"bench study {name}" + ("" if studies.get(name) is not None else "    # not run yet"))
    out += [commands["report"], "```", "",
            f"The study files used are copied to `{commands['copied']}`; to rebuild this report from them: "
            f"`{commands['regenerate']}`.", "", "## Environment", "", _environment(studies), "",
            "## Summary", "",
            "Accuracy verdicts come from the hypotheses each study declares beside its grid (`bench/studies/`), "
            "decided by `bench.stats`: heads are compared seed by seed (every head of a seed shares the "
            "backbone's initial weights and the data order), by the mean of the per-seed differences (variant "
            "minus reference) and its 95% Student-t interval, against a margin stated in the study. *not worse* "
            "holds when the whole interval lies above minus the margin and fails when it lies below; *better* "
            "holds when it lies above the margin (0 unless stated) and fails when it lies below. Anything else is "
            "*inconclusive*, with the number of seeds at which the observed spread would decide; fewer than two "
            "shared seeds decide nothing. A setting is *uninformative*, never support, when its reference is "
            "less than a stated amount above the chance level (a constant predictor on the evaluation split, or "
            "a control run) or when two variants compared as the same did not really differ (how far learnable "
            "queries moved). A supported hypothesis counts as *reproduced*, a contradicted one as *not "
            "reproduced*. Cost parts follow the rules written beside them.", "",
            COMBINE_RULE, ""]
    summary = [[f"[{c.number}](#claim-{c.number})", c.statement, c.paper_figure, c.suite_figure,
                f"**{c.verdict}**"] for c in claims]
    out += [md_table(["claim", "statement", "paper's figure", "this suite's figure", "verdict"], summary), ""]
    from .studies import get_study

    for c in claims:
        out += [f"<a id=\"claim-{c.number}\"></a>", f"## Claim {c.number}: {c.statement}", ""]
        for name in c.studies:
            study = get_study(name)
            out += [f"**The paper** ({_code('bench study ' + name)}): {study.paper}", ""]
            if study.notes:
                out += [f"*About this study:* {study.notes}", ""]
        missing = [n for n in c.studies if studies.get(n) is None]
        if missing:
            out += ["**Not run yet:** " + ", ".join(f"`bench study {n}`" for n in missing), ""]
        out += [f"**This suite:** {c.suite_figure}", ""]
        for block in c.body:
            out += [block, ""]
        for p in c.plots:
            out += [f"![claim {c.number}]({p})", ""]
        out += [f"**Verdict: {c.verdict}.**", ""]
        for p in c.parts:
            out.append(f"- {p.name}: **{p.verdict}**: {p.why}" + (f" *Rule:* {p.rule}." if p.rule else ""))
        out.append("")
    out += render_sections(sections, studies)
    return "\n".join(out).rstrip() + "\n"


def build_report(results_dir: str = "results/runs", out_dir: str = "reports/paper",
                 paper_dir: Optional[str] = "results/paper", make_plots: bool = True) -> Dict[str, object]:
    """Write ``<out_dir>/README.md``, its PNGs and copies of the study files used (``<out_dir>/results/``).

    Returns ``dict(readme=path, plots=[...], copied=[...], verdicts={claim: word})``. Raises ValueError when the
    results dir does not exist.
    """
    if not os.path.isdir(results_dir):
        raise ValueError(f"no results dir {results_dir!r}: run `bench study NAME` first (or pass --results-dir)")
    studies = load_studies(results_dir)
    paper = load_paper(paper_dir)
    os.makedirs(out_dir, exist_ok=True)
    ctx = Context(studies, paper, out_dir, make_plots)
    claims = build_claims(ctx)
    sections = build_sections(ctx)
    copy_dir = os.path.join(out_dir, "results")
    copied = []
    for name, df in studies.items():
        if df is None:
            continue
        src = os.path.join(results_dir, f"study-{name}.csv")
        dst = os.path.join(copy_dir, f"study-{name}.csv")
        os.makedirs(copy_dir, exist_ok=True)
        if not (os.path.exists(dst) and os.path.samefile(src, dst)):
            shutil.copyfile(src, dst)
        copied.append(dst)
    out_show = _show_path(out_dir)
    cmd = ["bench report"]
    if _show_path(results_dir) != os.path.normpath("results/runs"):
        cmd.append(f"--results-dir {_show_path(results_dir)}")
    if out_show != os.path.normpath("reports/paper"):
        cmd.append(f"--out {out_show}")
    if paper_dir and _show_path(paper_dir) != os.path.normpath("results/paper"):
        cmd.append(f"--paper {_show_path(paper_dir)}")
    regen = f"bench report --results-dir {os.path.join(out_show, 'results')}"
    if out_show != os.path.normpath("reports/paper"):
        regen += f" --out {out_show}"
    commands = dict(report=" ".join(cmd), copied=os.path.join(out_show, "results") + "/", regenerate=regen)
    text = render(claims, studies, commands, sections)
    readme = os.path.join(out_dir, "README.md")
    with open(readme, "w") as f:
        f.write(text)
    plots = [p for c in claims for p in c.plots] + [p for sec in sections for p in sec.plots]
    return dict(readme=readme, plots=[os.path.join(out_dir, p) for p in plots], copied=copied,
                verdicts={c.number: c.verdict for c in claims})
