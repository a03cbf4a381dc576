"""`bench study probing`: its grid, its hypotheses, and its report section rendered from synthetic rows built to
give known answers (a head clearly better than the linear probe, one clearly worse, the rest level); a study
beyond the paper's claims registered from one file gets its own section in the report."""
import csv
import os

import numpy as np
import pytest
from scipy import stats as sps

from bench.report import render as rp
from bench.run.results import COLUMNS
from bench.studies import STUDIES, Study, get_study
from bench.studies import probing as P

ENV = dict(status="ok", torch_version="2.0.0", timm_version="1.0.0", bench_version="0.1.0", cpu="Fixture CPU",
           gpu="", threads=2, git_commit="abc1234", hostname="fixture", weights="pretrained")
BETTER, WORSE = "ep", "lseplus"  # built +6 points above / 6 below the linear probe in every setting
NOISE = [0.3, -0.2, 0.1, -0.4, 0.2]


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(r)


def _rows():
    rows = []
    heads = P.HEADS + [P.KNN_HEAD]
    for ds, metric in P.METRICS.items():
        n = 10 if metric == "top1" else 100
        for b, bb in enumerate(P.BACKBONES):
            for i, head in enumerate(P.HEADS):
                rows.append(dict(run_id="study-probing", backbone=bb, head=head, img_size=128, num_classes=n,
                                 batch_size=64, device="cpu", dtype="fp32", params_head=1000 * (i + 1),
                                 gmacs_head=0.001 * (i + 1), train_step_ms_p50=2.0 * (i + 1), **ENV,
                                 timestamp="2026-12-03T10:00:00"))
            for h, head in enumerate(heads):
                effect = 6.0 if head == BETTER else -6.0 if head == WORSE else 0.05 * h
                for seed in range(5):
                    value = 60.0 + 3 * b + effect + NOISE[(seed + h) % 5]
                    rows.append(dict(run_id="study-probing", backbone=bb, head=head, img_size=128, num_classes=n,
                                     device="cpu", dtype="fp32", dataset=ds, protocol="probe", epochs=2,
                                     seed=seed, params_head=0 if head == P.KNN_HEAD else 1000 * (h + 1),
                                     gmacs_head=0.001 * (h + 1), train_s=10.0, **{metric: round(value, 4)},
                                     **{f"{metric}_chance": 10.0}, **ENV, timestamp="2026-12-03T11:00:00"))
    return rows


def test_grid_covers_every_head_backbone_and_dataset():
    study = get_study("probing")
    assert study.claim is None and study.section is not None
    cfgs = study.configs("/tmp/unused")
    assert sorted(c.dataset for c in cfgs) == sorted(P.METRICS)
    for c in cfgs:
        assert c.backbones == P.BACKBONES and c.pretrained and c.protocol == "probe" and c.knn == P.KNN
        assert c.seeds == [0, 1, 2, 3, 4] and c.heads == P.HEADS
    # one hypothesis per (head or k-NN, dataset), each decided per backbone against the linear probe
    assert len(study.hypotheses) == 2 * (len(P.HEADS) - 1 + 1)
    assert all(h.reference["head"] == P.LINEAR and h.test == "better" and h.margin == 0.0 for h in study.hypotheses)


@pytest.fixture
def report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("runs")
    _write(os.path.join("runs", "study-probing.csv"), _rows())
    res = rp.build_report("runs", "out", None)
    return res, open(res["readme"]).read()


def test_section_renders_leaderboard_intervals_aggregates_and_plots(report):
    res, text = report
    part = text[text.index("## Beyond the paper: Attentive probes"):]
    assert "**fashion-mnist**" in part and "**emoji**" in part
    assert "| head | lite0 | lite1 | lite2 | head params | head GMACs | train step (ms) |" in part
    # the linear probe's lite0 Fashion-MNIST top-1: mean of 60 + noise over the seeds
    values = [60.0 + NOISE[(s + 0) % 5] for s in range(5)]
    half = sps.t.ppf(0.975, 4) * np.std(values, ddof=1) / np.sqrt(5)
    assert f"| `gap(bn=True)` | {np.mean(values):.1f} [{np.mean(values) - half:.1f}, {np.mean(values) + half:.1f}]" in part
    # per setting: the +6 head is better everywhere, the -6 head nowhere
    line = next(l for l in part.splitlines() if l.startswith(f"| `{BETTER}` | +"))
    assert line.count("**better**") == 6
    line = next(l for l in part.splitlines() if l.startswith(f"| `{WORSE}` | -"))
    assert line.count("not better") == 6
    # across settings: P(better > linear) = 1, P(worse > linear) = 0, and the IQM of the linear probe is
    # scipy's trimmed mean of its 30 scores
    aggregate = part[part.index("| head | IQM |"):]
    line = next(l for l in aggregate.splitlines() if l.startswith(f"| `{BETTER}` |"))
    assert "| 1.00 [1.00, 1.00] |" in line
    line = next(l for l in aggregate.splitlines() if l.startswith(f"| `{WORSE}` |"))
    assert "| 0.00 [0.00, 0.00] |" in line
    lin = [r for r in _rows() if r["head"] == P.LINEAR and r.get("seed") is not None]
    scores = [r.get("top1", r.get("map")) for r in lin]
    assert f"| `{P.LINEAR}` | {sps.trim_mean(scores, 0.25):.1f} [" in part
    assert "Friedman test over 6 settings" in part
    for png in ("probing_ranks.png", "probing_pareto.png"):
        assert f"]({png})" in part and os.path.exists(os.path.join("out", png))
    assert "*Training time:*" in part


def test_the_best_head_ranks_first(report):
    _, text = report
    iqm_table = text[text.index("| head | IQM |"):]
    first = iqm_table.splitlines()[2]
    assert first.startswith(f"| `{BETTER}` |")


def test_a_study_beyond_the_claims_gets_its_own_section_from_one_file(tmp_path, monkeypatch):
    """A study that tests no claim of the paper, with its own section function, registered from one place: the
    renderer names no study, yet the section is in the report."""
    from bench.studies import PROXY

    def section(df, ctx):
        return f"My section: {len(df)} rows, best head {df.sort_values('map').iloc[-1]['head']}.", []

    study = Study(name="tiny-probe", claim=None, statement="A tiny study beyond the paper.", paper="none",
                  base=dict(PROXY), variations=[dict(heads=["gap", "gmp"])], section=section)
    monkeypatch.setitem(STUDIES._entries, "tiny-probe", study)
    monkeypatch.chdir(tmp_path)
    os.makedirs("runs")
    rows = [dict(run_id="study-tiny-probe", backbone="test_resnet", head=h, img_size=96, num_classes=48,
                 device="cpu", dtype="fp32", dataset="scenes", protocol="finetune", epochs=5, seed=s, map=m + s,
                 map_chance=5.0, train_s=1.0, **ENV, timestamp="2026-12-03T11:00:00")
            for h, m in (("gap", 40.0), ("gmp", 45.0)) for s in range(3)]
    _write(os.path.join("runs", "study-tiny-probe.csv"), rows)
    res = rp.build_report("runs", "out", None)
    text = open(res["readme"]).read()
    assert "## Beyond the paper: A tiny study beyond the paper." in text
    assert "My section: 6 rows, best head gmp." in text
    assert "bench study tiny-probe" in text
    with open(rp.__file__) as f:
        renderer = f.read()
    assert "tiny-probe" not in renderer and "probing" not in renderer
