"""Studies are data: each grid expands as the issue specifies, and an interrupted study resumes without
rerunning the cells it finished."""
import re

import pandas as pd
import pytest

from bench import runner
from bench.cli import main
from bench.studies import get_study, grid, list_studies

ALL = ["backbone-vs-head", "classes", "compute", "drop-in", "groups", "queries", "self-attention", "zsl"]


def test_every_claim_has_a_study():
    assert list_studies() == ALL
    assert sorted({get_study(n).claim for n in ALL}) == [1, 2, 3, 4, 5, 6, 7]


def test_grid_is_a_product():
    assert grid(a=[1, 2], b=["x"]) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]


def test_compute_grid():
    cfgs = get_study("compute").configs()
    assert {(c.backbones[0], c.img_size) for c in cfgs} == {
        (b, s) for b in ("tresnet_m", "tresnet_v2_l", "tresnet_l") for s in (224, 448, 640)}
    assert all(c.heads == ["gap", "mldecoder"] and c.cost_only and c.num_classes == 80 for c in cfgs)


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
    assert sorted(rows["batch_size"]) == [1, 1, 2, 2] and (rows["status"] == "ok").all()
    out = capsys.readouterr().out
    assert "1 to run" in out
