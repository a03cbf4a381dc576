"""Studies are data: each grid expands as the issue specifies, and an interrupted study resumes without
rerunning the cells it finished."""
import re

import pandas as pd
import pytest

from bench.run import runner
from bench.cli import main
from bench.studies import get_study, grid, list_studies

SCRATCH = ["backbone-vs-head", "classes", "compute", "drop-in", "groups", "pooling", "queries", "self-attention",
           "zsl"]
# Every accuracy claim's pretrained rung, and the fine-tuned setting of claim 3's main comparison.
PRETRAINED = ["backbone-vs-head-pretrained", "drop-in-pretrained", "groups-pretrained", "pooling-pretrained",
              "queries-pretrained", "self-attention-pretrained", "zsl-pretrained"]
FINETUNED = ["pooling-finetuned"]
ALL = SCRATCH + PRETRAINED + FINETUNED
BEYOND = ["probing"]  # studies beyond the paper's claims (claim None; tests/test_probing_study.py)
LITES = {f"tf_efficientnet_lite{i}" for i in range(3)}


def test_every_claim_has_a_study():
    assert list_studies() == sorted(ALL + BEYOND)
    assert sorted({get_study(n).claim for n in SCRATCH}) == [1, 2, 3, 4, 5, 6, 7]
    assert all(get_study(n).claim is None for n in BEYOND)
    assert {n: get_study(n).rung for n in ALL} == {**{n: "scratch" for n in SCRATCH},
                                                   **{n: "pretrained" for n in PRETRAINED}, "pooling-finetuned": "finetuned"}


def test_every_accuracy_claim_has_a_pretrained_rung():
    """Claims 1-7 each on frozen ImageNet-pretrained EfficientNet-Lites and real images, five seeds, with the
    from-scratch rung's hypotheses (same names, tests and margins) where the heads are the same."""
    assert sorted(get_study(n).claim for n in PRETRAINED) == [1, 2, 3, 4, 5, 6, 7]
    for name in PRETRAINED:
        study = get_study(name)
        for c in study.configs():
            assert c.pretrained and c.protocol == "probe" and not c.cost_only and c.seeds == [0, 1, 2, 3, 4]
            assert set(c.backbones) <= LITES and c.dataset.split("(")[0] in ("emoji", "fashion-mnist")
        first = get_study(name.replace("-pretrained", ""))  # its sibling on the first rung (Study.on_rung)
        assert (study.claim, study.statement, study.paper) == (first.claim, first.statement, first.paper)
        scratch = {h.name: h for h in first.hypotheses}
        for h in study.hypotheses:
            if h.name in scratch:
                assert (h.test, h.margin, h.metric) == (scratch[h.name].test, scratch[h.name].margin,
                                                        scratch[h.name].metric), h.name
    [ft] = get_study("pooling-finetuned").configs()
    assert ft.protocol == "finetune" and ft.pretrained and ft.backbones == ["tf_efficientnet_lite0"]
    assert {h.name for h in get_study("pooling-finetuned").hypotheses} >= {"mldecoder-vs-gap"}


def test_pretrained_rung_grids():
    [groups] = get_study("groups-pretrained").configs()
    assert groups.num_classes >= 1000  # the paper's large label space
    assert [re.search(r"groups=(\d+)", h).group(1) if "groups" in h else "100" for h in groups.heads] == [
        "1", "10", "50", "100"]
    pooling = get_study("pooling-pretrained")
    assert set(pooling.configs()[0].backbones) == LITES
    assert all(h.per == ("backbone", "dataset", "img_size") for h in pooling.hypotheses)  # a verdict per backbone
    pairs = {(h.variant["backbone"], h.reference["backbone"]) for h in get_study("backbone-vs-head-pretrained").hypotheses}
    assert ("tf_efficientnet_lite0", "tf_efficientnet_lite1") in pairs and ("tf_efficientnet_lite0",
                                                                           "tf_efficientnet_lite2") in pairs
    [q] = get_study("queries-pretrained").hypotheses
    assert q.differ == "query_shift" and q.differ_min > 0
    datasets = {c.dataset.split("(")[0] for c in get_study("drop-in-pretrained").configs()}
    assert datasets == {"emoji", "fashion-mnist"}  # multi-label and single-label
    assert "vit" in get_study("drop-in-pretrained").notes.lower()  # says why no transformer
    zsl = get_study("zsl-pretrained").configs()
    assert {'random' in c.dataset for c in zsl} == {True, False} and all("holdout" in c.dataset for c in zsl)


def test_grid_is_a_product():
    assert grid(a=[1, 2], b=["x"]) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]


def test_compute_grid():
    cfgs = get_study("compute").configs()
    assert {(c.backbones[0], c.img_size) for c in cfgs} == {
        (b, s) for b in ("tresnet_m", "tresnet_v2_l", "tresnet_l") for s in (224, 448, 640)}
    assert all(c.heads == ["gap", "gmp", "mldecoder"] and c.cost_only and c.num_classes == 80 for c in cfgs)


def test_classes_grid():
    cfgs = get_study("classes").configs()
    assert [c.num_classes for c in cfgs] == [80, 1000, 5000, 9605, 20000] * 2
    for c in cfgs:  # gap, the full decoder, ML-Decoder full decoding (K=N) and K=100 (the default label)
        assert c.heads == ["gap", "txdec", f"mldecoder(groups={c.num_classes})", "mldecoder"]
    latency, memory = cfgs[:5], cfgs[5:]  # memory at scale: batch 32, the training step, no latency
    assert all(c.batch_sizes == [1] and c.latency and not c.memory and not c.train_timing for c in latency)
    assert all(c.batch_sizes == [32] and not c.latency and c.memory and c.train_timing for c in memory)
    assert all(c.backbones == ["tresnet_m"] and c.img_size == 224 and c.cost_only for c in cfgs)


def test_groups_grid():
    cost, acc = get_study("groups").configs()
    assert cost.cost_only and cost.num_classes == 1000
    assert cost.heads == [f"mldecoder(groups={k})" for k in (1, 5, 10, 20, 50)] + ["mldecoder", "mldecoder(groups=1000)"]
    assert not acc.cost_only and acc.num_classes == 48  # the scenes proxy: K in {1, 5, 10, 20, N}
    assert [re.search(r"groups=(\d+)", h).group(1) for h in acc.heads] == ["1", "5", "10", "20", "48"]


def test_self_attention_grid():
    cfgs = get_study("self-attention").configs()
    cost = [c for c in cfgs if c.cost_only]
    assert [c.num_classes for c in cost] == [80, 400, 1000, 2000, 5000, 10000]
    for c in cost:
        n = c.num_classes
        assert c.heads == [f"mldecoder(groups={n})", f"mldecoder(groups={n}, self_attn=True)", "txdec"]
    acc = [c for c in cfgs if not c.cost_only]
    assert len(acc) == 1 and any("self_attn=True" in h for h in acc[0].heads)


def test_accuracy_studies_use_the_proxy_and_seeds():
    for name in ("queries", "zsl", "backbone-vs-head", "drop-in"):
        for c in get_study(name).configs():
            assert not c.cost_only and len(c.seeds) >= 2 and c.protocol == "finetune"
    heads = get_study("queries").configs()[0].heads
    assert [("learnable" in h, "word" in h) for h in heads] == [(False, False), (True, False), (False, True)]
    zsl = get_study("zsl").configs()
    assert {c.dataset for c in zsl} == {"scenes(holdout=8)", 'scenes(holdout=8, embeddings="random")'}


def test_data_options_override_only_accuracy_variations():
    cfgs = get_study("self-attention").configs(seeds=[5], epochs=1)
    assert all(c.seeds == [5] for c in cfgs if not c.cost_only)
    assert all(c.backbones == ["tresnet_m"] for c in cfgs if c.cost_only)
    with pytest.raises(ValueError, match="unknown study override"):
        get_study("compute").configs(bogus=1)


def test_an_interrupted_study_resumes_without_rerunning(tmp_path, monkeypatch, capsys):
    args = ["study", "compute", "--backbone", "test_resnet", "--img-size", "32", "--results-dir",
            str(tmp_path)]
    # Overridden to one tiny backbone at one size, the compute study's 9 configurations collapse into one with
    # a cost cell per batch size: the first finishes, the second is interrupted.
    args += ["--batch-sizes", "1,2"]
    executed = []
    real = runner.execute_cell

    def flaky(cfg, cell, progress=None):
        if len(executed) == 1:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the second cell
        executed.append(cell.batch_size)
        return real(cfg, cell, progress)

    monkeypatch.setattr(runner, "execute_cell", flaky)
    # the memory and training-step columns (a fresh process per figure, tested in test_memory) are left out: this
    # test is about which cells run again, and they would be most of its time
    monkeypatch.setattr(runner, "_memory_and_training", lambda *a, **k: {})
    with pytest.raises(SystemExit):
        main(args)
    done = pd.read_csv(tmp_path / "study-compute.csv")
    assert sorted(done["batch_size"].unique()) == [1]
    executed.clear()
    monkeypatch.setattr(runner, "execute_cell", lambda cfg, cell, progress=None: (executed.append(cell.batch_size),
                                                                                  real(cfg, cell, progress))[1])
    try:
        main(args)
    except SystemExit as e:
        assert not e.code
    assert executed == [2]  # only the cell that did not finish
    rows = pd.read_csv(tmp_path / "study-compute.csv")
    # one row per head (gap, gmp, mldecoder) and batch size
    assert sorted(rows["batch_size"]) == [1, 1, 1, 2, 2, 2] and (rows["status"] == "ok").all()
    out = capsys.readouterr().out
    assert "1 to run" in out


def _planned_rows(study, metric):
    """One row per planned accuracy cell (config, backbone, head, seed) with ``metric`` = 1, as a study run would
    write them (heads canonical, as the runner labels them)."""
    from bench.run.results import COLUMNS

    rows = []
    for c in study.configs():
        if c.cost_only:
            continue
        for b in c.backbones:
            for h in c.heads:
                for s in c.seeds:
                    rows.append(dict(backbone=b, head=h, dataset=c.dataset, img_size=c.img_size, epochs=c.epochs,
                                     seed=s, status="ok", **{metric: 1.0, f"{metric}_chance": 0.0}))
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = pd.NA
    return df


@pytest.mark.parametrize("name", ALL)
def test_every_hypothesis_selects_its_grid_unambiguously(name):
    """Each hypothesis of a study names cells its grid plans: on the planned rows it finds both sides, paired
    over every seed, with one row per seed (bench.analysis.stats raises on an ambiguous selection)."""
    from bench.analysis import stats
    from bench.studies import Study

    study = get_study(name)
    for h in study.hypotheses:
        df = _planned_rows(study, h.metric)
        verdicts = stats.evaluate(Study(study.name, study.claim, "", "", {}, [], hypotheses=[h]), df)
        paired = [v for v in verdicts if v.outcome != stats.NOT_RUN]
        assert paired, f"{name}: hypothesis {h.name!r} matches no planned cell"
        seeds = len(study.base.get("seeds", [0]))
        assert all(v.difference.n == seeds for v in paired), h.name
        assert len(h.statement) > 10 and h.margin >= 0


def test_accuracy_claims_state_their_margins():
    for name in ALL:
        for h in get_study(name).hypotheses:
            if h.test == "not_worse":
                assert h.margin == 1.0 and "1 " in h.statement and "point" in h.statement, h.name


def test_proxy_fixes_in_the_grids():
    vit = [c for c in get_study("drop-in").configs() if c.backbones == ["test_vit"]]
    assert len(vit) == 1 and vit[0].epochs == 15 and vit[0].lr == 3e-3  # trains past chance
    assert all(len(c.seeds) >= 5 for n in ALL for c in get_study(n).configs() if not c.cost_only)
    zsl_heads = [h for c in get_study("zsl").configs() for h in c.heads]
    assert sorted(re.findall(r"query_noise=([\d.]+)", " ".join(zsl_heads))) == ["0.1", "0.3", "1.0"]
    [q] = get_study("queries").hypotheses
    assert q.differ == "query_shift" and q.differ_min > 0


def test_study_list_names_each_study_s_rung(capsys):
    main(["study", "list"])
    lines = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert lines["groups"] == "scratch" and lines["groups-pretrained"] == "pretrained"
    assert lines["pooling-finetuned"] == "finetuned" and lines["compute"] == "cost"  # no accuracy hypotheses
    assert set(lines) == set(ALL + BEYOND)
