"""What a study's report section is made of: the verdict words and how a claim's parts combine, the claim's
data types, numbers read from result rows (cost points, log-log slopes, head labels), and the formatting and
plotting helpers the sections share.

It sits below both the studies (``bench/studies/<name>.py`` build their sections from it) and the renderer
(``bench.report.render``, which asks each study for its section): it imports neither, and neither torch nor timm.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..analysis import stats as st
# the one view of rows, re-exported for the sections (a head's series across N is its family)
from ..analysis.rows import (  # noqa: F401
    accuracy_rows, failed_rows, head_family as series_label, metric_of, num, ok_rows)
from ..spec import format_spec, parse_spec
from .fmt import fmt_pm, md_table  # noqa: F401  (md_table re-exported for the sections)
from .plots import _plt as pyplot  # pyplot on the Agg backend, loaded by the first plot (slow to import)

REPRODUCED = "reproduced"
PARTLY = "partly reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
UNINFORMATIVE = "uninformative"  # a part's word only: the setting cannot tell (reference near chance, ...)
NOT_TESTABLE = "not testable here"
NOT_RUN = "not run yet"
INSUFFICIENT = "insufficient data"  # a part's word only: rows exist but cannot decide (one point)
# A hypothesis' outcome (bench.analysis.stats) as a part's word.
OUTCOME_WORDS = {st.SUPPORTED: REPRODUCED, st.CONTRADICTED: NOT_REPRODUCED, st.INCONCLUSIVE: INCONCLUSIVE,
                 st.UNINFORMATIVE: UNINFORMATIVE, st.NOT_RUN: NOT_RUN}
COMBINE_RULE = ("A claim gets one word per rung and one for its rules, and no word combines rungs: each rung's word "
                "combines that rung's hypothesis parts (each hypothesis in each setting) only, the rules' word the "
                "cost and coverage parts (measured on the paper's models, or about what runs). Each word is "
                "*reproduced* when every part is; *not reproduced* when at least one part is and none is "
                "reproduced; *partly reproduced* when some parts are reproduced and others are not, are "
                "inconclusive, uninformative or cannot be tested here; *inconclusive* when no part is decided "
                "either way and at least one is inconclusive (more seeds would decide it); otherwise *not run "
                "yet* (a study is missing) or *not testable here* (every part uninformative or needing data this "
                "machine lacks). A claim reproduced on one rung and not on another says so in the summary's last "
                "column.")

DEFAULT_GROUPS = 100  # ML-Decoder's K = min(groups, N) when `groups` is not given


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
    """One testable part of a claim: its verdict word, why (numbers from rows) and the rule applied.

    ``rung`` is the rung of evidence (``bench.studies.RUNGS``) of a hypothesis part (the renderer sets it); None
    for a rule part (a cost or coverage rule a study's ``claim_code`` decides on the paper's models or on what
    runs), which belongs to no accuracy rung. A ``claim_code`` whose part stands on one rung's models only (a
    rung's own speed-accuracy trade-off) names that rung, so that it counts there and not among the rules.
    """

    name: str
    verdict: str
    why: str
    rule: str = ""
    rung: Optional[str] = None


@dataclass
class Claim:
    """One claim's section: the studies testing it, the paper's figure, markdown blocks, plots and the parts whose
    words make its verdicts, one per rung and one for the rules (never one across rungs).

    ``suite_figure`` is the rules' figure (a study's ``claim_code`` sets it). The renderer fills the rest:
    ``rule_studies`` names the studies whose code added rule parts, ``rung_studies`` the studies on each rung and
    ``rung_figures`` each rung's figure (the intervals of its verdicts).
    """

    number: int
    statement: str
    studies: List[str]
    paper_figure: str = "—"
    suite_figure: str = "—"
    parts: List[Part] = field(default_factory=list)
    body: List[str] = field(default_factory=list)  # markdown blocks
    plots: List[str] = field(default_factory=list)  # PNG file names in the out dir
    rule_studies: List[str] = field(default_factory=list)
    rung_studies: Dict[str, List[str]] = field(default_factory=dict)  # rung -> studies, in ``RUNGS`` order
    rung_figures: Dict[str, str] = field(default_factory=dict)  # rung -> its verdicts' intervals

    @property
    def rule_parts(self) -> List[Part]:
        return [p for p in self.parts if p.rung is None]

    @property
    def rules_verdict(self) -> Optional[str]:
        """The word of the cost and coverage parts; None when the claim has none."""
        parts = self.rule_parts
        return combine(parts) if parts else None

    @property
    def rung_verdicts(self) -> Dict[str, str]:
        """rung -> the word of that rung's hypothesis parts alone, for each rung a study of the claim stands on."""
        return {rung: combine([p for p in self.parts if p.rung == rung]) for rung in self.rung_studies}

    @property
    def verdicts(self) -> Dict[str, str]:
        """The claim's words: "rules" (when it has rule parts), then one per rung; nothing combines them."""
        rules = self.rules_verdict
        return {**({"rules": rules} if rules is not None else {}), **self.rung_verdicts}


@dataclass
class Context:
    """What a study's report code may read: every study's rows, the paper's rows, where plots go."""

    studies: Dict[str, object]  # name -> DataFrame, or None when the study file is missing
    paper: object  # the paper's rows (DataFrame, maybe empty)
    out_dir: str
    make_plots: bool = True


def combine(parts: Sequence[Part]) -> str:
    """One word of a claim (a rung's, or its rules') from its parts' words (``COMBINE_RULE`` says it in words, in
    the report). The caller picks the parts: never those of several rungs together.

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


def combine_checks(words: Sequence[str]) -> str:
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


def not_run_part(name: str, study: str) -> Part:
    return Part(name, NOT_RUN, f"`bench study {study}`")


# ------------------------------------------------------------------------------------------ numbers and rules

def cost_rule(study, name: str) -> float:
    """A threshold of a study's cost rule (``Study.cost_rules``); ValueError naming the valid ones."""
    rules = study.cost_rules
    if name not in rules:
        raise ValueError(f"study {study.name!r} has no cost rule {name!r}; valid: "
                         f"{', '.join(sorted(rules)) or 'none'}")
    return float(rules[name])


def stat(values) -> Stat:
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


# ---------------------------------------------------------------------------------------------- row helpers

def failures(df) -> str:
    """One line on a study's failed rows (how many, the first error), empty when none failed."""
    bad = failed_rows(df)
    if not len(bad):
        return ""
    first = str(bad["error"].dropna().iloc[0])[:200] if bad["error"].notna().any() else ""
    return f"{len(bad)} row(s) failed (first error: {first})."


COST_COLUMNS = ["gmacs_head", "gmacs_total", "gmacs_backbone", "params_head", "params_total", "latency_ms_b1",
                "head_ms_b1", "backbone_ms_b1", "throughput_img_s", "timing_batch"]


def cost_points(df):
    """One row per (backbone, head, img_size, num_classes) of the cost cells (no seed): GMACs and params, and
    when timed the latency and head time at the smallest batch and the throughput at the largest."""
    ok = ok_rows(df)
    cost = ok[num(ok, "seed").isna() & num(ok, "gmacs_head").notna()].copy()
    # A training configuration also measures the cost of what it trains (the CPU proxy's backbone and heads):
    # those rows belong to its accuracy table, not to the cost tables of the paper's models.
    trained = {(r["backbone"], r["head"]) for r in accuracy_rows(df)[["backbone", "head"]].to_dict("records")}
    cost = cost[[(b, h) not in trained for b, h in zip(cost["backbone"], cost["head"])]]
    out = []
    keys = ["backbone", "head", "img_size", "num_classes"]
    for c in ("img_size", "num_classes"):
        cost[c] = num(cost, c)
    for k, g in cost.groupby(keys, sort=False):
        r = dict(zip(keys, k))
        for c in ("gmacs_head", "gmacs_total", "gmacs_backbone", "params_head", "params_total"):
            r[c] = float(num(g, c).dropna().iloc[0]) if num(g, c).notna().any() else math.nan
        timed = g[num(g, "latency_ms_p50").notna()]
        if len(timed):
            bs = num(timed, "batch_size")
            b1 = timed[bs == bs.min()]
            bmax = timed[bs == bs.max()]
            r["latency_ms_b1"] = float(num(b1, "latency_ms_p50").median())
            r["head_ms_b1"] = float(num(b1, "head_ms_p50").median())
            r["backbone_ms_b1"] = float(num(b1, "backbone_ms_p50").median())
            r["throughput_img_s"] = float(num(bmax, "throughput_img_s").median())
            r["timing_batch"] = int(bs.max())
        out.append(r)
    return pd.DataFrame(out, columns=keys + COST_COLUMNS)


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


def series_points(cost, series: str, y: str = "gmacs_head") -> Tuple[list, list]:
    """(N, y) of one series of ``cost_points`` with a ``series`` column, in order of N: a line of a plot."""
    g = cost[cost["series"] == series].sort_values("num_classes")
    return list(g["num_classes"]), list(g[y])


# ------------------------------------------------------------------------------------------------ rendering

def fmt_num(v, digits=2, suffix="") -> str:
    """A number with ``digits`` decimals (and ``suffix``); "—" when missing or not finite."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "—"
    if not np.isfinite(v):
        return "—"
    return f"{v:.{digits}f}{suffix}"


def fmt_signed(v, digits=1) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:+.{digits}f}"


def code(s) -> str:
    return f"`{s}`"


def proxy_line(rows, label: str) -> str:
    """What the accuracy rows are: ``label`` (their rung), dataset, backbone, protocol, epochs, size, seeds (read
    from the rows)."""
    if not len(rows):
        return ""
    seeds = sorted({int(s) for s in num(rows, "seed").dropna()})
    parts = []
    for (ds, bb, proto, ep, size), _ in rows.groupby(["dataset", "backbone", "protocol", "epochs", "img_size"],
                                                     sort=False):
        parts.append(f"{code(ds)}, {code(bb)} ({proto}, {int(float(ep))} epochs, {int(float(size))} px)")
    return (f"Accuracy rows ({label}): " + "; ".join(parts) + f"; seeds {', '.join(map(str, seeds))}; "
            "mean ± std over seeds of the last epoch.")


def short_label(head: str) -> str:
    """A head label without the CPU-scale widths, for plot ticks (tables keep the full label)."""
    name, opts = head_options(head)
    return format_spec(name, {k: v for k, v in opts.items() if k not in ("embed", "ffn", "heads")})


def save_png(fig, out_dir: str, name: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    fig.savefig(os.path.join(out_dir, name), dpi=110, bbox_inches="tight", metadata={"Software": None})
    pyplot().close(fig)
    return name


def bars(out_dir: str, name: str, labels: Sequence[str], stats: Sequence[Stat], ylabel: str, title: str,
         colors: Optional[Sequence[str]] = None) -> str:
    """A bar plot of means with std error bars, written as ``out_dir/name``; returns ``name``."""
    plt = pyplot()
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
    return save_png(fig, out_dir, name)


def lines_plot(out_dir: str, name: str, series: Dict[str, Tuple[list, list]], xlabel: str, ylabel: str,
               title: str) -> str:
    """One line per series on log-log axes, written as ``out_dir/name``; returns ``name``."""
    plt = pyplot()
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
    return save_png(fig, out_dir, name)
