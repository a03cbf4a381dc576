"""bench.analysis.aggregate: aggregates across settings checked against scipy and autorank (and rliable where it imports)
on known data, probabilities and ranks computed by hand, the input conventions, and the rank plot's files."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.analysis import aggregate as ag

RESAMPLES = 2000  # enough for the checks below; the default (50 000) is for reports


def _scores(seed=0, settings=6, runs=5, methods=("gap", "csra", "mldecoder")):
    rng = np.random.default_rng(seed)
    level = rng.normal(60.0, 8.0, (settings, 1))  # settings differ far more than runs do
    return {m: level + i + rng.normal(0.0, 1.0, (settings, runs)) for i, m in enumerate(methods)}


# ------------------------------------------------------------------------------------------ input conventions

@pytest.mark.parametrize("scores, match", [
    ({}, "non-empty dict"),
    ([[1.0, 2.0]], "non-empty dict"),
    ({"a": [[1.0, 2.0], [3.0]]}, "not a rectangular"),
    ({"a": [1.0, 2.0, 3.0]}, r"shape \(settings, runs\), got shape \(3,\)"),
    ({"a": [[1.0], [2.0]]}, "2 runs per setting"),
    ({"a": [[1.0, float("nan")], [2.0, 3.0]]}, r"1 missing or non-finite values at \(setting 0, run 1\)"),
    ({"a": np.zeros((3, 4)), "b": np.zeros((4, 3))}, r"same \(settings, runs\) shape.*a: \(3, 4\), b: \(4, 3\)"),
])
def test_the_scores_convention_is_validated(scores, match):
    with pytest.raises(ValueError, match=match):
        ag.iqm(scores, n_resamples=10)


def test_rliable_convention_and_mean_table():
    s = {"a": np.arange(6.0).reshape(2, 3), "b": np.ones((2, 3))}
    r = ag.to_rliable(s)
    assert r["a"].shape == (3, 2) and r["a"][2, 1] == 5.0  # run 2 of setting 1
    t = ag.mean_table(s, settings=[("resnet", "voc"), ("vit", "voc")])
    assert list(t.columns) == ["a", "b"] and list(t.index) == [("resnet", "voc"), ("vit", "voc")]
    assert t.loc[("vit", "voc"), "a"] == pytest.approx(4.0) and t["b"].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="3 setting labels for 2 settings"):
        ag.mean_table(s, settings=["x", "y", "z"])


# ------------------------------------------------------------------------------------------------------ IQM

def test_iqm_is_the_trimmed_mean_of_all_scores():
    # 12 scores 1..11 and one outlier 1000: the IQM drops the lowest and highest 3 -> mean of 4..9 = 6.5
    x = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 1000.0]])
    e = ag.iqm({"a": x}, n_resamples=RESAMPLES)["a"]
    assert e.value == pytest.approx(6.5) and e.value == pytest.approx(sps.trim_mean(x.ravel(), 0.25))
    assert abs(x.mean() - e.value) > 80  # ... which the plain mean is not
    assert (e.n_settings, e.n_runs, e.n_resamples, e.confidence) == (3, 4, RESAMPLES, 0.95)
    s = _scores()
    for m, est in ag.iqm(s, n_resamples=RESAMPLES).items():
        assert est.value == pytest.approx(sps.trim_mean(s[m], 0.25, axis=None))
        assert est.low < est.value < est.high


def test_the_interval_of_one_setting_is_scipys_bootstrap():
    x = np.array([[3.0, 9.0, 4.0, 7.0, 1.0, 8.0]])
    e = ag.iqm({"a": x}, n_resamples=RESAMPLES, seed=3)["a"]
    ref = sps.bootstrap((x[0],), lambda v, axis: sps.trim_mean(v, 0.25, axis=axis), n_resamples=RESAMPLES,
                        vectorized=True, method="percentile", random_state=np.random.default_rng(3))
    assert (e.low, e.high) == (ref.confidence_interval.low, ref.confidence_interval.high)
    assert ag.iqm({"a": x}, n_resamples=RESAMPLES, seed=3)["a"] == e  # reproducible ...
    assert ag.iqm({"a": x}, n_resamples=RESAMPLES, seed=4)["a"] != e  # ... and the seed matters
    # a method's interval does not depend on the other methods passed
    assert ag.iqm({"b": x + 1.0, "a": x}, n_resamples=RESAMPLES, seed=3)["a"] == e


def test_the_bootstrap_resamples_runs_within_settings_only():
    """Runs equal within each setting, settings far apart: resampling runs within a setting cannot move the IQM,
    so the interval is a point; pooling all scores (unstratified) would give a wide one."""
    x = np.repeat([[10.0], [20.0], [30.0], [40.0]], 5, axis=1)
    e = ag.iqm({"a": x}, n_resamples=RESAMPLES)["a"]
    assert e.low == pytest.approx(25.0) and e.high == pytest.approx(25.0) and e.value == pytest.approx(25.0)
    pooled = sps.bootstrap((x.ravel(),), lambda v, axis: sps.trim_mean(v, 0.25, axis=axis), vectorized=True,
                           n_resamples=RESAMPLES, method="percentile", random_state=np.random.default_rng(0))
    assert pooled.confidence_interval.high - pooled.confidence_interval.low > 5.0


# ------------------------------------------------------------------------------ probability of improvement

def test_probability_of_improvement_by_hand():
    # setting 0: x = 3, 5, 6 vs y = 2, 4, 5: 3 beats 1, 5 beats 2 and ties 1, 6 beats 3 -> 6.5 / 9
    # setting 1: x beats y on every pair -> 1; averaged over settings: (6.5 / 9 + 1) / 2
    s = {"x": np.array([[3.0, 5.0, 6.0], [10.0, 11.0, 12.0]]), "y": np.array([[2.0, 4.0, 5.0], [1.0, 2.0, 3.0]])}
    p = ag.probability_of_improvement(s, "x", "y", n_resamples=RESAMPLES)
    assert p.value == pytest.approx((6.5 / 9 + 1.0) / 2)
    assert p.low <= p.value <= p.high and p.high <= 1.0 and p.low > 0.5
    q = ag.probability_of_improvement(s, "y", "x", n_resamples=RESAMPLES)
    assert p.value + q.value == pytest.approx(1.0)


def test_a_dominating_method_is_1_and_identical_methods_one_half():
    s = _scores()
    better = {"a": s["gap"] + 100.0, "b": s["gap"]}
    d = ag.probability_of_improvement(better, "a", "b", n_resamples=RESAMPLES)
    assert (d.value, d.low, d.high) == (1.0, 1.0, 1.0)
    same = {"a": s["gap"], "b": s["gap"].copy()}
    e = ag.probability_of_improvement(same, "a", "b", n_resamples=RESAMPLES)
    assert e.value == pytest.approx(0.5) and e.low < 0.5 < e.high
    with pytest.raises(ValueError, match="unknown method 'c'; valid: a, b"):
        ag.probability_of_improvement(same, "a", "c")


# ------------------------------------------------------------------------------------- performance profile

def test_performance_profile_by_hand():
    x = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    p = ag.performance_profile({"a": x}, [0.0, 2.5, 4.5, 8.0], n_resamples=RESAMPLES)["a"]
    assert p.fraction == pytest.approx((1.0, 6 / 8, 4 / 8, 0.0))
    assert (p.low[0], p.high[0], p.low[3], p.high[3]) == (1.0, 1.0, 0.0, 0.0)  # nothing a resample can change
    assert all(lo <= f <= hi for lo, f, hi in zip(p.low, p.fraction, p.high)) and p.low[1] < p.high[1]
    with pytest.raises(ValueError, match="taus must be"):
        ag.performance_profile({"a": x}, [])


# ----------------------------------------------------------------------------------------------- rank test

@pytest.fixture
def autorank():
    return pytest.importorskip("autorank", reason="the rank test needs the stats extra: pip install -e '.[stats]'")


# Per-setting ranks (1 = best): A 1, 3, 1.5, 2, 1 -> 1.7; B 2, 1, 1.5, 3, 2 -> 1.9; C 3, 2, 3, 1, 3 -> 2.4
TABLE = pd.DataFrame({"A": [0.9, 0.6, 0.9, 0.5, 0.9], "B": [0.8, 0.8, 0.9, 0.4, 0.3],
                      "C": [0.7, 0.7, 0.1, 0.6, 0.2]}, index=[f"s{i}" for i in range(5)])


def _nemenyi_cd(k, n, alpha=0.05):
    return sps.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2) * math.sqrt(k * (k + 1) / (6 * n))


def test_rank_test_against_hand_ranks_scipy_and_the_nemenyi_formula(autorank, capsys):
    r = ag.rank_test(TABLE)
    assert r.methods == ("A", "B", "C") and r.mean_ranks == pytest.approx((1.7, 1.9, 2.4))
    assert r.pvalue == pytest.approx(sps.friedmanchisquare(*TABLE.T.values).pvalue, rel=1e-12)
    assert r.cd == pytest.approx(_nemenyi_cd(3, 5), abs=1e-3) and r.cd == pytest.approx(1.482, abs=1e-3)
    assert r.groups == (("A", "B", "C"),) and not r.significant and r.n_settings == 5
    assert capsys.readouterr().out == ""  # autorank's own printing is kept off stdout


def test_groups_are_the_methods_within_the_critical_difference(autorank):
    # A > B > C on every setting: mean ranks 1, 2, 3. With 10 settings CD = 1.048: A~B and B~C, A and C differ.
    n = 10
    table = pd.DataFrame({"A": np.full(n, 3.0), "B": np.full(n, 2.0), "C": np.full(n, 1.0)}) + np.arange(n)[:, None]
    r = ag.rank_test(table)
    assert r.mean_ranks == pytest.approx((1.0, 2.0, 3.0)) and r.cd == pytest.approx(_nemenyi_cd(3, n), abs=1e-3)
    assert r.groups == (("A", "B"), ("B", "C")) and r.significant
    # 40 settings: CD = 0.524, every pair differs
    big = pd.concat([table] * 4, ignore_index=True)
    r40 = ag.rank_test(big)
    assert r40.cd == pytest.approx(_nemenyi_cd(3, 4 * n), abs=1e-3) and r40.groups == ()
    # five methods, ranks 1..5 over 6 settings: CD(5, 6) = 2.490 joins methods at most 2 ranks apart
    five = pd.DataFrame({m: np.arange(6.0) ** 2 - i for i, m in enumerate("PQRST")})
    r5 = ag.rank_test(five)
    assert r5.cd == pytest.approx(_nemenyi_cd(5, 6), abs=1e-3)
    assert r5.groups == (("P", "Q", "R"), ("Q", "R", "S"), ("R", "S", "T"))


@pytest.mark.parametrize("table, match", [
    (TABLE.values, "must be a pandas DataFrame"),
    (TABLE[["A", "B"]], "at least 3 methods"),
    (TABLE.iloc[:4], "at least 5 settings"),
    (TABLE.assign(B=[0.8, np.nan, 0.9, 0.4, 0.3]), r"non-finite values at \(setting, method\) \[\('s1', 'B'\)\]"),
    (pd.concat([TABLE, TABLE["A"]], axis=1), r"unique, repeated: \['A'\]"),
])
def test_the_table_convention_is_validated(table, match):
    with pytest.raises(ValueError, match=match):
        ag.rank_test(table)


def test_plot_ranks_writes_png_and_svg(autorank, tmp_path):
    rng = np.random.default_rng(0)
    heads = ["gap", "csra", "mldecoder(groups=20)", "txdec", "ml_decoder_lite"]
    r = ag.rank_test(pd.DataFrame({m: rng.normal(60.0 + i, 1.0, 8) for i, m in enumerate(heads)}))
    png, svg = ag.plot_ranks(r, str(tmp_path / "figs" / "ranks"))
    assert (png, svg) == (str(tmp_path / "figs" / "ranks.png"), str(tmp_path / "figs" / "ranks.svg"))
    with open(png, "rb") as f:
        head = f.read(8)
    assert head == b"\x89PNG\r\n\x1a\n" and (tmp_path / "figs" / "ranks.png").stat().st_size > 5000
    text = (tmp_path / "figs" / "ranks.svg").read_text()
    assert text.startswith("<?xml") and "<svg" in text and len(text) > 5000


# ----------------------------------------------------------------------------- against rliable, where it runs

def _rliable():
    try:
        from rliable import library, metrics
    except Exception as e:  # rliable 1.2 pins arch < 8, whose import fails under pandas 3: not a bench error
        pytest.skip(f"rliable does not import here ({type(e).__name__}: {e})")
    return library, metrics


@pytest.mark.slow
def test_intervals_agree_with_rliable_where_it_imports():
    """rliable draws from numpy's global generator (its random_state is not used for resampling), so the
    intervals agree within Monte-Carlo error, not bit for bit: endpoints within 8% of the interval's width."""
    library, metrics = _rliable()
    s = _scores(seed=5, methods=("gap", "csra"))
    reps = 10_000
    ours = ag.iqm(s, n_resamples=reps)
    pair = ag.probability_of_improvement(s, "csra", "gap", n_resamples=reps)
    r = ag.to_rliable(s)
    state = np.random.get_state()
    try:
        np.random.seed(0)
        point, ci = library.get_interval_estimates(r, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
        ppoint, pci = library.get_interval_estimates({"p": (r["csra"], r["gap"])},
                                                     metrics.probability_of_improvement, reps=reps)
    finally:
        np.random.set_state(state)
    point["p"], ci["p"] = ppoint["p"], pci["p"]
    for m, e in [*ours.items(), ("p", pair)]:
        theirs = np.ravel(ci[m])
        width = e.high - e.low
        assert e.value == pytest.approx(float(np.ravel(point[m])[0]))
        assert abs(e.low - theirs[0]) < 0.08 * width and abs(e.high - theirs[1]) < 0.08 * width, (m, e, theirs)
