"""Regression checks: compare results with a committed baseline, metric by metric, within tolerances.

``bench check --baseline results/baselines/NAME.csv`` reads both files with ``bench.run.results.read_results`` and
calls ``compare``; it prints ``format_table`` and exits 1 when ``has_regression``.

Matching. For each baseline row, the results rows that agree on every identifier (``bench.run.results.KEY_COLUMNS``)
that is non-empty in that baseline row are candidates; an empty identifier matches anything (the paper's tables
give no batch size, a CI baseline may leave the seed open). Values are compared as normalised text, so ``448``,
``448.0`` and ``"448"`` match, as do ``True`` and ``"true"``. The latest candidate wins: latest ``timestamp``,
then the later row (files are read in run-id order, which starts with the date). That row's value of each metric
is compared with the baseline's, for each metric non-empty in the baseline row.

Statuses. Per metric, from ``METRIC_RULES`` (the one place where defaults live):
- accuracy (``map``, ``top1``, ``cf1``, ...): absolute tolerance in percentage points, higher is better:
  ``better``, ``worse`` (a regression) or ``within noise``.
- cost counts (``params_*``, ``gmacs_*``, ``gflops_*``): relative tolerance (0.1% of the baseline). Counts are
  deterministic, so any change beyond CSV rounding means the model changed: ``changed``, a failure in either
  direction (a cheaper model is not a better one until someone updates the baseline on purpose).
- timings (``latency_ms_p50``, ``throughput_img_s``, ``train_s``, ``train_step_ms_p50``, ``train_img_s``, ...):
  noisy across machines, so compared only when asked for (``metrics=[...]`` or a tolerance given for them), with
  a generous relative tolerance; lower is better, except throughput.
- peak memory (``mem_infer_peak_mib``, ``mem_train_peak_mib``, the backbone's and CUDA's reserved ones): opt-in
  like timings (allocators and kernels differ across machines), 10% relative, lower is better.
- ``missing``: no results row matches, or the matched row has no value for a metric the baseline has (a run
  that crashed writes a row without metrics). Missing counts as a failure by default: a head that stops building
  must not pass CI by producing no row. ``has_regression(df, missing_ok=True)`` relaxes that.

Spread. A baseline row may be a mean over seeds (``make_baseline``, ``bench baseline``): it names its seeds in a
``seeds`` column (``0,1,2,3``) and carries ``<metric>_std`` (the spread over seeds) and ``<metric>_rerun_std``
(how far a rerun of one seed falls from the baseline's value for it: the floating-point path of another thread
count or CPU). It is compared with the mean of the results' rows of those seeds (the latest ok row per seed):
- all its seeds present (paired): within ``SE_MULTIPLIER * rerun_std / sqrt(n)``;
- other or fewer seeds (unpaired): within ``SE_MULTIPLIER * std * sqrt(1/n_baseline + 1/n_results)``;
never tighter than the metric's own tolerance. A result that holds one CPU's floating-point path is then not a
regression on the next CPU, while a real drop of a point still is. Cost counts stay exact. A row without
``seeds`` that carries ``<metric>_std`` widens its tolerance to ``max(tolerance, STD_MULTIPLIER * std)``.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Dict, Iterable, List, Mapping, Optional

import numpy as np
import pandas as pd

from ..report.fmt import layout
from ..run.results import KEY_COLUMNS, normalize_id
from .rows import unique_rows


@dataclass(frozen=True)
class MetricRule:
    """How one metric is compared: ``tolerance`` in the metric's units (``kind="absolute"``) or as a fraction of
    the baseline value (``kind="relative"``); ``direction`` "higher" or "lower" is better, or "exact" (any change
    beyond tolerance is ``changed``); ``default`` False makes the metric opt-in."""
    tolerance: float
    kind: str
    direction: str
    default: bool = True


_ACCURACY = {  # percentage points
    "map": 0.5, "map_ema": 0.5, "top1": 0.5, "top1_ema": 0.5, "top5": 0.5,
    "cf1": 1.0, "of1": 1.0, "cp": 1.0, "cr": 1.0, "op": 1.0, "or": 1.0,
    "f1_at_3": 1.0, "f1_at_5": 1.0, "zsl_map": 1.0, "gzsl_map": 1.0,
}
_COUNTS = [
    "params_total", "params_trainable", "params_backbone", "params_head",
    "gmacs_total", "gmacs_backbone", "gmacs_head", "gflops_total", "gflops_backbone", "gflops_head",
    "gmacs_fvcore_total", "gmacs_fvcore_head",
]
METRIC_RULES: Mapping[str, MetricRule] = MappingProxyType({
    **{m: MetricRule(t, "absolute", "higher") for m, t in _ACCURACY.items()},
    **{m: MetricRule(0.001, "relative", "exact") for m in _COUNTS},
    "latency_ms_p50": MetricRule(0.25, "relative", "lower", default=False),
    "backbone_ms_p50": MetricRule(0.25, "relative", "lower", default=False),
    "head_ms_p50": MetricRule(0.25, "relative", "lower", default=False),
    "throughput_img_s": MetricRule(0.25, "relative", "higher", default=False),
    "train_s": MetricRule(0.5, "relative", "lower", default=False),
    # Peak memory: deterministic on one machine and allocator, not across them (library versions, kernels).
    **{m: MetricRule(0.1, "relative", "lower", default=False) for m in (
        "mem_infer_peak_mib", "mem_infer_backbone_mib", "mem_infer_reserved_mib",
        "mem_train_peak_mib", "mem_train_backbone_mib", "mem_train_reserved_mib")},
    "train_step_ms_p50": MetricRule(0.25, "relative", "lower", default=False),
    "train_step_backbone_ms_p50": MetricRule(0.25, "relative", "lower", default=False),
    "train_img_s": MetricRule(0.25, "relative", "higher", default=False),
})
DEFAULT_TOLERANCES: Mapping[str, float] = MappingProxyType({m: r.tolerance for m, r in METRIC_RULES.items()})
STD_MULTIPLIER = 2.0
# A mean over seeds is judged within this many standard errors: a CI check compares several metrics on every run,
# so a false alarm must be rare (3 SE: about 3 in 1000 per metric for a normal spread).
SE_MULTIPLIER = 3.0
STATUSES = ("worse", "changed", "missing", "better", "within noise")  # failures first
FAILING_STATUSES = ("worse", "changed")
RESULT_COLUMNS = ["metric", "baseline", "result", "delta", "tolerance", "tolerance_text", "status",
                  "result_run_id", "note"]


def _unknown_metric(name: str) -> ValueError:
    close = difflib.get_close_matches(name.lower(), list(METRIC_RULES), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ValueError(f"unknown metric {name!r}{hint}; valid metrics are {sorted(METRIC_RULES)}")


def parse_tolerances(items: Iterable[str]) -> Dict[str, float]:
    """Parse ``["map=0.3", "gmacs_total=0.02", "latency_ms_p50=50%"]`` into ``{metric: tolerance}``.

    Values are in the metric's own rule: percentage points for accuracy, a fraction of the baseline for cost and
    timings (which may also be written as a percentage, ``"1%"``). Raises ValueError on a malformed item, an
    unknown metric (naming the valid ones) or a negative value.
    """
    out: Dict[str, float] = {}
    for item in items:
        name, sep, text = str(item).partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name or not text:
            raise ValueError(f"tolerance {item!r} is not METRIC=VALUE (e.g. map=0.3, gmacs_total=0.01)")
        if name not in METRIC_RULES:
            raise _unknown_metric(name)
        percent = text.endswith("%")
        if percent and METRIC_RULES[name].kind != "relative":
            raise ValueError(f"tolerance {item!r}: {name} takes an absolute tolerance in its own units "
                             f"(percentage points), not a percentage of the baseline")
        try:
            value = float(text[:-1] if percent else text)
        except ValueError:
            raise ValueError(f"tolerance {item!r}: {text!r} is not a number") from None
        if not value >= 0:
            raise ValueError(f"tolerance {item!r} must be a non-negative number")
        out[name] = value / 100.0 if percent else value
    return out


_norm = normalize_id


def _number(value) -> float:
    """A metric value as float; NaN when empty or not a number."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _metric_list(metrics: Optional[List[str]], tolerances: Mapping[str, float]) -> List[str]:
    if metrics is not None:
        for m in metrics:
            if m not in METRIC_RULES:
                raise _unknown_metric(m)
        return list(metrics)
    return [m for m, r in METRIC_RULES.items() if r.default or m in tolerances]


def _run_order(results: pd.DataFrame) -> np.ndarray:
    """Row positions of ``results`` from oldest to latest (timestamp, then row order; no timestamp is oldest)."""
    position = np.arange(len(results))
    if "timestamp" not in results.columns:
        return position
    ticks = np.array([_timestamp_ns(v) for v in results["timestamp"]], dtype=np.int64)
    return np.lexsort((position, ticks))


def _timestamp_ns(value) -> int:
    """A timestamp as UTC nanoseconds (naive times taken as UTC); the oldest possible when empty or unreadable.

    Parsed one by one: ``pd.to_datetime`` on a column infers one format from the first value and would turn rows
    written in another (older files, other tools) into NaT."""
    if _norm(value) == "":
        return np.iinfo(np.int64).min
    try:
        stamp = pd.Timestamp(str(value))
    except (ValueError, TypeError):
        return np.iinfo(np.int64).min
    if pd.isna(stamp):
        return np.iinfo(np.int64).min
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).value


def _fmt_tolerance(rule: MetricRule, tolerance: float, widened: bool) -> str:
    if widened:
        return f"±{tolerance:.4g} ({STD_MULTIPLIER:g} std)"
    if rule.kind == "relative":
        return f"±{100 * tolerance:g}%"
    return f"±{tolerance:g}"


def _seed_list(value) -> List[str]:
    """``"0,1,2"`` (a baseline's ``seeds`` column) -> ``["0", "1", "2"]``; empty when not given."""
    text = "" if _norm(value) == "" else str(value)
    return [_norm(s) for s in text.replace(";", ",").split(",") if s.strip()]


def _latest_per_seed(frame: pd.DataFrame, seeds: List[str]) -> pd.DataFrame:
    """Of rows ordered oldest first, the ok ones of the given seeds, the latest per seed."""
    if "status" in frame.columns:
        frame = frame[frame["status"].map(_norm) == "ok"]
    seed_ids = frame["seed"].map(_norm) if "seed" in frame.columns else pd.Series([""] * len(frame))
    frame = frame[seed_ids.isin(seeds).to_numpy()]
    return frame.assign(_seed=seed_ids[seed_ids.isin(seeds)].to_numpy()).drop_duplicates("_seed", keep="last")


def compare(results: pd.DataFrame, baseline: pd.DataFrame, tolerances: Optional[Mapping[str, float]] = None,
            metrics: Optional[List[str]] = None) -> pd.DataFrame:
    """Compare each baseline row with the results, metric by metric (see the module docs).

    A baseline row that gives ``seeds`` (a mean over those seeds, with ``<metric>_std`` their spread) is compared
    with the mean of the results' rows of the same seeds (latest ok row per seed), within ``SE_MULTIPLIER``
    standard errors of the difference of two such means; any other baseline row with the latest matching row.

    ``tolerances`` overrides ``DEFAULT_TOLERANCES`` per metric (as ``parse_tolerances`` returns), and also opts in
    timing metrics; ``metrics`` restricts the comparison to those metrics (opt-in ones included). Unknown metric
    names raise ValueError, as does a baseline that gives nothing to compare (no rows, or no value in any compared
    metric): a check that compared nothing must not pass.

    Returns one row per (baseline row, metric): the baseline's identifier columns, then
    ``metric, baseline, result, delta`` (result - baseline), ``tolerance`` (effective, in the metric's units),
    ``tolerance_text``, ``status`` (one of ``STATUSES``), ``result_run_id`` and ``note``.
    """
    tolerances = _checked_tolerances(tolerances)
    metric_names = _metric_list(metrics, tolerances)
    keys = [c for c in KEY_COLUMNS if c in baseline.columns]

    results = results.reset_index(drop=True)
    ordered = results.iloc[_run_order(results)].reset_index(drop=True)  # oldest first
    result_ids = {c: (ordered[c].map(_norm) if c in ordered.columns else pd.Series([""] * len(ordered)))
                  for c in keys}

    rows = []
    for b_index, b_row in baseline.reset_index(drop=True).iterrows():
        match = _match(b_row, keys, ordered, result_ids)
        for m in metric_names:
            if m in baseline.columns and _norm(b_row[m]) != "":
                rows.append(_compare_metric(m, match, tolerances, b_index))
    if not rows:  # a check that compared nothing must not pass as "no regression"
        raise ValueError(_nothing_compared(baseline, metric_names))
    return pd.DataFrame(rows, columns=keys + RESULT_COLUMNS)


def _checked_tolerances(tolerances: Optional[Mapping[str, float]]) -> Dict[str, float]:
    """``tolerances`` as a dict, each a known metric's non-negative number (else ValueError)."""
    tolerances = dict(tolerances or {})
    for m, t in tolerances.items():
        if m not in METRIC_RULES:
            raise _unknown_metric(m)
        if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not t >= 0:
            raise ValueError(f"tolerance for {m} must be a non-negative number; got {t!r}")
    return tolerances


@dataclass
class _Match:
    """What one baseline row is compared with: ``latest``, the latest matching results row (None: none matches);
    for a baseline row that is a mean over ``seeds``, ``group``, the latest ok row of each of those seeds (None
    otherwise); the baseline row itself, its identifiers as written in the output and the run id of ``latest``."""

    b_row: pd.Series
    ids: Dict[str, object]
    seeds: List[str]
    group: Optional[pd.DataFrame]
    latest: Optional[pd.Series]
    run_id: str


def _match(b_row: pd.Series, keys: List[str], ordered: pd.DataFrame, result_ids: Dict[str, pd.Series]) -> _Match:
    """What the baseline row is compared with, of the results rows ``ordered`` oldest first (their identifiers
    normalised in ``result_ids``): those that agree with it on each of its non-empty identifiers."""
    wanted = {c: _norm(b_row[c]) for c in keys if _norm(b_row[c]) != ""}
    match = np.ones(len(ordered), dtype=bool)
    for c, v in wanted.items():
        match &= (result_ids[c] == v).to_numpy()
    seeds = _seed_list(b_row["seeds"]) if "seeds" in b_row.index else []
    if seeds:  # a mean over seeds: the results' rows of those seeds
        group = _latest_per_seed(ordered.iloc[np.flatnonzero(match)], seeds)
        latest = group.iloc[-1] if len(group) else None
    else:
        group = None
        latest = ordered.iloc[np.flatnonzero(match)[-1]] if match.any() else None
    run_id = "" if latest is None or "run_id" not in ordered.columns else _norm(latest["run_id"])
    ids = {c: ("" if _norm(b_row[c]) == "" else b_row[c]) for c in keys}
    return _Match(b_row, ids, seeds, group, latest, run_id)


def _compare_metric(m: str, match: _Match, tolerances: Mapping[str, float], b_index) -> dict:
    """One row of ``compare``'s output: metric ``m`` of baseline row ``b_index`` against what it matched."""
    b_row, latest = match.b_row, match.latest
    base = _number(b_row[m])
    if np.isnan(base):
        raise ValueError(f"baseline row {b_index}: {m}={b_row[m]!r} is not a number")
    rule = METRIC_RULES[m]
    spec = tolerances.get(m, rule.tolerance)
    tol = spec * abs(base) if rule.kind == "relative" else spec
    std = _number(b_row[f"{m}_std"]) if f"{m}_std" in b_row.index else float("nan")
    row = {**match.ids, "metric": m, "baseline": base, "result": np.nan, "delta": np.nan, "tolerance": tol,
           "tolerance_text": _fmt_tolerance(rule, spec, False),
           "status": "missing", "result_run_id": match.run_id, "note": ""}
    if latest is None:
        row["note"] = "no matching results row" + (f" for seeds {', '.join(match.seeds)}" if match.seeds else "")
        return row
    if match.group is not None:
        value = _mean_over_seeds(m, rule, std, match, row)
    else:
        value = _number(latest[m]) if m in latest.index else float("nan")
        if not np.isnan(std) and STD_MULTIPLIER * std > tol:
            row.update(tolerance=STD_MULTIPLIER * std, tolerance_text=_fmt_tolerance(rule, STD_MULTIPLIER * std, True))
    if np.isnan(value):
        status = _norm(latest["status"]) if "status" in latest.index else ""
        row["note"] = f"latest matching row has no {m}" + (f" (status {status})" if status else "")
    else:
        delta = value - base
        row.update(result=value, delta=delta, status=_classify(rule, delta, row["tolerance"], base))
    return row


def _mean_over_seeds(m: str, rule: MetricRule, std: float, match: _Match, row: dict) -> float:
    """The mean of ``m`` over the results' rows of the baseline row's seeds (NaN when none has it). Widens
    ``row``'s tolerance to ``SE_MULTIPLIER`` standard errors of the difference (paired over the same seeds when all
    are there and the baseline gives a rerun spread, else unpaired from the seeds' spread ``std``), never below
    the metric's own; notes the seeds that are missing."""
    group, seeds = match.group, match.seeds
    values = pd.to_numeric(group[m], errors="coerce") if m in group.columns else pd.Series([], dtype=float)
    have = sorted(group["_seed"][values.notna().to_numpy()])
    values = values.dropna()
    value = float(values.mean()) if len(values) else float("nan")
    n_res = len(values)
    rerun = _number(match.b_row[f"{m}_rerun_std"]) if f"{m}_rerun_std" in match.b_row.index else float("nan")
    floor = row["tolerance"]
    if n_res == len(seeds) and not np.isnan(rerun) and rule.kind == "absolute":
        # the same seeds: each seed's difference is only the floating-point path's (threads, CPU)
        tol = max(floor, SE_MULTIPLIER * rerun / np.sqrt(n_res))
        row.update(tolerance=tol, tolerance_text=f"±{tol:.3g} (paired over {n_res} seeds: {SE_MULTIPLIER:g} SE of "
                                                 f"a rerun's spread {rerun:.3g}, at least {floor:g})")
    elif not np.isnan(std) and rule.kind == "absolute" and n_res:
        # other seeds: the standard error of a difference of two means over seeds
        tol = max(floor, SE_MULTIPLIER * std * np.sqrt(1.0 / len(seeds) + 1.0 / n_res))
        row.update(tolerance=tol, tolerance_text=f"±{tol:.3g} (unpaired: {SE_MULTIPLIER:g} SE; seed spread "
                                                 f"{std:.3g}, n {len(seeds)} vs {n_res})")
    if n_res and n_res < len(seeds):
        row["note"] = f"mean of seeds {', '.join(have)} of the baseline's {', '.join(seeds)}"
    return value


def _nothing_compared(baseline: pd.DataFrame, metric_names: List[str]) -> str:
    """Why ``compare`` found nothing to compare: no baseline rows, or none with a value in a compared metric
    (naming the columns it looked for and the ones the baseline fills: a wrong file shows at once)."""
    if not len(baseline):
        return "nothing to compare: the baseline has no rows"
    filled = [str(c) for c in baseline.columns if baseline[c].map(_norm).ne("").any()]
    text = f"nothing to compare: no baseline row has a value in a metric column compared ({', '.join(metric_names)})"
    if not any(c in filled for c in KEY_COLUMNS):
        text += f" nor in an identifying column ({', '.join(KEY_COLUMNS)})"
    return text + f"; the baseline's columns with values: {', '.join(filled) or 'none'}"


def make_baseline(results: pd.DataFrame, metrics: Optional[List[str]] = None) -> pd.DataFrame:
    """A baseline that knows its noise, from result rows (e.g. the same run at 1 and at 2 threads, or on two
    machines): one row per measurement with the seed left open; cost counts as measured (they must agree
    exactly across the rows, else ValueError); each accuracy metric as its mean over ``seeds`` with
    ``<metric>_std`` the spread that ``compare`` judges a new mean by.

    Each seed's value is the mean of its rows (one per thread count or machine). ``<metric>_std`` is the spread of
    those values over seeds (what an unpaired comparison, on other seeds, is judged by); ``<metric>_rerun_std``
    is how far a new run of the same seed falls from that value: the pooled spread of one seed across the rows,
    times ``sqrt(1 + 1/k)`` for ``k`` rows per seed. A comparison on the same seeds is judged by it (paired), so
    a baseline made at two thread counts tolerates the floating-point spread between them, not the seeds'.
    """
    ok = results[results["status"].map(_norm) == "ok"] if "status" in results.columns else results
    if not len(ok):
        raise ValueError("no ok result rows to make a baseline from")
    acc = [m for m, r in METRIC_RULES.items() if r.kind == "absolute" and r.default and m in ok.columns
           and ok[m].notna().any()]
    if metrics is not None:
        for m in metrics:
            if m not in METRIC_RULES:
                raise _unknown_metric(m)
        acc = [m for m in acc if m in metrics]
    counts = [m for m in _COUNTS if m in ok.columns]
    id_cols = [c for c in KEY_COLUMNS if c != "seed"]
    frames = []
    for run_id, part in ok.groupby(ok["run_id"].map(_norm) if "run_id" in ok.columns else np.zeros(len(ok))):
        frames.append(unique_rows(part))  # a run that holds a row twice counts it once
    ok = pd.concat(frames)
    out = []
    for _, g in ok.groupby([ok[c].map(_norm) for c in id_cols], sort=False):
        first = g.iloc[0]
        row = {c: first[c] for c in id_cols}
        for m in counts:
            vals = pd.to_numeric(g[m], errors="coerce").dropna().unique()
            if len(vals) > 1 and (vals.max() - vals.min()) > 1e-6 * max(1.0, abs(vals.max())):
                raise ValueError(f"{m} of {first['backbone']} + {first['head']} differs between the rows "
                                 f"({', '.join(f'{v:g}' for v in vals)}): a count must not")
            row[m] = vals[0] if len(vals) else np.nan
        trained = [m for m in acc if g[m].notna().any()]
        if trained:
            seeds = g["seed"].map(_norm)
            row["seeds"] = ",".join(sorted(set(seeds) - {""}, key=lambda s: float(s)))
            for m in trained:
                vals = pd.to_numeric(g[m], errors="coerce")
                per_seed = vals.groupby(seeds).mean()
                within = vals.groupby(seeds).var(ddof=1).dropna()
                k = float(vals.groupby(seeds).count().mean())
                row[m] = per_seed.mean()
                row[f"{m}_std"] = per_seed.std(ddof=1) if len(per_seed) > 1 else np.nan
                row[f"{m}_rerun_std"] = (float(np.sqrt(within.mean() * (1 + 1 / k))) if len(within)
                                         else np.nan)
        else:
            row["seed"] = first.get("seed")
        for c in ("cpu", "threads", "torch_version", "timm_version", "git_commit"):
            if c in g.columns:
                row[c] = ";".join(sorted({str(v) for v in g[c].dropna()}))
        out.append(row)
    df = pd.DataFrame(out)
    std_cols = sorted(c for c in df.columns if c.endswith("_std"))
    lead = [c for c in KEY_COLUMNS if c in df.columns] + ["seeds"]
    return df[[c for c in lead if c in df.columns] + [c for c in df.columns if c not in lead and c not in std_cols]
              + std_cols]


def _classify(rule: MetricRule, delta: float, tolerance: float, base: float) -> str:
    slack = 1e-9 * max(1.0, abs(base))  # so a change of exactly the tolerance, read back from CSV, is noise
    if abs(delta) <= tolerance + slack:
        return "within noise"
    if rule.direction == "exact":
        return "changed"
    improved = delta > 0 if rule.direction == "higher" else delta < 0
    return "better" if improved else "worse"


def has_regression(df: pd.DataFrame, missing_ok: bool = False) -> bool:
    """True when any comparison is ``worse`` or ``changed``, or ``missing`` unless ``missing_ok``."""
    failing = set(FAILING_STATUSES) | (set() if missing_ok else {"missing"})
    return bool(df["status"].isin(failing).any()) if len(df) else False


def summarize(df: pd.DataFrame) -> str:
    """One line: how many comparisons and how many of each status, e.g. ``12 compared: 11 within noise, 1 worse``."""
    counts = df["status"].value_counts() if len(df) else pd.Series(dtype=int)
    parts = [f"{int(counts[s])} {s}" for s in STATUSES if s in counts]
    return f"{len(df)} compared" + (": " + ", ".join(parts) if parts else "")


def _fmt_number(value, signed: bool = False) -> str:
    value = _number(value)
    if np.isnan(value):
        return "-"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{value:+.0f}" if signed else f"{value:.0f}"
    return f"{value:+.4g}" if signed else f"{value:.6g}"


def format_table(df: pd.DataFrame) -> str:
    """A fixed-width table of ``compare``'s output.

    Identifier columns that are the same on every row move to a header line (``dataset=scenes  head=gap``);
    those that vary are columns. Then metric, baseline, result, delta, tolerance, status, and a note column
    when any row has a note.
    """
    if not len(df):
        return "no comparisons (the baseline has no rows with metrics)"
    keys = [c for c in df.columns if c not in RESULT_COLUMNS]
    shown = {c: df[c].map(_norm) for c in keys}
    varying = [c for c in keys if shown[c].nunique() > 1]
    constant = [f"{c}={shown[c].iloc[0]}" for c in keys if c not in varying and shown[c].iloc[0] != ""]

    columns = varying + ["metric", "baseline", "result", "delta", "tolerance", "status"]
    if df["note"].astype(str).str.len().gt(0).any():
        columns.append("note")
    right = {"baseline", "result", "delta", "tolerance"}
    cells = []
    for i in range(len(df)):
        r = df.iloc[i]
        cells.append([shown[c].iloc[i] if c in varying else
                      _fmt_number(r[c]) if c in ("baseline", "result") else
                      _fmt_number(r[c], signed=True) if c == "delta" else
                      r["tolerance_text"] if c == "tolerance" else str(r[c]) for c in columns])
    table = layout(columns, cells, right=[c in right for c in columns])
    return "\n".join((["  ".join(constant)] if constant else []) + [table])
