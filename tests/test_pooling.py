"""The pooling study: its grid and hypotheses as data, the interval behind its Pareto plot, and its report
section rendered from rows built here (never from a run)."""
from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest

from bench.heads import canonical_head_spec, create_head
from bench.studies.pooling import head_points, mean_interval, pooling_section
from bench.studies import Hypothesis, get_study
from bench.studies import pooling

LABELS = pooling.HEADS


def test_pooling_specs_are_their_canonical_labels():
    assert [canonical_head_spec(h) for h in pooling.HEADS] == pooling.HEADS  # so hypotheses select their rows


def test_pooling_grid_is_the_proxy_with_five_seeds_and_six_heads():
    (cfg,) = get_study("pooling").configs()
    assert not cfg.cost_only and cfg.protocol == "finetune" and cfg.dataset == "scenes"
    assert cfg.seeds == [0, 1, 2, 3, 4]
    assert [h.split("(")[0] for h in cfg.heads] == ["gap", "gmp", "avgmax", "csra", "mldecoder", "q2l"]
    for spec in cfg.heads:  # every head builds at the proxy backbone's width (test_resnet: 96 channels)
        head = create_head(spec, 96, cfg.num_classes)
        assert head.analytic_macs(tokens=9) > 0
    q2l = create_head(pooling.Q2L, 96, 48)
    mld = create_head(pooling.MLDECODER, 96, 48)
    assert q2l.embed == mld.embed == 128  # the same CPU-scale width for the two decoders


def test_pooling_overrides_for_a_tiny_run():
    (cfg,) = get_study("pooling").configs(seeds=[0], epochs=1)
    assert cfg.seeds == [0] and cfg.epochs == 1


def test_pooling_hypotheses_are_data_about_heads_in_the_grid():
    st = get_study("pooling")
    names = {h.name for h in st.hypotheses}
    assert {"mldecoder-vs-gmp", "gmp-vs-gap"} <= names
    by_name = {h.name: h for h in st.hypotheses}
    assert by_name["mldecoder-vs-gmp"].variant == {"head": "mldecoder(embed=128, ffn=512, heads=4)"}
    assert by_name["mldecoder-vs-gmp"].reference == {"head": "gmp"}
    assert by_name["gmp-vs-gap"].test == "better"
    for h in st.hypotheses:
        assert isinstance(h, Hypothesis) and h.metric == "map" and h.test in ("better", "not_worse")
        assert h.variant["head"] in LABELS and h.reference["head"] in LABELS and h.variant != h.reference
        assert h.margin > 0 if h.test == "not_worse" else h.margin == 0  # "better": above zero


def test_mean_interval_is_the_student_t_interval():
    mean, sd, low, high, n = mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975, 4} * sd / sqrt(n)
    assert (mean, n) == (3.0, 5) and sd == pytest.approx(math.sqrt(2.5))
    assert (low, high) == (pytest.approx(3 - half, rel=1e-3), pytest.approx(3 + half, rel=1e-3))  # 2.776: the table's 4 digits
    m1 = mean_interval([7.0, float("nan")])  # one finite value: no interval
    assert m1[0] == 7.0 and m1[4] == 1 and math.isnan(m1[2])


def _rows(offsets, seeds=range(5), noise=0.3, backbone="test_resnet"):
    """Study-like rows: each head's mAP = 30 + its offset + a per-seed effect shared by all heads + noise."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        shared = rng.normal(0, 2)
        for label, off in offsets.items():
            head = create_head(label, 96, 48)
            rows.append(dict(status="ok", backbone=backbone, dataset="scenes", img_size=96, head=label, seed=seed,
                             map=30 + off + shared + rng.normal(0, noise), map_chance=5.3,  # a constant predictor
                             gmacs_head=head.analytic_macs(tokens=9) / 1e9, gmacs_total=0.01,
                             params_head=sum(p.numel() for p in head.parameters())))
    rows.append(dict(status="error", backbone=backbone, dataset="scenes", img_size=96, head="gap", seed=9,
                     map=np.nan))  # failed cells are left out
    return pd.DataFrame(rows)


OFFSETS = dict(zip(LABELS, [0.0, 3.0, 2.5, 4.0, 8.0, 8.5]))


def test_head_points():
    df = _rows(OFFSETS)
    points = head_points(df)
    assert [p["head"] for p in points] == LABELS
    for p in points:
        vals = df[(df["head"] == p["head"]) & (df["status"] == "ok")]["map"].to_numpy()
        mean, sd, low, high, n = mean_interval(vals)
        assert (p["acc"], p["low"], p["high"], p["n"]) == (pytest.approx(mean), pytest.approx(low),
                                                             pytest.approx(high), 5)
    costs = {p["head"]: p["cost"] for p in points}
    assert costs["gap"] == costs["gmp"] < costs[LABELS[3]] < costs[LABELS[4]] < costs[LABELS[5]]


def test_pooling_section_renders_table_and_pareto_plot(tmp_path):
    df = _rows(OFFSETS)
    md, plots = pooling_section(df, str(tmp_path))
    assert plots == ["pooling_pareto.png"] and os.path.getsize(tmp_path / plots[0]) > 0
    gmp = next(p for p in head_points(df) if p["head"] == "gmp")
    line = next(l for l in md.splitlines() if l.startswith("| `gmp` |"))
    assert f"{gmp['acc']:.1f} ± {gmp['sd']:.1f}" in line and f"[{gmp['low']:.1f}, {gmp['high']:.1f}]" in line
    for label in LABELS:
        assert f"| `{label}` |" in md


def test_pooling_section_one_plot_per_setting_and_compute_table(tmp_path):
    df = pd.concat([_rows(OFFSETS), _rows(OFFSETS, backbone="resnet10t")])
    compute = pd.DataFrame([dict(status="ok", backbone="tresnet_m", img_size=448, head=h, gmacs_total=g)
                            for h, g in (("gap", 22.94), ("gmp", 22.94), ("mldecoder", 23.85))])
    md, plots = pooling_section(df, str(tmp_path), compute_df=compute)
    assert sorted(os.path.basename(p) for p in plots) == ["pooling_pareto_0.png", "pooling_pareto_1.png"]
    assert "| `tresnet_m` | 448 | 22.94 | 22.94 | 23.85 |" in md


def test_pooling_section_before_the_study_has_run(tmp_path):
    md, plots = pooling_section(pd.DataFrame(columns=["status", "head", "map"]), str(tmp_path))
    assert plots == [] and "Not run yet" in md


def test_pooling_verdicts_come_from_bench_stats():
    from bench.analysis import stats

    study = get_study("pooling")
    df = _rows(OFFSETS)  # ML-Decoder 5 points above GMP, GMP 3 above GAP, with seed noise 0.3: clear cases
    outcome = {v.hypothesis.name: v.outcome for v in stats.evaluate(study, df)}
    assert outcome["mldecoder-vs-gmp"] == "supported" and outcome["gmp-vs-gap"] == "supported"
    flipped = _rows({**OFFSETS, "gmp": -3.0})  # GMP now 3 points below GAP
    outcome = {v.hypothesis.name: v.outcome for v in stats.evaluate(study, flipped)}
    assert outcome["gmp-vs-gap"] == "contradicted"


def test_plot_accuracy_vs_cost_writes_files_and_rejects_nothing(tmp_path):
    from bench.report.plots import plot_accuracy_vs_cost

    pts = [dict(head="a", cost=1e-4, acc=30.0, low=29.0, high=31.0, n=5, metric="map"),
           dict(head="b", cost=1e-2, acc=33.0, low=math.nan, high=math.nan, n=1, metric="map")]
    files = plot_accuracy_vs_cost(pts, str(tmp_path), "p", "t")
    assert [os.path.basename(f) for f in files] == ["p.png", "p.svg"]
    with pytest.raises(ValueError, match="at least one point"):
        plot_accuracy_vs_cost([], str(tmp_path), "p", "t")
