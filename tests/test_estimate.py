"""The run estimate: measured pieces scaled by each cell's work, the timing loops' rounds, the long-run note, and
a progress bar that advances by each cell's estimated share."""
from __future__ import annotations

import dataclasses

import pytest

from bench.measure.estimate import (LONG_ON_CPU_S, MIN_ROUNDS, _timing_loop_s, cell_key, estimate_cells, faster_ways)
from bench.run.config import build_config
from bench.run.runner import plan_cells


def test_timing_loop_rounds_follow_min_time_and_min_rounds():
    # fast calls: 3 warm-up rounds, then rounds until min_time
    assert _timing_loop_s(0.01, 1, 1.0) == pytest.approx(3 * 0.01 + 1.0, rel=1e-6)
    assert _timing_loop_s(0.001, 1, 1.0) == pytest.approx(3 * 0.001 + 200 * 0.001)  # at most 200 rounds
    # slow calls: one warm-up round (over 2 s), then the minimum number of rounds
    assert _timing_loop_s(3.0, 2, 1.0) == pytest.approx((1 + MIN_ROUNDS) * 6.0)


def test_estimate_scales_with_epochs_and_seeds(tmp_path):
    kw = dict(heads=["gap"], backbones=["test_resnet"], img_size=32, num_classes=6, epochs=2, seeds=[0],
              dataset="scenes(classes=6, train_size=64, val_size=16)", workers=0, train_batch_size=16,
              timing=False, results_dir=str(tmp_path), device="cpu")
    one = build_config(**kw)
    cells = plan_cells(one)
    per = estimate_cells(one, cells)
    assert len(per) == len(cells) and all(s > 0 for s in per)
    three = build_config(**{**kw, "seeds": [0, 1, 2], "epochs": 4})
    per3 = estimate_cells(three, plan_cells(three))
    acc1 = sum(s for c, s in zip(cells, per) if c.kind == "accuracy")
    acc3 = sum(s for c, s in zip(plan_cells(three), per3) if c.kind == "accuracy")
    assert 3 < acc3 / acc1 < 8  # three seeds of twice the epochs: about 6x (first reads and counts are once)


def test_a_long_cpu_run_names_the_faster_ways(tmp_path):
    cfg = build_config(heads=["gap", "mldecoder"], backbones=["test_resnet"], seeds=[0, 1, 2], device="cpu",
                    results_dir=str(tmp_path))
    cells = plan_cells(cfg)
    per = [LONG_ON_CPU_S] * len(cells)
    note = faster_ways(cfg, cells, per)
    for way in ("--cost-only", "--protocol probe", "--seeds 0", "--device cuda"):
        assert way in note
    assert faster_ways(cfg, cells, [1.0] * len(cells)) is None  # short: nothing to say
    gpu = dataclasses.replace(cfg, device="cuda")  # the configuration checks no device: no GPU is needed here
    assert faster_ways(gpu, cells, per) is None


def test_progress_bar_advances_by_each_cells_estimate(tmp_path):
    from bench.commands import _progress_bar

    cfg = build_config(heads=["gap"], backbones=["test_resnet"], seeds=[0, 1], device="cpu", results_dir=str(tmp_path))
    cells = plan_cells(cfg)
    per = [1.0 * (i + 1) for i in range(len(cells))]
    bar, on_cell = _progress_bar(cells, per, disable=False)
    assert bar.total == pytest.approx(sum(per))
    on_cell(cells[-1])
    assert bar.n == pytest.approx(per[-1]) and bar.desc.startswith("1/")
    assert len({cell_key(c) for c in cells}) == len(cells)
    bar.close()
