"""`bench report`: the ML-Decoder paper's claims, one section each, with the paper's statement and figure, this
suite's figure, tables, plots and verdicts; then the studies beyond the paper, each its own part.

A pure function of result files: it reads the study files ``<results-dir>/study-<name>.csv`` and the paper's
figures (``results/paper/*.csv``), never builds or runs a model, and imports neither torch nor timm. Every number
in the report comes from a row.

This module only loads rows, asks each registered study for its section and renders it; it names no study and
no claim. A study's own report code lives in its file (``bench/studies/<name>.py``, built from
``bench.report.kit``): ``claim_code`` adds the paper's figure, cost tables, the parts its cost rules decide and plots
to its claim, ``claim_section`` a section after its verdicts, ``section`` the whole part of a study beyond the
paper's claims. What every study gets with no code is here: its accuracy table, training time and one part per
verdict of its hypotheses (``bench.studies.Hypothesis``, decided by ``bench.analysis.stats.evaluate``, never here).

Verdict words: "reproduced", "partly reproduced", "not reproduced", "inconclusive", "not testable here", "not run
yet". A claim has parts (a cost rule, each hypothesis in each setting); each part gets a word. A claim's accuracy
studies stand on rungs of evidence (``bench.studies.RUNGS``: from scratch on synthetic data, pretrained and frozen on
real images, fine-tuned): each rung's word combines that rung's hypothesis parts, the rules' word the parts its
studies' ``claim_code`` decides (``bench.report.kit.combine``), and no word combines rungs: the report shows them
side by side.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd

from ..analysis import stats as st
from ..analysis.rows import status_is, unique_rows
from ..analysis.stats import accuracy_rows
from ..run.results import COLUMNS, read_results
from ..studies import RUNGS, get_study, list_studies
from .fmt import md_table
from .kit import (COMBINE_RULE, INCONCLUSIVE,  # noqa: F401  (the verdict words re-exported: the report's vocabulary)
                  INSUFFICIENT, NOT_REPRODUCED, NOT_RUN, NOT_TESTABLE, OUTCOME_WORDS, PARTLY, REPRODUCED, UNINFORMATIVE,
                  Claim, Context, Part, bars, code, failed_rows, fmt_num, fmt_signed, metric_of, num, ok_rows,
                  proxy_line, short_label, stat)

PROXY_NOTE = ("CPU-scale proxy: the embedded `scenes` data (synthetic multi-label images) or Fashion-MNIST, a "
              "tiny timm backbone trained from scratch on this CPU; not the paper's benchmark (COCO, pretrained "
              "TResNets, GPUs).")


# ------------------------------------------------------------------------------------- verdicts, generically

def _setting_text(setting: Dict[str, object]) -> str:
    bits = []
    for k, v in setting.items():
        if k == "img_size" and fmt_num(v, 0) != "—":
            bits.append(f"{fmt_num(v, 0)} px")
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
    text += f". {m} {fmt_num(v.variant_mean, 1)} (variant) vs {fmt_num(v.reference_mean, 1)} (reference); "
    if d.n >= 2:
        text += (f"paired difference {d.mean:+.2f} {m}, 95% interval [{d.low:+.2f}, {d.high:+.2f}], margin "
                 f"{h.margin:g} ({_test_text(h)}), n={d.n}")
    else:
        text += (f"paired difference {fmt_signed(d.mean, 2)} {m} over n={d.n} shared seed(s): no interval, margin "
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


def hypothesis_parts(verdicts: Sequence["st.Verdict"], rung: str) -> List[Part]:
    """One claim part per verdict, on ``rung``: its word (``OUTCOME_WORDS``) and ``verdict_text``."""
    parts = []
    for v in verdicts:
        name = v.hypothesis.name + (f" ({_setting_text(v.setting)})" if v.setting else "")
        parts.append(Part(name, OUTCOME_WORDS[v.outcome], verdict_text(v), rung=rung))
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
    return [m for m in dict.fromkeys(out) if num(acc, m).notna().any()]


def accuracy_table(study, df) -> str:
    """Every trained (setting, head) of a study: the hypotheses' metrics as mean ± std over seeds, n, the
    recorded chance level and how far the queries moved (when the rows have them), training seconds per cell."""
    acc = accuracy_rows(df)
    if not len(acc):
        return ""
    metrics = _metrics_of(study, acc)
    chance = [m for m in metrics if num(acc, f"{m}_chance").notna().any()]
    shift = num(acc, "query_shift").notna().any()
    rows = []
    keys = ["backbone", "dataset", "img_size", "epochs", "head"]
    for k, g in acc.groupby(keys, sort=False):
        r = [code(k[0]), code(k[1]), fmt_num(k[2], 0), fmt_num(k[3], 0), code(k[4])]
        stats = [stat(g[m]) for m in metrics]
        # n of the first metric the setting has: a table of map and top1 rows counts top-1 seeds on top-1 rows
        r += [str(s) for s in stats] + [next((s.n for s in stats if s.n), 0) if metrics else len(g)]
        r += [fmt_num(num(g, f"{m}_chance").mean(), 1) for m in chance]
        if shift:
            r.append(fmt_num(num(g, "query_shift").mean(), 3))
        r.append(fmt_num(num(g, "train_s").mean(), 0))
        rows.append(r)
    headers = (["backbone", "dataset", "px", "epochs", "head"] + [f"{m} (%)" for m in metrics] + ["n"]
               + [f"{m} chance" for m in chance] + (["query shift"] if shift else []) + ["train s / cell"])
    return (f"**Accuracy** ({RUNGS[study.rung]}; mean ± std over seeds, last epoch; chance: a constant predictor on "
            "the evaluation split; query shift: ||q - q0|| / ||q0|| after training).\n\n" + md_table(headers, rows))


def training_time(df) -> Tuple[float, int]:
    """(sum of the rows' train_s, trained cells) of a study's accuracy rows: the CPU time its training took."""
    if df is None:
        return 0.0, 0
    acc = accuracy_rows(df)
    return float(num(acc, "train_s").fillna(0).sum()), len(acc)


def _time_text(df) -> str:
    secs, cells = training_time(df)
    if not cells:
        return "*Training time:* none (cost rows only)."
    return (f"*Training time:* {secs:.0f} s ({secs / 60:.1f} min) over {cells} trained cells (sum of the rows' "
            "`train_s`).")


def _study_plot(ctx: Context, study, df) -> Optional[str]:
    """A bar plot of a study's first hypothesis metric per (setting, head), for studies without claim code."""
    acc = accuracy_rows(df)
    metrics = _metrics_of(study, acc)
    if not len(acc) or not metrics:
        return None
    labels, stats = [], []
    for (bb, ds, size, head), g in acc.groupby(["backbone", "dataset", "img_size", "head"], sort=False):
        if num(g, metrics[0]).notna().any():
            labels.append(f"{bb} {fmt_num(size, 0)}px\n{short_label(head)}")
            stats.append(stat(g[metrics[0]]))
    return bars(ctx.out_dir, f"study_{study.name}.png", labels, stats, f"{metrics[0]} (%), mean ± std",
                 f"{study.name} ({RUNGS[study.rung]})")


def add_study(c: Claim, study, df, ctx: Context, plot: bool = False,
              show_rung: bool = False) -> List["st.Verdict"]:
    """Append a study's generic section to its claim: accuracy table, training time, one part per verdict (on the
    study's rung). Its blocks start with the study's name, and with its rung's label when ``show_rung`` (a claim
    on several rungs)."""
    verdicts = st.evaluate(study, df)
    if study.name not in c.studies:
        c.studies.append(study.name)
    if df is not None:
        tag = (f"*{RUNGS[study.rung]}*, " if show_rung else "") + f"`{study.name}`: "
        table = accuracy_table(study, df)
        if table:
            acc = accuracy_rows(df)
            c.body.append(tag + table + "\n\n" + proxy_line(acc, RUNGS[study.rung]))
        c.body.append(tag + _time_text(df))
        if plot and ctx.make_plots:
            name = _study_plot(ctx, study, df)
            if name:
                c.plots.append(name)
    c.parts += hypothesis_parts(verdicts, study.rung)
    return verdicts


# ------------------------------------------------------------------------------------------ claims and parts

def build_claims(ctx: Context) -> List[Claim]:
    """Every claim of the registered studies, in the order of its number (``Study.claim``); a claim's studies in
    the order of their rungs (``RUNGS``), then of their names."""
    by_claim: Dict[int, list] = {}
    for name in ctx.studies:
        study = get_study(name)
        if study.claim is not None:  # a study beyond the paper's claims has its own part
            by_claim.setdefault(study.claim, []).append(study)
    order = list(RUNGS)
    return [build_claim(number, sorted(by_claim[number], key=lambda s: (order.index(s.rung), s.name)), ctx)
            for number in sorted(by_claim)]


def build_claim(number: int, studies: Sequence, ctx: Context) -> Claim:
    """One claim from its studies (in rung, then name order; the first gives the statement): each study's
    ``claim_code`` (its parts are rules unless it puts them on a rung), then for each study its accuracy table,
    training time and verdicts (``add_study``: parts on the study's rung) and its ``claim_section``. A rung is the
    claim's when a study with hypotheses (or a part) stands on it; each rung's figure is the intervals of its own
    verdicts, never mixed with another rung's."""
    c = Claim(number, studies[0].statement, [])
    on_rung = {rung: [s.name for s in studies if s.rung == rung and s.hypotheses] for rung in RUNGS}
    for study in studies:
        if study.claim_code is not None:
            before = len(c.parts)
            study.claim_code(c, ctx.studies.get(study.name), ctx)
            for p in c.parts[before:]:  # a rule part names the study in the rules' row; a part on a rung, there
                if p.rung is None and study.name not in c.rule_studies:
                    c.rule_studies.append(study.name)
                elif p.rung is not None and study.name not in on_rung[p.rung]:
                    on_rung[p.rung].append(study.name)
    c.rung_studies = {rung: names for rung, names in on_rung.items() if names}
    plot = all(study.claim_code is None for study in studies)  # a claim with no code: a bar plot per study
    by_rung: Dict[str, list] = {rung: [] for rung in c.rung_studies}
    for study in studies:
        rows = ctx.studies.get(study.name)
        verdicts = add_study(c, study, rows, ctx, plot=plot, show_rung=len(c.rung_studies) > 1)
        if verdicts:
            by_rung[study.rung] += verdicts
        if study.claim_section is not None and rows is not None:
            text, plots = study.claim_section(rows, ctx)
            c.body.append(text.strip())
            c.plots += plots
    # a rung not run yet has no figure (its word says so), rather than "not run" once per hypothesis
    c.rung_figures = {rung: (verdict_summary(vs) if any(v.outcome != st.NOT_RUN for v in vs) else "") or "—"
                      for rung, vs in by_rung.items()}
    return c


@dataclass
class Section:
    """The part of the report of a study that tests no claim of the paper: its own section's text and plots."""

    study: str
    text: str = ""
    plots: List[str] = field(default_factory=list)


def build_sections(ctx: Context) -> List[Section]:
    """The studies beyond the paper's claims (``claim`` None), each rendered by its own ``section``."""
    out = []
    for name, df in ctx.studies.items():
        study = get_study(name)
        if study.claim is not None:
            continue
        sec = Section(name)
        if df is not None and study.section is not None:
            sec.text, sec.plots = study.section(df, ctx)
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
    measurement once (``rows.unique_rows``: a file written by an older version may hold a row twice)."""
    out = {}
    for name in sorted(list_studies(), key=lambda n: (get_study(n).claim is None, get_study(n).claim or 0, n)):
        path = os.path.join(results_dir, f"study-{name}.csv")
        df = read_results([path]) if os.path.isfile(path) and os.path.getsize(path) > 0 else None
        if df is not None:  # a measurement counts once, however often a file holds it; failures are kept
            df = pd.concat([unique_rows(df), df[~status_is(df, "ok")]], ignore_index=True)
        out[name] = df
    return out


TIMES = "times.csv"  # measured wall time per study (scripts/studies_time.py --run), beside the study files


def load_times(results_dir: str) -> Dict[str, dict]:
    """study -> its latest measured run (``<results_dir>/times.csv``: wall_s, rung, threads, lanes, cold_cache, cpu,
    timestamp, command), written by ``scripts/studies_time.py --run``; empty when there is none."""
    path = os.path.join(results_dir, TIMES)
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return {}
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return {r["study"]: r for r in df.to_dict("records")}  # later rows replace earlier ones


def _minutes(times: Dict[str, dict], name: str) -> str:
    r = times.get(name)
    return f"{float(r['wall_s']) / 60:.1f} min" if r and r.get("wall_s") else "—"


COLD = "; from an empty cache (feature extraction, weights, word vectors included)"


def rung_wall(rows: Sequence[dict]) -> float:
    """A rung's wall time (seconds) from its studies' rows in ``times.csv``: the studies of a lane run one after
    another and the lanes side by side, so the longest lane's sum (a row without a lane: one lane)."""
    lanes: Dict[str, float] = {}
    for r in rows:
        lane = str(r.get("lane") or "0")
        lanes[lane] = lanes.get(lane, 0.0) + float(r["wall_s"])
    return max(lanes.values(), default=0.0)


def _rung_times(times: Dict[str, dict]) -> List[str]:
    """One line per rung measured: its wall time (the longest lane's), the studies' own times summed, how they ran
    and the command."""
    out = []
    for rung, label in RUNGS.items():
        rs = [r for r in times.values() if r.get("rung") == rung]
        if not rs:
            continue
        total = sum(float(r["wall_s"]) for r in rs)
        cold = all(str(r.get("cold_cache")) == "1" for r in rs)
        failed = [r["study"] for r in rs if str(r.get("exit_code")) not in ("0", "")]
        how = ", ".join(sorted({f"{r['lanes']} lane(s) of {r['threads']} thread(s)" for r in rs}))
        out.append(f"- *{label}*: {len(rs)} {'study' if len(rs) == 1 else 'studies'} in {rung_wall(rs) / 60:.1f} min "
                   f"of wall time on {how}, each lane's studies one after another (the studies' own times sum to "
                   f"{total / 60:.1f} min){COLD if cold else ''}; on "
                   f"{', '.join(sorted({r['cpu'] for r in rs}))}, {min(r['timestamp'] for r in rs)[:10]}: "
                   f"`{rs[0]['command']}`" + (f"; exited with an error: {', '.join(failed)}" if failed else ""))
    return out


def load_paper(paper_dir: Optional[str]):
    """The paper's figures as rows (every CSV in ``paper_dir``); empty when there is none."""
    if not paper_dir or not os.path.isdir(paper_dir):
        return pd.DataFrame(columns=COLUMNS)
    df = read_results([paper_dir])
    return df


def _show_path(p: str) -> str:
    if not os.path.isabs(p):
        return os.path.normpath(p)
    rel = os.path.relpath(p)
    return rel if not rel.startswith("..") else p


def _environment(studies: Dict[str, object], times: Optional[Dict[str, dict]] = None) -> str:
    times = times or {}
    rows = []
    fields = ("cpu", "gpu", "threads", "torch_version", "timm_version", "bench_version", "git_commit")
    seen = {f: [] for f in fields}
    for name, df in studies.items():
        study = get_study(name)
        rung = study.rung if study.hypotheses else "—"  # a study without hypotheses stands on no rung
        if df is None:
            rows.append([name, rung, "—", "—", "—", "—", "—", _minutes(times, name)])
            continue
        ok, bad = len(ok_rows(df)), len(failed_rows(df))
        ts = sorted(str(t)[:10] for t in df["timestamp"].dropna().astype(str) if t and t != "nan")
        dates = (ts[0] if ts[0] == ts[-1] else f"{ts[0]} to {ts[-1]}") if ts else "—"
        commits = ", ".join(sorted({str(v) for v in df["git_commit"].dropna().astype(str)})) or "—"
        secs, cells = training_time(df)
        rows.append([name, rung, ok, bad, dates, commits, f"{secs:.0f}" if cells else "— (cost only)",
                     _minutes(times, name)])
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
            + md_table(["study", "rung", "rows ok", "rows failed", "dates", "commit", "training s", "measured wall"],
                       rows)
            + ("\n\n*Measured wall time* (`times.csv` beside the study files, written by "
               "`python scripts/studies_time.py --rung RUNG --run DIR`; the whole `bench study NAME` process, "
               "start-up, data, feature extraction, training and evaluation):\n\n" + "\n".join(_rung_times(times))
               if times else ""))


def render_sections(sections: Sequence[Section], studies: Dict[str, object]) -> List[str]:
    """The parts of the report for studies beyond the paper's claims."""
    out = []
    for sec in sections:
        study = get_study(sec.study)
        out += [f"<a id=\"study-{sec.study}\"></a>", f"## Beyond the paper: {study.statement}", "",
                f"**The literature** ({code('bench study ' + sec.study)}): {study.paper}", ""]
        if study.notes:
            out += [f"*About this study:* {study.notes}", ""]
        if studies.get(sec.study) is None:
            out += [f"**Not run yet:** `bench study {sec.study}`", ""]
            continue
        out += [sec.text, ""]
        for p in sec.plots:
            out += [f"![{sec.study}]({p})", ""]
    return out


def _intro(studies: Dict[str, object], commands: Dict[str, str], times: Optional[Dict[str, dict]] = None
           ) -> List[str]:
    """The report's opening: what it is, the commands that made it, the environment, how verdicts are made."""
    out = ["# ML-Decoder's claims, tested by headbench", "",
           "Each claim of *ML-Decoder: Scalable and Versatile Classification Head* (Ridnik et al., WACV 2023) "
           "with the paper's figure, this suite's figures, the rows behind them and verdicts computed by the rules "
           "written next to them. Cost claims are measured on exactly the paper's models (random weights: MACs, "
           "params and latency do not depend on them). Accuracy claims are tested on up to "
           f"{len(RUNGS)} rungs of evidence, each with its own verdict, side by side, and nothing averaged across "
           "them: " + "; ".join(f"*{label}*" for label in RUNGS.values()) + f". The rung *{RUNGS['scratch']}* is the "
           + PROXY_NOTE + " Every accuracy table says which rung its rows stand on. A rung's verdict says "
           "whether the claim holds there, not whether the paper's numbers reproduce; a claim that holds on one "
           "rung and not on another says so.", "",
           "This file is generated by `bench report`, a pure function of the result files: it runs no model. "
           "Every number below comes from a row.", "",
           "## How this report was made", "", "```"]
    for name in studies:
        out.append(f"bench study {name}" + ("" if studies.get(name) is not None else "    # not run yet"))
    out += [commands["report"], "```", "",
            f"The study files used are copied to `{commands['copied']}`; to rebuild this report from them: "
            f"`{commands['regenerate']}`.", "", "## Environment", "", _environment(studies, times), "",
            "## Summary", "",
            "Accuracy verdicts come from the hypotheses each study declares beside its grid (`bench/studies/`), "
            "decided by `bench.analysis.stats`: heads are compared seed by seed (every head of a seed shares the "
            "backbone's initial weights and the data order), by the mean of the per-seed differences (variant "
            "minus reference) and its 95% Student-t interval, against a margin stated in the study. *not worse* "
            "holds when the whole interval lies above minus the margin and fails when it lies below; *better* "
            "holds when it lies above the margin (0 unless stated) and fails when it lies below. Anything else is "
            "*inconclusive*, with the number of seeds at which the observed spread would decide; fewer than two "
            "shared seeds decide nothing. A setting is *uninformative*, never support, when its reference is "
            "less than a stated amount above the chance level (a constant predictor on the evaluation split, or "
            "a control run) or when two variants compared as the same did not really differ (how far learnable "
            "queries moved). A supported hypothesis counts as *reproduced*, a contradicted one as *not "
            "reproduced*. Cost and coverage parts (the *rules*) follow the rules written beside them.", "",
            COMBINE_RULE, ""]
    return out


def _cell(word: str, figure: str) -> str:
    """A verdict word and its figure, for a table cell."""
    return f"**{word}**" + (f": {figure}" if figure and figure != "—" else "")


def _agreement(c: Claim) -> str:
    """Whether the rungs that decided the claim agree: "yes", or "no" and each rung's word; "—" when fewer than
    two rungs decided it."""
    decided = {r: w for r, w in c.rung_verdicts.items() if w in (REPRODUCED, PARTLY, NOT_REPRODUCED)}
    if len(decided) < 2:
        return "—"
    if len(set(decided.values())) == 1:
        return "yes"
    return "no: " + "; ".join(f"{w} ({RUNGS[r]})" for r, w in decided.items())


def _ladder(c: Claim, times: Optional[Dict[str, dict]] = None) -> str:
    """A claim's ladder: the paper's figure, then the rules' and each rung's figure and word, one row each; a
    study's measured wall time beside its name where ``times`` has it."""
    times = times or {}

    def named(names):
        return ", ".join(code(n) + (f" ({_minutes(times, n)})" if n in times else "") for n in names)

    rows = [["the paper", "—", c.paper_figure, "—"]]
    if c.rule_parts:
        rows.append(["rules (cost, coverage)", named(c.rule_studies) or "—", c.suite_figure,
                     f"**{c.rules_verdict}**"])
    for rung, names in c.rung_studies.items():
        rows.append([RUNGS[rung], named(names), c.rung_figures[rung],
                     f"**{c.rung_verdicts[rung]}**"])
    return md_table(["rung", "studies", "figure", "verdict"], rows)


def _part_lines(parts: Sequence[Part]) -> List[str]:
    return [f"- {p.name}: **{p.verdict}**: {p.why}" + (f" *Rule:* {p.rule}." if p.rule else "") for p in parts]


def _render_claim(c: Claim, studies: Dict[str, object], times: Optional[Dict[str, dict]] = None) -> List[str]:
    """One claim's section: the paper's statement per study (under its rung's name when the claim has several),
    the ladder, body, plots, then each rung's verdict and parts and the rules' verdict and parts."""
    out = [f"<a id=\"claim-{c.number}\"></a>", f"## Claim {c.number}: {c.statement}", ""]
    several = len(c.rung_studies) > 1
    said = []  # the paper's statements already printed: a sibling rung's study often repeats its claim's
    for name in c.studies:
        study = get_study(name)
        if several and study.hypotheses:
            out += [f"*Rung: {RUNGS[study.rung]}* ({code('bench study ' + name)})", ""]
            if study.paper not in said:
                out += [f"**The paper:** {study.paper}", ""]
        else:
            out += [f"**The paper** ({code('bench study ' + name)}): {study.paper}", ""]
        said.append(study.paper)
        if study.notes:
            out += [f"*About this study:* {study.notes}", ""]
    missing = [n for n in c.studies if studies.get(n) is None]
    if missing:
        out += ["**Not run yet:** " + ", ".join(f"`bench study {n}`" for n in missing), ""]
    out += ["**The ladder** (each rung's own figure and verdict; nothing is averaged across rungs):", "",
            _ladder(c, times), ""]
    for block in c.body:
        out += [block, ""]
    for p in c.plots:
        out += [f"![claim {c.number}]({p})", ""]
    for rung, word in c.rung_verdicts.items():
        out += [f"**Verdict, {RUNGS[rung]}: {word}.**", ""] + _part_lines([p for p in c.parts if p.rung == rung])
        out.append("")
    if c.rule_parts:
        out += [f"**Rules: {c.rules_verdict}.**", ""] + _part_lines(c.rule_parts) + [""]
    return out


def render(claims: Sequence[Claim], studies: Dict[str, object], commands: Dict[str, str],
           sections: Sequence[Section] = (), times: Optional[Dict[str, dict]] = None) -> str:
    """The README text: the summary has the rules' column, a column per rung any claim stands on, and whether the
    rungs agree; ``times`` (``load_times``): each study's measured wall time, where measured."""
    out = _intro(studies, commands, times)
    rungs = [r for r in RUNGS if any(r in c.rung_studies for c in claims)]
    summary = []
    for c in claims:
        rules = _cell(c.rules_verdict, c.suite_figure) if c.rule_parts else "—"
        cells = [_cell(c.rung_verdicts[r], c.rung_figures[r]) if r in c.rung_studies else "—" for r in rungs]
        summary.append([f"[{c.number}](#claim-{c.number})", c.statement, c.paper_figure, rules] + cells
                       + [_agreement(c)])
    headers = (["claim", "statement", "paper's figure", "rules (cost, coverage)"] + [RUNGS[r] for r in rungs]
               + ["rungs agree?"])
    out += [md_table(headers, summary), ""]
    for c in claims:
        out += _render_claim(c, studies, times)
    out += render_sections(sections, studies)
    return "\n".join(out).rstrip() + "\n"


def _copy_study_files(studies: Dict[str, object], results_dir: str, out_dir: str) -> List[str]:
    """Copy the study files used, and the times measured for them, to ``<out_dir>/results/`` (so that the report
    can be rebuilt from them)."""
    copy_dir = os.path.join(out_dir, "results")
    names = [f"study-{name}.csv" for name, df in studies.items() if df is not None]
    if os.path.isfile(os.path.join(results_dir, TIMES)):  # the measured times go with the rows they timed
        names.append(TIMES)
    copied = []
    for name in names:
        src, dst = os.path.join(results_dir, name), os.path.join(copy_dir, name)
        os.makedirs(copy_dir, exist_ok=True)
        if not (os.path.exists(dst) and os.path.samefile(src, dst)):
            shutil.copyfile(src, dst)
        copied.append(dst)
    return copied


def _commands(results_dir: str, out_dir: str, paper_dir: Optional[str]) -> Dict[str, str]:
    """The command that made the report, where its study files are copied, the command that rebuilds it."""
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
    return dict(report=" ".join(cmd), copied=os.path.join(out_show, "results") + "/", regenerate=regen)


def build_report(results_dir: str = "results/runs", out_dir: str = "reports/paper",
                 paper_dir: Optional[str] = "results/paper", make_plots: bool = True) -> Dict[str, object]:
    """Write ``<out_dir>/README.md``, its PNGs and copies of the study files used (``<out_dir>/results/``).

    Returns ``dict(readme=path, plots=[...], copied=[...], verdicts={claim: {"rules": word, rung: word, ...}})``
    (``Claim.verdicts``: no word across rungs). Raises ValueError when the results dir does not exist.
    """
    if not os.path.isdir(results_dir):
        raise ValueError(f"no results dir {results_dir!r}: run `bench study NAME` first (or pass --results-dir)")
    studies = load_studies(results_dir)
    os.makedirs(out_dir, exist_ok=True)
    ctx = Context(studies, load_paper(paper_dir), out_dir, make_plots)
    claims = build_claims(ctx)
    sections = build_sections(ctx)
    copied = _copy_study_files(studies, results_dir, out_dir)
    times = load_times(results_dir)
    text = render(claims, studies, _commands(results_dir, out_dir, paper_dir), sections, times)
    readme = os.path.join(out_dir, "README.md")
    with open(readme, "w") as f:
        f.write(text)
    plots = [p for c in claims for p in c.plots] + [p for sec in sections for p in sec.plots]
    return dict(readme=readme, plots=[os.path.join(out_dir, p) for p in plots], copied=copied,
                verdicts={c.number: c.verdicts for c in claims})
