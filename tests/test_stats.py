"""bench.analysis.stats: paired intervals against hand-computed numbers, decisions against cases of known truth, the
informative-setting checks, and the hypotheses of a study evaluated on rows."""
import math

import numpy as np
import pandas as pd
import pytest

from bench.analysis import stats
from bench.run.results import COLUMNS
from bench.studies import Hypothesis, Study


# ------------------------------------------------------------------------------------------ the t quantile

@pytest.mark.parametrize("df, t", [(1, 12.706205), (2, 4.302653), (4, 2.776445), (9, 2.262157), (30, 2.042272),
                                   (1000, 1.962339)])
def test_t_quantile_matches_the_table(df, t):
    """Two-sided 95% critical values of Student's t (any statistics table)."""
    assert stats.t_quantile(0.975, df) == pytest.approx(t, abs=1e-6)
    assert stats.t_quantile(0.025, df) == pytest.approx(-t, abs=1e-6)


def test_t_cdf_is_the_distribution():
    assert stats.t_cdf(0.0, 3) == pytest.approx(0.5)
    # df = 1 is the Cauchy distribution: P(T <= 1) = 1/2 + atan(1)/pi = 0.75
    assert stats.t_cdf(1.0, 1) == pytest.approx(0.75, abs=1e-12)
    with pytest.raises(ValueError, match="df must be"):
        stats.t_quantile(0.975, 0)


# ---------------------------------------------------------------------------------- hand-computed intervals

def test_interval_of_three_seeds_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, t_{0.975, 2} = 4.302653, half-width 4.302653 / sqrt(3) = 2.484138
    d = stats.paired_difference({0: 11.0, 1: 12.0, 2: 13.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert (d.n, d.seeds) == (3, (0, 1, 2))
    assert d.mean == pytest.approx(2.0) and d.sd == pytest.approx(1.0)
    assert d.low == pytest.approx(-0.484138, abs=1e-6) and d.high == pytest.approx(4.484138, abs=1e-6)


def test_interval_of_five_seeds_by_hand():
    # differences 1..5: mean 3, sd sqrt(2.5) = 1.581139, t_{0.975, 4} = 2.776445,
    # half-width 2.776445 * 1.581139 / sqrt(5) = 1.963243
    a = {s: 50.0 + s + 1 for s in range(5)}
    b = {s: 50.0 for s in range(5)}
    d = stats.paired_difference(a, b)
    assert d.mean == pytest.approx(3.0) and d.sd == pytest.approx(1.581139, abs=1e-6)
    assert d.low == pytest.approx(1.036757, abs=1e-6) and d.high == pytest.approx(4.963243, abs=1e-6)


def test_the_pairing_removes_what_the_seeds_share():
    """Seed effects common to both heads (+-10 points) cancel in the paired difference: -0.5 every seed."""
    common = {0: 40.0, 1: 50.0, 2: 60.0, 3: 45.0}
    d = stats.paired_difference({s: v - 0.5 for s, v in common.items()}, common)
    assert d.mean == pytest.approx(-0.5) and d.sd == pytest.approx(0.0, abs=1e-12)
    assert d.low == pytest.approx(-0.5) and d.high == pytest.approx(-0.5)
    assert stats.decide(d, "not_worse", margin=1.0).outcome == stats.SUPPORTED


def test_unpaired_seeds_are_dropped():
    a = {0: 61.0, 1: 62.0, 2: 63.0, 7: 90.0}
    b = {1: 60.0, 2: 60.0, 3: 10.0, 0: float("nan")}
    d = stats.paired_difference(a, b)
    assert d.seeds == (1, 2) and d.n == 2
    assert d.mean == pytest.approx(2.5)  # (2 + 3) / 2; seeds 7, 3 unpaired and seed 0's NaN dropped
    # n = 2: sd = 0.7071068, t_{0.975, 1} = 12.706205, half-width 12.706205 * 0.7071068 / sqrt(2) = 6.353102
    assert d.low == pytest.approx(2.5 - 6.353102, abs=1e-5)


@pytest.mark.parametrize("a, b", [({0: 1.0}, {0: 0.0}), ({0: 1.0, 1: 2.0}, {2: 0.0, 3: 1.0}), ({}, {})])
def test_fewer_than_two_shared_seeds_is_inconclusive(a, b):
    d = stats.paired_difference(a, b)
    assert d.n < 2 and math.isnan(d.low) and math.isnan(d.high)
    for test, margin in (("not_worse", 1.0), ("better", None)):
        v = stats.decide(d, test, margin=margin)
        assert v.outcome == stats.INCONCLUSIVE and v.seeds_needed is None


# ------------------------------------------------------------------------------------------------- decide

def test_decide_rules_at_their_thresholds():
    d = stats.Difference(mean=0.0, sd=1.0, n=5, low=-0.9, high=0.9)
    assert stats.decide(d, "not_worse", margin=1.0).outcome == stats.SUPPORTED  # low -0.9 > -1
    assert stats.decide(d, "not_worse", margin=0.5).outcome == stats.INCONCLUSIVE
    assert stats.decide(d, "better").outcome == stats.INCONCLUSIVE
    worse = stats.Difference(mean=-3.0, sd=1.0, n=5, low=-3.9, high=-2.1)
    assert stats.decide(worse, "not_worse", margin=2.0).outcome == stats.CONTRADICTED  # high -2.1 < -2
    assert stats.decide(worse, "better").outcome == stats.CONTRADICTED
    gain = stats.Difference(mean=3.0, sd=1.0, n=5, low=2.1, high=3.9)
    assert stats.decide(gain, "better").outcome == stats.SUPPORTED
    assert stats.decide(gain, "better", margin=2.5).outcome == stats.INCONCLUSIVE  # a gain of 2.5 not shown
    assert stats.decide(gain, "better", margin=4.0).outcome == stats.CONTRADICTED  # the gain is below 4


def test_decide_needs_a_valid_test_and_margin():
    d = stats.Difference(0.0, 1.0, 5, -1.0, 1.0)
    with pytest.raises(ValueError, match="unknown test 'same'; valid: not_worse, better"):
        stats.decide(d, "same", margin=1.0)
    with pytest.raises(ValueError, match="needs a margin"):
        stats.decide(d, "not_worse")
    with pytest.raises(ValueError, match="margin must be"):
        stats.decide(d, "not_worse", margin=-1.0)


def test_seeds_needed_by_hand():
    # better, differences 1, 2, 3 (mean 2, sd 1): decided when t_{n-1} / sqrt(n) < 2.
    # n = 3: 4.3027 / 1.7321 = 2.484 (no); n = 4: 3.1824 / 2 = 1.591 (yes) -> 4
    d = stats.paired_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0})
    v = stats.decide(d, "better")
    assert v.outcome == stats.INCONCLUSIVE and v.seeds_needed == 4
    # At n = 4 with the same mean and sd (differences 2 -+ 0.866), the interval indeed decides.
    x = np.array([-1.0, -1.0, 1.0, 1.0]) / np.std([-1.0, -1.0, 1.0, 1.0], ddof=1) + 2.0
    d4 = stats.paired_difference(dict(enumerate(x)), {s: 0.0 for s in range(4)})
    assert d4.sd == pytest.approx(1.0) and stats.decide(d4, "better").outcome == stats.SUPPORTED
    # not_worse, mean 0, sd 1, margin 1: t_{n-1} / sqrt(n) < 1; n = 6: 2.5706 / 2.4495 = 1.049 (no);
    # n = 7: 2.4469 / 2.6458 = 0.925 (yes) -> 7
    d = stats.paired_difference({0: -1.0, 1: 0.0, 2: 1.0}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert stats.decide(d, "not_worse", margin=1.0).seeds_needed == 7
    # a mean sitting on the threshold is never decided by more seeds
    assert stats.decide(d, "better").seeds_needed is None
    # decided outcomes need no more seeds
    assert stats.decide(d, "not_worse", margin=5.0).seeds_needed is None


def _simulate(rng, true_diff, noise, n, seed_effect=5.0):
    """Two heads over n seeds: a shared seed effect (backbone init, data order), the head's true difference and
    per-run noise."""
    shared = rng.normal(0.0, seed_effect, n)
    a = {s: 60.0 + shared[s] + true_diff + rng.normal(0.0, noise) for s in range(n)}
    b = {s: 60.0 + shared[s] + rng.normal(0.0, noise) for s in range(n)}
    return stats.paired_difference(a, b)


@pytest.mark.parametrize("true_diff, test, margin, expected", [
    (0.0, "not_worse", 1.0, stats.SUPPORTED),       # truly equal, margin 1, tight noise
    (-3.0, "not_worse", 1.0, stats.CONTRADICTED),   # truly 3 points worse
    (+2.0, "better", None, stats.SUPPORTED),         # truly 2 points better
    (-2.0, "better", None, stats.CONTRADICTED),
])
def test_known_truth_is_recovered_with_enough_seeds(true_diff, test, margin, expected):
    rng = np.random.default_rng(0)
    outcomes = [stats.decide(_simulate(rng, true_diff, 0.5, 10), test, margin).outcome for _ in range(50)]
    assert outcomes.count(expected) >= 45  # the right verdict nearly always ...
    wrong = stats.CONTRADICTED if expected == stats.SUPPORTED else stats.SUPPORTED
    assert outcomes.count(wrong) <= 1  # ... and the opposite one (almost) never


def test_a_weak_experiment_is_inconclusive_and_says_how_many_seeds():
    """A true 2-point loss under 3-point noise with 3 seeds: the interval spans the margin, as in the old claim 1
    (-0.4 +- 3.3 'within noise' would have passed a real 2-point loss)."""
    rng = np.random.default_rng(1)
    results = [stats.decide(_simulate(rng, -2.0, 2.0, 3), "not_worse", 1.0) for _ in range(200)]
    inconclusive = [v for v in results if v.outcome == stats.INCONCLUSIVE]
    assert len(inconclusive) >= 150
    assert sum(v.outcome == stats.SUPPORTED for v in results) <= 10  # a real loss is (almost) never "supported"
    assert all(v.seeds_needed is None or v.seeds_needed > 3 for v in inconclusive)
    assert sum(v.seeds_needed is not None for v in inconclusive) >= 0.9 * len(inconclusive)


def test_the_interval_covers_the_truth_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    hits = 0
    reps = 2000
    for _ in range(reps):
        d = _simulate(rng, 1.5, 2.0, 5)
        hits += d.low <= 1.5 <= d.high
    assert 0.94 <= hits / reps <= 0.96  # binomial sd at 2000 reps: 0.5 points


# ----------------------------------------------------------------------------------- hypotheses on rows

def _rows(spec):
    """spec: list of (head, dataset, {seed: map}, extra columns) -> a results DataFrame."""
    out = []
    for head, dataset, values, extra in spec:
        for seed, v in values.items():
            out.append(dict(run_id="study-x", backbone="test_resnet", head=head, img_size=96, num_classes=48,
                            dataset=dataset, protocol="finetune", epochs=5, seed=seed, map=v, status="ok",
                            **extra))
    df = pd.DataFrame(out)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = pd.NA
    return df


def _study(*hypotheses):
    return Study(name="x", claim=9, statement="s", paper="p", base={}, variations=[], hypotheses=list(hypotheses))


A, B = "mldecoder(embed=128, ffn=512, heads=4)", 'mldecoder(embed=128, ffn=512, heads=4, queries="learnable")'
CHANCE = dict(map_chance=5.3)


def test_evaluate_decides_and_matches_specs_in_any_order():
    h = Hypothesis(name="fixed ~ learnable", statement="", margin=1.0,
                   variant={"head": "mldecoder(heads=4, embed=128, ffn=512)"}, reference={"head": B})
    df = _rows([(A, "scenes", {s: 30.0 + s for s in range(5)}, CHANCE),
                (B, "scenes", {s: 30.1 + s for s in range(4)}, CHANCE)])
    [v] = stats.evaluate(_study(h), df)
    assert v.outcome == stats.SUPPORTED and v.difference.n == 4  # seed 4 has no learnable row: unpaired
    assert v.difference.mean == pytest.approx(-0.1) and v.chance == pytest.approx(5.3)
    assert v.reference_mean == pytest.approx(31.6)


def test_a_reference_near_chance_is_uninformative_never_supported():
    h = Hypothesis(name="vit", statement="", margin=1.0, variant={"head": A}, reference={"head": "gap"})
    df = _rows([(A, "scenes", {s: 8.0 + 0.01 * s for s in range(5)}, CHANCE),
                ("gap", "scenes", {s: 8.0 for s in range(5)}, CHANCE)])
    [v] = stats.evaluate(_study(h), df)
    assert v.decision.outcome == stats.SUPPORTED  # the interval alone would say "not worse" ...
    assert v.outcome == stats.UNINFORMATIVE  # ... but 8 mAP is 2.7 above a chance of 5.3
    assert "only +2.7 above chance (5.3" in v.reasons[0]
    # without a recorded chance level the setting cannot be shown to be informative either
    [v] = stats.evaluate(_study(h), df.drop(columns=["map_chance"]))
    assert v.outcome == stats.UNINFORMATIVE and "no chance level recorded" in v.reasons[0]


def test_chance_from_a_control_and_no_chance_check():
    h = Hypothesis(name="zsl", statement="", test="better", metric="map",
                   variant={"dataset": "scenes(holdout=8)"}, reference={"dataset": "scenes(holdout=8)"},
                   chance={"dataset": 'scenes(embeddings="random", holdout=8)'})
    df = _rows([(A, "scenes(holdout=8)", {s: 20.0 for s in range(3)}, {}),
                (A, 'scenes(holdout=8, embeddings="random")', {s: 15.0 for s in range(3)}, {})])
    [v] = stats.evaluate(_study(h), df)
    assert v.chance == pytest.approx(15.0) and v.outcome == stats.UNINFORMATIVE  # 5 above the control < 10
    h2 = Hypothesis(name="vs control", statement="", test="better", above_chance=None,
                    variant={"dataset": "scenes(holdout=8)"},
                    reference={"dataset": 'scenes(holdout=8, embeddings="random")'})
    df.loc[df["dataset"] == "scenes(holdout=8)", "map"] = [20.0, 21.0, 22.5]
    [v] = stats.evaluate(_study(h2), df)
    assert v.outcome == stats.SUPPORTED and v.chance is None


def test_variants_that_did_not_really_differ_are_uninformative():
    h = Hypothesis(name="queries", statement="", margin=1.0, variant={"head": A}, reference={"head": B},
                   differ="query_shift", differ_min=0.2)
    still = _rows([(A, "scenes", {s: 30.0 + s for s in range(5)}, dict(CHANCE, query_shift=0.0)),
                   (B, "scenes", {s: 30.0 + s for s in range(5)}, dict(CHANCE, query_shift=0.03))])
    [v] = stats.evaluate(_study(h), still)
    assert v.outcome == stats.UNINFORMATIVE and "barely differ" in v.reasons[0] and v.shift == (0.0, 0.03)
    moved = still.copy()
    moved.loc[moved["head"] == B, "query_shift"] = 0.5
    [v] = stats.evaluate(_study(h), moved)
    assert v.outcome == stats.SUPPORTED
    [v] = stats.evaluate(_study(h), still.drop(columns=["query_shift"]))
    assert v.outcome == stats.UNINFORMATIVE and "no query_shift recorded" in v.reasons[0]


def test_one_verdict_per_setting_and_missing_sides_not_run():
    h = Hypothesis(name="drop-in", statement="", margin=1.0, variant={"head": A}, reference={"head": "gap"},
                   per=("dataset",))
    df = _rows([(A, "scenes", {s: 30.0 for s in range(3)}, CHANCE), ("gap", "scenes", {s: 30.0 for s in range(3)},
                                                                     CHANCE),
                (A, "other", {s: 30.0 for s in range(3)}, CHANCE)])
    verdicts = stats.evaluate(_study(h), df)
    assert [(v.setting, v.outcome) for v in verdicts] == [({"dataset": "scenes"}, stats.SUPPORTED),
                                                          ({"dataset": "other"}, stats.NOT_RUN)]
    assert verdicts[1].reasons == ["no rows for the reference"]
    assert [v.outcome for v in stats.evaluate(_study(h), None)] == [stats.NOT_RUN]


def test_an_ambiguous_selection_is_a_value_error():
    h = Hypothesis(name="ambiguous", statement="", margin=1.0, variant={"dataset": "scenes"},
                   reference={"head": "gap"})
    df = _rows([(A, "scenes", {0: 30.0, 1: 31.0}, CHANCE), ("gap", "scenes", {0: 30.0, 1: 31.0}, CHANCE)])
    with pytest.raises(ValueError, match="seed 0 has more than one row"):
        stats.evaluate(_study(h), df)


def test_failed_rows_and_duplicates_do_not_count():
    h = Hypothesis(name="h", statement="", margin=1.0, variant={"head": A}, reference={"head": "gap"})
    df = _rows([(A, "scenes", {0: 30.0, 1: 31.0, 2: 32.0}, CHANCE), ("gap", "scenes", {0: 30.0, 1: 31.0, 2: 32.0},
                                                                     CHANCE)])
    again = df.iloc[[0]].copy()
    again["map"] = 10.0  # the same cell measured again: the latest row counts
    bad = df.iloc[[1]].copy()
    bad["status"], bad["map"] = "error", float("nan")
    [v] = stats.evaluate(_study(h), pd.concat([df, again, bad], ignore_index=True))
    assert v.difference.n == 3 and v.variant_mean == pytest.approx((10.0 + 31.0 + 32.0) / 3)


def test_hypothesis_is_validated_as_data():
    with pytest.raises(ValueError, match="needs a margin"):
        Hypothesis(name="h", statement="", variant={"head": A}, reference={"head": "gap"})
    with pytest.raises(ValueError, match="unknown test"):
        Hypothesis(name="h", statement="", variant={"head": A}, reference={"head": "gap"}, test="equal")
    assert Hypothesis(name="h", statement="", variant={"head": A}, reference={"head": "gap"},
                      test="better").margin == 0.0


# ------------------------------------------------------------------------------------- bench run's summary

def test_run_summary_compares_heads_by_the_paired_difference():
    """`bench run`'s table pairs each head with the backbone's first head by seed: a steady +1 over seed levels
    that vary by 10 points is "better" (unpaired, the spread would hide it); a head that wanders is "not
    distinguishable"."""
    from bench.commands import summary_text
    from bench.report.tables import summarize

    level = {0: 40.0, 1: 50.0, 2: 45.0}
    spec = [("gap", level), ("mldecoder", {s: v + 1.0 for s, v in level.items()}),
            ("txdec", {0: 43.0, 1: 48.0, 2: 46.0}), ("csra", {s: v - 2.0 for s, v in level.items()})]
    rows = []
    for backbone in ("b1", "b2"):
        for head, values in spec:
            rows += [dict(backbone=backbone, head=head, seed=s, map=v, status="ok") for s, v in values.items()]
    df = pd.DataFrame(rows)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = pd.NA
    out = {(r["backbone"], r["head"]): r for r in summarize(df)}
    assert "delta" not in out[("b1", "gap")]
    r = out[("b1", "mldecoder")]
    assert r["delta"] == pytest.approx(1.0) and r["delta_low"] == pytest.approx(1.0) and r["delta_n"] == 3
    assert r["delta_word"] == "better"
    assert out[("b2", "csra")]["delta_word"] == "worse"  # paired within its own backbone
    # txdec - gap: +3, -2, +1 -> mean 0.67, sd 2.52, interval +-6.26
    t = out[("b1", "txdec")]
    assert t["delta_word"] == "not distinguishable at 3 seeds"
    assert t["delta_high"] - t["delta"] == pytest.approx(4.302653 * 2.516611 / math.sqrt(3), abs=1e-4)
    text = summary_text(df)
    assert "+1.0 [+1.0, +1.0]" in text and "better" in text and "not distinguishable at 3 seeds" in text
    one = df[df["seed"] == 0]
    assert summarize(one)[1]["delta_word"] == "not distinguishable at 1 seed (no interval)"
