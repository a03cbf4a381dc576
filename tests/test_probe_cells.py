"""Probe cells: every head of a (backbone, seed) trained together on the cached features gives the rows each head
gives trained alone; the cell lists one key per head, so resuming can match each head's row."""
from __future__ import annotations

import pytest

from bench.run.results import read_results
from bench.run.config import build_config
from bench.run.runner import cell_keys, plan_cells, run

HEADS = ["gap", "mldecoder(embed=32, ffn=64, heads=4, dropout=0.1)", "txdec(embed=32, ffn=64, heads=4, dropout=0.1)"]
METRICS = ["map", "map_ema", "cf1", "of1", "params_head", "gmacs_head", "train_images", "eval_images"]


def probe_cfg(tmp_path, run_id, heads, seeds=(0, 1)):
    return build_config(heads=heads, backbones=["test_resnet"], img_size=32, num_classes=6, protocol="probe", epochs=2,
                     seeds=list(seeds), dataset="scenes(classes=6, train_size=48, val_size=24)", workers=0,
                     train_batch_size=16, timing=False, results_dir=str(tmp_path / "runs"),
                     cache_dir=str(tmp_path / "cache"), run_id=run_id, device="cpu")


def test_probe_cells_hold_every_head_of_a_seed(tmp_path):
    cfg = probe_cfg(tmp_path, "plan", HEADS)
    acc = [c for c in plan_cells(cfg) if c.kind == "accuracy"]
    assert [(c.heads, c.seed) for c in acc] == [(cfg.heads, 0), (cfg.heads, 1)]
    assert [k["head"] for k in cell_keys(cfg, acc[0])] == cfg.heads and "probe 3 heads" in acc[0].label
    finetune = build_config(**{**cfg.__dict__, "protocol": "finetune", "run_id": "ft"})
    assert len([c for c in plan_cells(finetune) if c.kind == "accuracy"]) == 3 * 2  # one per head and seed


@pytest.mark.slow
def test_probe_heads_together_give_the_rows_of_each_head_alone(tmp_path):
    together = probe_cfg(tmp_path, "together", HEADS)
    run(together)
    rows = read_results([together.results_path])
    acc = rows[rows["map"].notna()]
    assert (acc["status"] == "ok").all() and len(acc) == len(HEADS) * 2
    keys = {(k["head"], k["seed"]) for c in plan_cells(together) if c.kind == "accuracy"
            for k in cell_keys(together, c)}
    assert keys == set(zip(acc["head"], acc["seed"].astype(int)))  # one key per row made: resume can match them
    for head in together.heads:
        alone = probe_cfg(tmp_path, f"alone-{len(head)}", [head])
        run(alone)
        one = read_results([alone.results_path])
        one = one[one["map"].notna()].sort_values("seed").reset_index(drop=True)
        mine = acc[acc["head"] == head].sort_values("seed").reset_index(drop=True)
        assert list(one["seed"]) == [0, 1]
        for m in METRICS:  # one machine, one thread count: the same numbers, not merely close ones
            assert list(one[m]) == list(mine[m]), (head, m)
    # the seeds differ: the cells did train on their own seeds
    gap = acc[acc["head"] == "gap"]
    assert gap["map"].nunique() == 2
