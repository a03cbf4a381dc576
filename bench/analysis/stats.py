"""The one place comparisons are decided: paired differences over seeds, their 95% Student-t interval, and the
verdict of a study's hypotheses (``bench.studies.Hypothesis``) on its result rows.

Every head of a seed shares the backbone's initial weights and the data order, so two heads are compared seed by
seed: ``paired_difference(a, b)`` pairs the seeds both have and gives the mean of ``a - b`` with its interval::

    d = paired_difference({0: 62.0, 1: 63.0, 2: 61.0}, {0: 61.0, 1: 61.5, 2: 61.0})
    d.mean, d.low, d.high, d.n, d.sd
    v = decide(d, "not_worse", margin=1.0)   # or decide(d, "better")
    v.outcome                                # "supported" | "contradicted" | "inconclusive"
    v.seeds_needed                           # inconclusive: the n at which the observed spread would decide

Both tests ask whether the true difference lies above a threshold: ``not_worse`` above ``-margin`` (the variant
loses less than ``margin``), ``better`` above ``+margin`` (0 unless a minimum gain is stated). Supported when the
whole interval is above the threshold, contradicted when it is all below, inconclusive otherwise (and always
with fewer than two shared seeds: there is no spread to judge).

``evaluate(study, rows)`` applies this to every hypothesis of a study, after checking that the setting can tell
anything: the reference must beat a chance level by a stated amount, and variants compared as "the same" must
really differ in a measured column. A setting that fails a check is "uninformative", never "supported".

Rows are read through ``bench.analysis.rows`` (numeric columns, accuracy rows); numpy/pandas and scipy (the t quantile
is ``scipy.stats.t.ppf``); imports neither torch nor timm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..spec import parse_spec
from .rows import accuracy_rows, num as _num  # noqa: F401  (the statistics' rows are the rows view's)

CONFIDENCE = 0.95
TESTS = ("not_worse", "better")
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
UNINFORMATIVE, NOT_RUN = "uninformative", "not run"
OUTCOMES = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, UNINFORMATIVE, NOT_RUN)
# seeds_needed searches up to this many seeds; beyond it the answer is None (no practical number decides).
MAX_SEEDS = 100_000


# --------------------------------------------------------------------------------------- Student-t quantile

def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (``scipy.stats.t.cdf``)."""
    from scipy.stats import t as student_t

    return float(student_t.cdf(t, _check_df(df)))


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (``scipy.stats.t.ppf``)."""
    from scipy.stats import t as student_t

    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p!r}")
    return float(student_t.ppf(p, _check_df(df)))


def _check_df(df: int) -> int:
    # scipy answers NaN for a df below 1; a count of seeds that small is a caller's bug, so say so here.
    if not (isinstance(df, int) and df >= 1):
        raise ValueError(f"df must be a positive integer, got {df!r}")
    return df


def t_critical(n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width factor of the two-sided ``confidence`` interval of a mean of n values: t_{(1+c)/2, n-1}."""
    return t_quantile(0.5 + confidence / 2.0, n - 1)


# ------------------------------------------------------------------------------------- paired differences

@dataclass(frozen=True)
class Difference:
    """The paired difference a - b over the seeds both have.

    ``mean`` and ``sd`` (sample standard deviation, ddof 1) of the per-seed differences, ``n`` shared seeds and
    the ``confidence`` Student-t interval [``low``, ``high``] of the mean. With n < 2 the sd and the interval are
    NaN (with n = 0 the mean too).
    """

    mean: float
    sd: float
    n: int
    low: float
    high: float
    seeds: Tuple[int, ...] = ()
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return 0.5 * (self.high - self.low)


def _finite(v) -> Optional[float]:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def paired_difference(a: Mapping[Any, float], b: Mapping[Any, float],
                      confidence: float = CONFIDENCE) -> Difference:
    """Mean of ``a[s] - b[s]`` over the seeds s both have (a value that is missing or not finite drops its
    seed), with its Student-t interval. ``a`` and ``b`` map seed -> value."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    seeds = sorted(s for s in set(a) & set(b) if _finite(a[s]) is not None and _finite(b[s]) is not None)
    diffs = [float(a[s]) - float(b[s]) for s in seeds]
    n = len(diffs)
    if n == 0:
        return Difference(math.nan, math.nan, 0, math.nan, math.nan, (), confidence)
    mean = sum(diffs) / n
    if n < 2:
        return Difference(mean, math.nan, n, math.nan, math.nan, tuple(seeds), confidence)
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / (n - 1))
    half = t_critical(n, confidence) * sd / math.sqrt(n)
    return Difference(mean, sd, n, mean - half, mean + half, tuple(seeds), confidence)


@dataclass(frozen=True)
class Decision:
    """What ``decide`` concluded: the outcome, the test and its margin, the threshold the interval was compared
    with (``-margin`` for not_worse, ``+margin`` for better), and for an inconclusive outcome the number of
    seeds at which the observed mean and spread would decide (None when none would, or otherwise)."""

    outcome: str
    test: str
    margin: float
    threshold: float
    difference: Difference
    seeds_needed: Optional[int] = None


def threshold_of(test: str, margin: Optional[float]) -> Tuple[float, float]:
    """(margin, threshold) of a test; raises ValueError on an unknown test or a missing/negative margin."""
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; valid: {', '.join(TESTS)}")
    if margin is None:
        if test == "not_worse":
            raise ValueError("test 'not_worse' needs a margin (how much worse still counts as not worse), "
                             "e.g. margin=1.0 for one mAP point")
        margin = 0.0
    margin = float(margin)
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    return margin, (-margin if test == "not_worse" else margin)


def seeds_needed(d: Difference, threshold: float, confidence: float = CONFIDENCE) -> Optional[int]:
    """The smallest n at which the observed mean and sd would put the whole interval on one side of
    ``threshold`` (the side the mean is on): t_{n-1} * sd / sqrt(n) < |mean - threshold|. None when there is no
    spread yet (n < 2), the mean sits on the threshold, or more than MAX_SEEDS would be needed."""
    if d.n < 2 or not math.isfinite(d.sd):
        return None
    gap = abs(d.mean - threshold)
    if gap == 0.0:
        return None
    if d.sd == 0.0:
        return d.n

    def decides(n: int) -> bool:
        return t_critical(n, confidence) * d.sd / math.sqrt(n) < gap

    if decides(d.n):
        return d.n
    lo, hi = d.n, d.n + 1  # lo does not decide; grow hi until it does, then bisect
    while not decides(hi):
        lo, hi = hi, hi * 2
        if hi > MAX_SEEDS:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if decides(mid) else (mid, hi)
    return hi


def decide(d: Difference, test: str, margin: Optional[float] = None) -> Decision:
    """Decide ``test`` on a paired difference (variant - reference).

    ``not_worse`` (margin required): supported when low > -margin, contradicted when high < -margin.
    ``better`` (margin defaults to 0): supported when low > margin, contradicted when high < margin.
    Anything else, and fewer than two shared seeds, is inconclusive.
    """
    margin, threshold = threshold_of(test, margin)
    if d.n < 2 or not (math.isfinite(d.low) and math.isfinite(d.high)):
        return Decision(INCONCLUSIVE, test, margin, threshold, d, None)
    if d.low > threshold:
        return Decision(SUPPORTED, test, margin, threshold, d, None)
    if d.high < threshold:
        return Decision(CONTRADICTED, test, margin, threshold, d, None)
    return Decision(INCONCLUSIVE, test, margin, threshold, d, seeds_needed(d, threshold, d.confidence))


# ------------------------------------------------------------------------------------------ result rows

def _spec_key(text: str):
    try:
        s = parse_spec(str(text))
    except ValueError:
        return str(text)
    return (s.name, tuple(sorted((k, repr(v)) for k, v in s.kwargs.items())))


def same_value(value: Any, wanted: Any) -> bool:
    """Whether a row's cell equals a filter's value: numbers by value (``96`` matches ``96.0``), spec strings by
    name and options whatever their order (``mldecoder(a=1, b=2)`` matches ``mldecoder(b=2, a=1)``)."""
    if isinstance(wanted, bool) or not isinstance(wanted, (int, float)):
        if isinstance(wanted, bool):
            return str(value) == str(wanted)
        return _spec_key(value) == _spec_key(wanted)
    v = _finite(value)
    return v is not None and v == float(wanted)


def select(df, where: Mapping[str, Any]):
    """The rows whose columns equal ``where``'s values (``same_value``); a column not named matches anything.
    A named column that the rows lack matches nothing."""
    mask = [True] * len(df)
    for col, wanted in where.items():
        if col not in df.columns:
            return df.iloc[0:0]
        mask = [m and same_value(v, wanted) for m, v in zip(mask, df[col])]
    return df[mask]


def by_seed(rows, column: str, what: str = "rows") -> Dict[int, float]:
    """seed -> value of ``column``; raises ValueError when a seed has two rows (the selection is ambiguous)."""
    out: Dict[int, float] = {}
    for seed, v in zip(_num(rows, "seed"), _num(rows, column)):
        s = int(seed)
        if s in out:
            heads = sorted({str(h) for h in rows["head"]}) if "head" in rows.columns else []
            raise ValueError(f"{what}: seed {s} has more than one row (the selection matches "
                             f"{', '.join(heads) or 'several cells'}); name more columns in the hypothesis")
        out[s] = float(v)
    return out


def _mean(values) -> Optional[float]:
    vals = [float(v) for v in values if _finite(v) is not None]
    return sum(vals) / len(vals) if vals else None


# ---------------------------------------------------------------------------------------------- verdicts

@dataclass
class Verdict:
    """The verdict of one hypothesis in one setting (the values of its ``per`` columns).

    ``outcome`` is one of OUTCOMES; ``decision`` is the paired decision (None when a side has no rows), kept even
    when the setting is uninformative so the interval can be shown; ``reasons`` say why a setting is
    uninformative or not run; ``variant_mean``/``reference_mean`` are the metric's means over the paired seeds,
    ``chance`` the chance level used (None when not checked or not found), ``shift`` the two sides' means of the
    ``differ`` column.
    """

    hypothesis: Any  # bench.studies.Hypothesis
    study: str
    setting: Dict[str, Any] = field(default_factory=dict)
    outcome: str = NOT_RUN
    decision: Optional[Decision] = None
    reasons: List[str] = field(default_factory=list)
    variant_mean: Optional[float] = None
    reference_mean: Optional[float] = None
    chance: Optional[float] = None
    shift: Optional[Tuple[Optional[float], Optional[float]]] = None

    @property
    def difference(self) -> Optional[Difference]:
        return self.decision.difference if self.decision else None

    @property
    def seeds_needed(self) -> Optional[int]:
        return self.decision.seeds_needed if self.decision and self.outcome == INCONCLUSIVE else None


def _settings(rows, per: Sequence[str]) -> List[Dict[str, Any]]:
    cols = [c for c in per if c in rows.columns]
    if not cols or not len(rows):
        return [{}] if not cols else []
    out = []
    for keys, _ in rows.groupby(cols, sort=False, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        out.append(dict(zip(cols, keys)))
    return out


def _chance_level(h, setting_rows, ref_rows) -> Tuple[Optional[float], str]:
    """(chance level, where it came from) for a hypothesis in one setting."""
    if h.chance is not None:
        ctrl = select(setting_rows, h.chance)
        return _mean(_num(ctrl, h.metric)), "the control " + ", ".join(f"{k}={v}" for k, v in h.chance.items())
    if h.chance_value is not None:
        return float(h.chance_value), "the stated chance level"
    col = f"{h.metric}_chance"
    return _mean(_num(ref_rows, col)), f"a constant predictor, column {col}"


def evaluate_hypothesis(h, rows, study: str = "") -> List[Verdict]:
    """One verdict per setting (the distinct values of ``h.per``) of hypothesis ``h`` on accuracy rows. Rows
    without a value of ``h.metric`` are not this hypothesis' rows (e.g. top-1 rows for an mAP hypothesis)."""
    rows = rows[_num(rows, h.metric).notna()]
    variant_all, reference_all = select(rows, h.variant), select(rows, h.reference)
    both = variant_all if not len(reference_all) else reference_all if not len(variant_all) else None
    if both is None:
        import pandas as pd

        both = pd.concat([variant_all, reference_all])
    settings = _settings(both, h.per) if len(both) else [{}]
    out = []
    for setting in settings:
        srows = select(rows, setting)
        v_rows, r_rows = select(variant_all, setting), select(reference_all, setting)
        verdict = Verdict(h, study, setting)
        missing = [w for w, r in (("variant", v_rows), ("reference", r_rows)) if not len(r)]
        if missing:
            verdict.reasons.append("no rows for the " + " and the ".join(missing))
            out.append(verdict)
            continue
        a = by_seed(v_rows, h.metric, f"hypothesis {h.name!r}, variant")
        b = by_seed(r_rows, h.metric, f"hypothesis {h.name!r}, reference")
        d = paired_difference(a, b)
        verdict.decision = decide(d, h.test, h.margin)
        verdict.variant_mean = _mean(a[s] for s in d.seeds)
        verdict.reference_mean = _mean(b[s] for s in d.seeds)
        if h.above_chance is not None:
            chance, source = _chance_level(h, srows, r_rows)
            verdict.chance = chance
            ref = verdict.reference_mean
            if chance is None:
                verdict.reasons.append(f"no chance level recorded ({source}): the setting cannot be shown to "
                                       f"be informative")
            elif ref is not None and ref - chance < h.above_chance:
                verdict.reasons.append(f"the reference's {h.metric} {ref:.1f} is only {ref - chance:+.1f} above "
                                       f"chance ({chance:.1f}, {source}); needs +{h.above_chance:g}")
        if h.differ is not None:
            sv, sr = _mean(_num(v_rows, h.differ)), _mean(_num(r_rows, h.differ))
            verdict.shift = (sv, sr)
            if sv is None or sr is None:
                verdict.reasons.append(f"no {h.differ} recorded for the "
                                       + " and the ".join(w for w, s in (("variant", sv), ("reference", sr))
                                                          if s is None)
                                       + ": cannot tell whether the two variants differ")
            elif abs(sv - sr) < h.differ_min:
                verdict.reasons.append(f"the variants barely differ: {h.differ} {sv:.3g} vs {sr:.3g} (needs a "
                                       f"difference of {h.differ_min:g})")
        verdict.outcome = UNINFORMATIVE if verdict.reasons else verdict.decision.outcome
        out.append(verdict)
    return out


def evaluate(study, df) -> List[Verdict]:
    """The verdicts of every hypothesis of ``study`` (a ``bench.studies.Study``) on its result rows ``df``
    (None or empty: every hypothesis "not run"). Only accuracy rows count (``accuracy_rows``)."""
    if df is None or not len(df):
        return [Verdict(h, study.name, {}, NOT_RUN, reasons=[f"no rows: `bench study {study.name}`"])
                for h in study.hypotheses]
    rows = accuracy_rows(df)
    out: List[Verdict] = []
    for h in study.hypotheses:
        out += evaluate_hypothesis(h, rows, study.name)
    return out
