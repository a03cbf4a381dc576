"""Aggregates across settings: how methods compare over many settings at once, as frozen-feature probing papers
report it (Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice"; Demšar 2006, "Statistical
comparisons of classifiers over multiple data sets").

A setting is one (backbone, dataset) pair; its runs are the seeds. Two input conventions, both validated
(a ValueError names what is wrong):

* ``scores``: ``{method: array of shape (settings, runs)}``, one row per setting in the same order for every
  method, one column per run, every method with the same shape, all finite, at least 2 runs. Used by ``iqm``,
  ``probability_of_improvement`` and ``performance_profile``. rliable's ``score_dict`` is the transpose,
  ``(num_runs, num_tasks)``: ``to_rliable(scores)`` converts.
* ``table``: a DataFrame of per-setting means, settings x methods (index: setting, columns: method), higher is
  better; ``mean_table(scores)`` builds it. Used by ``rank_test``, whose result ``plot_ranks`` draws.

Intervals are stratified percentile bootstraps: runs are resampled within each setting, settings are kept (what
varies is the seeds, not the choice of settings), as rliable's ``get_interval_estimates`` does by default.

Libraries: ``scipy.stats`` (bootstrap, trimmed mean, Mann-Whitney U) and ``autorank`` (Friedman test, mean ranks,
Nemenyi critical difference; the ``stats`` extra). rliable (1.2.0, the newest) is not used although it computes
exactly these: it pins ``arch<8``, arch 7.2 fails at import under pandas 3 (``deprecate_kwarg`` changed) and arch 8
rejects the ``random_state`` rliable passes, so no install of it works beside pandas 3. Its resampling also ignores
that ``random_state`` and draws from numpy's global generator. The stratified bootstrap is therefore
``scipy.stats.bootstrap`` with each setting's runs passed as a separate, independently resampled sample; the
statistics are rliable's (``aggregate_iqm`` is ``trim_mean(x, 0.25)`` of all scores, ``probability_of_improvement``
the Mann-Whitney U over run pairs, averaged over settings).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .stats import CONFIDENCE

N_RESAMPLES = 50_000  # rliable's default number of bootstrap replications
ALPHA = 0.05  # significance level of the rank test
MIN_SETTINGS_RANKED = 5  # autorank's minimum (and below it Friedman's chi-square approximation is poor anyway)
BATCH_VALUES = 10_000_000  # resampled values held in memory at once (80 MB of float64)


# ------------------------------------------------------------------------------------------ input conventions

def check_scores(scores: Mapping[str, object]) -> Dict[str, np.ndarray]:
    """``scores`` as float arrays of shape (settings, runs), after checking the convention: a non-empty mapping
    of method name -> 2-D array, every method with the same shape, at least 2 runs, all values finite."""
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError("scores must be a non-empty dict {method: array of shape (settings, runs)}, got "
                         f"{type(scores).__name__}")
    out: Dict[str, np.ndarray] = {}
    for method, value in scores.items():
        try:
            a = np.asarray(value, dtype=float)
        except (TypeError, ValueError) as e:  # numpy refuses ragged nested lists
            raise ValueError(f"scores[{method!r}] is not a rectangular (settings, runs) array of numbers "
                             f"(every setting needs the same number of runs): {e}") from None
        if a.ndim != 2:
            raise ValueError(f"scores[{method!r}] must have shape (settings, runs), got shape {a.shape}")
        if a.shape[0] < 1 or a.shape[1] < 2:
            raise ValueError(f"scores[{method!r}] has shape {a.shape}: needs at least 1 setting and 2 runs per "
                             "setting (a bootstrap over runs needs a spread)")
        bad = np.argwhere(~np.isfinite(a))
        if len(bad):
            cells = ", ".join(f"(setting {s}, run {r})" for s, r in bad[:5]) + (" ..." if len(bad) > 5 else "")
            raise ValueError(f"scores[{method!r}] has {len(bad)} missing or non-finite values at {cells}")
        out[str(method)] = a
    shapes = {m: a.shape for m, a in out.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError("every method needs the same (settings, runs) shape, with settings in the same order; "
                         f"got {', '.join(f'{m}: {s}' for m, s in shapes.items())}")
    return out


def to_rliable(scores: Mapping[str, object]) -> Dict[str, np.ndarray]:
    """The same scores in rliable's convention, ``{method: array of shape (runs, settings)}``."""
    return {m: a.T.copy() for m, a in check_scores(scores).items()}


def mean_table(scores: Mapping[str, object], settings: Optional[Sequence] = None):
    """The (settings x methods) DataFrame of per-setting means over runs, the input of ``rank_test``. Rows are
    labelled by ``settings`` when given (``(backbone, dataset)`` tuples make a MultiIndex), else 0, 1, ..."""
    import pandas as pd

    s = check_scores(scores)
    n = next(iter(s.values())).shape[0]
    if settings is not None and len(settings) != n:
        raise ValueError(f"{len(settings)} setting labels for {n} settings (rows of every scores array)")
    index = pd.Index(list(settings)) if settings is not None else pd.RangeIndex(n)  # tuples: a MultiIndex
    return pd.DataFrame({m: a.mean(axis=1) for m, a in s.items()}, index=index)


def check_table(table):
    """``table`` as a float DataFrame after checking the convention: settings x methods, at least 3 methods
    (columns, unique) and ``MIN_SETTINGS_RANKED`` settings (rows, unique), all values finite numbers."""
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"table must be a pandas DataFrame of settings x methods, got {type(table).__name__}")
    if table.columns.duplicated().any():
        repeated = sorted(set(table.columns[table.columns.duplicated()]))
        raise ValueError(f"methods (columns) must be unique, repeated: {repeated}")
    if table.index.duplicated().any():
        raise ValueError(f"settings (rows) must be unique, repeated: {list(table.index[table.index.duplicated()])}")
    k, n = table.shape[1], table.shape[0]
    if k < 3:
        raise ValueError(f"a rank test needs at least 3 methods (columns), got {k}: {list(table.columns)}; "
                         "compare two methods with probability_of_improvement or "
                         "bench.analysis.stats.paired_difference")
    if n < MIN_SETTINGS_RANKED:
        raise ValueError(f"a rank test needs at least {MIN_SETTINGS_RANKED} settings (rows), got {n}")
    try:
        t = table.astype(float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"table values must be numbers: {e}") from None
    bad = [(s, m) for m in t.columns for s in t.index[~np.isfinite(t[m].to_numpy())]]
    if bad:
        raise ValueError(f"table has missing or non-finite values at (setting, method) {bad[:5]}"
                         + (" ..." if len(bad) > 5 else ""))
    return t


# ------------------------------------------------------------------------------ stratified bootstrap (scipy)

@dataclass(frozen=True)
class Estimate:
    """A point estimate with its stratified-bootstrap ``confidence`` interval [``low``, ``high``], from
    ``n_settings`` settings of ``n_runs`` runs each and ``n_resamples`` bootstrap replications."""

    value: float
    low: float
    high: float
    confidence: float
    n_settings: int
    n_runs: int
    n_resamples: int


def _stratified_bootstrap(strata: List[np.ndarray], statistic: Callable, confidence: float, n_resamples: int,
                          seed: int):
    """``scipy.stats.bootstrap`` with each stratum (one setting's runs of one method) as its own sample, so
    runs are resampled within their setting only. ``statistic(*strata, axis=-1)`` is vectorized over leading
    axes. Returns (point estimate, low, high)."""
    from scipy.stats import bootstrap

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if not (isinstance(n_resamples, int) and n_resamples >= 1):
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    per_resample = sum(len(s) for s in strata)
    res = bootstrap(tuple(strata), statistic, n_resamples=n_resamples, batch=max(1, BATCH_VALUES // per_resample),
                    vectorized=True, paired=False, axis=-1, confidence_level=confidence, method="percentile",
                    # random_state (not rng, scipy >= 1.15 only) keeps scipy 1.8 and Python 3.9 working
                    random_state=np.random.default_rng(seed))
    point = statistic(*strata, axis=-1)
    return point, res.confidence_interval.low, res.confidence_interval.high


def _iqm_statistic(*strata: np.ndarray, axis: int = -1):
    from scipy.stats import trim_mean

    return trim_mean(np.concatenate(strata, axis=axis), 0.25, axis=axis)


def iqm(scores: Mapping[str, object], confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES,
        seed: int = 0) -> Dict[str, Estimate]:
    """Interquartile mean of each method over all its runs and settings (the mean of the middle 50% of the
    settings x runs scores: ``scipy.stats.trim_mean(x, 0.25)``, rliable's ``aggregate_iqm``), with its
    stratified-bootstrap interval. Each method resamples with its own generator seeded by ``seed``, so its
    interval does not depend on which other methods are passed."""
    out = {}
    for method, a in check_scores(scores).items():
        point, low, high = _stratified_bootstrap(list(a), _iqm_statistic, confidence, n_resamples, seed)
        out[method] = Estimate(float(point), float(low), float(high), confidence, a.shape[0], a.shape[1],
                               n_resamples)
    return out


def probability_of_improvement(scores: Mapping[str, object], x: str, y: str, confidence: float = CONFIDENCE,
                               n_resamples: int = N_RESAMPLES, seed: int = 0) -> Estimate:
    """P(X > Y): the probability that a run of method ``x`` scores above a run of ``y`` on the same setting
    (ties count one half), averaged over settings, with its stratified-bootstrap interval (rliable's
    ``probability_of_improvement``). Per setting it is the Mann-Whitney U of x against y over n_x * n_y run
    pairs. 1.0 when x beats y on every run pair of every setting, 0.5 for identical scores.

    Runs are compared all against all, not seed by seed; for a seed-paired comparison of two methods on one
    setting use ``bench.analysis.stats.paired_difference``."""
    s = check_scores(scores)
    for name in (x, y):
        if name not in s:
            raise ValueError(f"unknown method {name!r}; valid: {', '.join(s)}")
    xs, ys = list(s[x]), list(s[y])
    n = len(xs)

    def statistic(*strata, axis=-1):
        from scipy.stats import mannwhitneyu

        per_setting = []
        for a, b in zip(strata[:n], strata[n:]):
            # U of a against b = #(a > b) + #(a = b) / 2 over all pairs; the p-value is not used.
            u = mannwhitneyu(a, b, alternative="greater", method="asymptotic", axis=axis).statistic
            per_setting.append(u / (a.shape[axis] * b.shape[axis]))
        return np.mean(per_setting, axis=0)

    point, low, high = _stratified_bootstrap(xs + ys, statistic, confidence, n_resamples, seed)
    return Estimate(float(point), float(low), float(high), confidence, n, s[x].shape[1], n_resamples)


@dataclass(frozen=True)
class Profile:
    """A performance profile: at each threshold ``taus[i]`` the fraction of runs (over all settings) scoring
    above it, ``fraction[i]``, with its stratified-bootstrap interval [``low[i]``, ``high[i]``]."""

    taus: Tuple[float, ...]
    fraction: Tuple[float, ...]
    low: Tuple[float, ...]
    high: Tuple[float, ...]
    confidence: float
    n_resamples: int


def performance_profile(scores: Mapping[str, object], taus: Sequence[float], confidence: float = CONFIDENCE,
                        n_resamples: int = N_RESAMPLES, seed: int = 0) -> Dict[str, Profile]:
    """Each method's run-score performance profile at the thresholds ``taus`` (in the scores' unit): the
    fraction of its settings x runs scores above each tau, as rliable's ``create_performance_profile`` with
    run-score distributions, with stratified-bootstrap intervals."""
    t = np.asarray(taus, dtype=float)
    if t.ndim != 1 or not len(t) or not np.isfinite(t).all():
        raise ValueError(f"taus must be a non-empty sequence of finite thresholds, got {taus!r}")

    def statistic(*strata, axis=-1):
        values = np.concatenate(strata, axis=axis)
        return np.stack([(values > tau).mean(axis=axis) for tau in t])  # (taus, ...): scipy's vector layout

    out = {}
    for method, a in check_scores(scores).items():
        point, low, high = _stratified_bootstrap(list(a), statistic, confidence, n_resamples, seed)
        out[method] = Profile(tuple(t.tolist()), tuple(np.asarray(point, float).tolist()),
                              tuple(np.asarray(low, float).tolist()), tuple(np.asarray(high, float).tolist()),
                              confidence, n_resamples)
    return out


# -------------------------------------------------------------------------------- rank test (autorank)

@dataclass(frozen=True)
class RankResult:
    """Friedman test and Nemenyi post-hoc over settings: ``methods`` best first with their ``mean_ranks``
    (rank 1 = highest score in a setting, ties share the average rank), the Friedman ``pvalue``, the Nemenyi
    critical difference ``cd`` at ``alpha`` (two methods differ significantly when their mean ranks are more
    than ``cd`` apart), and ``groups``: the maximal runs of consecutive methods (in rank order) whose mean ranks
    lie within ``cd`` of each other, i.e. not significantly different. The post-hoc means something only when
    the Friedman test rejects (``significant``)."""

    methods: Tuple[str, ...]
    mean_ranks: Tuple[float, ...]
    cd: float
    pvalue: float
    alpha: float
    n_settings: int
    groups: Tuple[Tuple[str, ...], ...]

    @property
    def significant(self) -> bool:
        return self.pvalue < self.alpha


def _groups(methods: Sequence[str], ranks: Sequence[float], cd: float) -> Tuple[Tuple[str, ...], ...]:
    """Maximal runs of consecutive methods (sorted by rank) spanning at most ``cd``, as in a CD diagram."""
    groups, reached = [], 0
    for i in range(len(ranks)):
        j = max(j for j in range(i, len(ranks)) if ranks[j] - ranks[i] <= cd)
        if j > i and j > reached:
            groups.append(tuple(methods[i:j + 1]))
            reached = j
    return tuple(groups)


def rank_test(table, alpha: float = ALPHA) -> RankResult:
    """Rank methods over settings: ``table`` is settings x methods of per-setting means (higher is better, see
    ``mean_table``). ``autorank`` with its non-parametric path forced: Friedman test (``scipy.stats
    .friedmanchisquare``), mean ranks, Nemenyi critical difference q_alpha * sqrt(k (k + 1) / (6 N)) with q the
    studentized range at infinite degrees of freedom over sqrt(2)."""
    import contextlib
    import io

    t = check_table(table)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    try:
        # Imported here: autorank (with statsmodels and baycomp) is a heavy optional package, the `stats` extra.
        from autorank import autorank
    except ImportError as e:
        raise ImportError(f"rank_test needs autorank: pip install 'headbench[stats]' ({e})") from e
    # autorank 1.3 prints its rank table even with verbose=False; library code keeps stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        r = autorank(t.reset_index(drop=True), alpha=float(alpha), verbose=False, order="descending",
                     force_mode="nonparametric")
    if (r.omnibus, r.posthoc) != ("friedman", "nemenyi"):  # the forced path; anything else is an autorank change
        raise RuntimeError(f"autorank ran {r.omnibus}/{r.posthoc}, expected friedman/nemenyi")
    ranks = r.rankdf["meanrank"].astype(float)
    order = sorted(range(len(ranks)), key=lambda i: (ranks.iloc[i], list(t.columns).index(ranks.index[i])))
    methods = tuple(str(ranks.index[i]) for i in order)
    mean_ranks = tuple(float(ranks.iloc[i]) for i in order)
    return RankResult(methods, mean_ranks, float(r.cd), float(r.pvalue), float(alpha), t.shape[0],
                      _groups(methods, mean_ranks, float(r.cd)))


def plot_ranks(result: RankResult, path_stem: str) -> Tuple[str, str]:
    """A critical-difference diagram of ``result`` written to ``path_stem + ".png"`` and ``".svg"``: the mean
    rank axis (1, the best, on the left), each method joined to its mean rank, the CD bar above the axis and a
    thick line under each group of methods not significantly different. Returns the two paths."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state; PNG is drawn by Agg

    k = len(result.methods)
    left = math.ceil(k / 2)  # the better half is labelled on the left, the rest on the right
    step = 0.35
    rows = max(left, k - left)
    fig = Figure(figsize=(7.0, 1.6 + step * (rows + len(result.groups)) * 0.6))
    ax = fig.add_subplot()
    ax.set_axis_off()
    lo_x, hi_x = 1.0, float(max(k, 2))
    ax.plot([lo_x, hi_x], [0, 0], color="k", lw=1)
    for r in range(1, int(hi_x) + 1):
        ax.plot([r, r], [0, 0.08], color="k", lw=1)
        ax.text(r, 0.14, str(r), ha="center", va="bottom", fontsize=9)
    # CD bar above the axis, from rank 1
    y_cd = 0.55
    ax.plot([lo_x, lo_x + result.cd], [y_cd, y_cd], color="k", lw=1.5)
    for x in (lo_x, lo_x + result.cd):
        ax.plot([x, x], [y_cd - 0.05, y_cd + 0.05], color="k", lw=1.5)
    ax.text(lo_x + result.cd / 2, y_cd + 0.08, f"CD = {result.cd:.2f}", ha="center", va="bottom", fontsize=9)
    # groups: thick lines just under the axis
    y_group = -0.12
    for j, g in enumerate(result.groups):
        rs = [result.mean_ranks[result.methods.index(m)] for m in g]
        y = y_group - j * 0.1
        ax.plot([min(rs) - 0.03, max(rs) + 0.03], [y, y], color="k", lw=4, solid_capstyle="round")
    # methods: an elbow from the mean rank down to the label
    y0 = y_group - len(result.groups) * 0.1 - 0.15
    for i, (m, r) in enumerate(zip(result.methods, result.mean_ranks)):
        on_left = i < left
        y = y0 - (i if on_left else k - 1 - i) * step
        x_end = lo_x - 0.3 if on_left else hi_x + 0.3
        ax.plot([r, r, x_end], [0, y, y], color="0.3", lw=1)
        ax.text(x_end + (-0.05 if on_left else 0.05), y, f"{m} ({r:.2f})", ha="right" if on_left else "left",
                va="center", fontsize=9)
    ax.set_xlim(lo_x - 0.4, hi_x + 0.4)
    ax.set_ylim(y0 - (rows - 1) * step - 0.2, y_cd + 0.35)
    verdict = "differ" if result.significant else "do not differ"
    ax.set_title(f"Mean rank over {result.n_settings} settings (Friedman p = {result.pvalue:.3g}: methods "
                 f"{verdict} at alpha = {result.alpha:g}; Nemenyi CD)", fontsize=9)
    parent = os.path.dirname(os.path.abspath(path_stem))
    os.makedirs(parent, exist_ok=True)
    paths = (f"{path_stem}.png", f"{path_stem}.svg")
    for p in paths:
        fig.savefig(p, dpi=130, bbox_inches="tight")
    return paths
