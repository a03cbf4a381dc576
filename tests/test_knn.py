"""The k-NN baseline of frozen-feature evaluation (bench.train.knn): its scores against a direct computation of the
definition, its rows in a probe run (one per seed, resumable), and its bad inputs."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from bench.train.knn import knn_label, knn_logits, knn_macs, knn_scores, pooled
from bench.run.config import build_config
from bench.run.runner import pending_cells, plan_cells, run


def _direct(train, train_labels, test, num_classes, k, temperature):
    """The definition, one evaluation image at a time in float64: mean over positions, unit length, cosine
    similarity to every training vector, the k largest, weights exp(s / T) normalised, labels summed."""
    def vec(f):
        v = f.reshape(f.shape[0], -1).mean(axis=1)
        return v / np.linalg.norm(v)

    bank = [vec(f) for f in train.astype(np.float64)]
    out = []
    for f in test.astype(np.float64):
        q = vec(f)
        sims = np.array([q @ b for b in bank])
        top = np.argsort(-sims, kind="stable")[:k]
        w = np.exp(sims[top] / temperature)
        w /= w.sum()
        scores = np.zeros(num_classes)
        for j, i in enumerate(top):
            lab = train_labels[i]
            if np.ndim(lab) == 0:
                scores[int(lab)] += w[j]
            else:
                scores += w[j] * lab
        out.append(scores)
    return np.array(out)


def test_scores_equal_the_definition_single_label():
    g = torch.Generator().manual_seed(0)
    train = torch.randn(40, 8, 3, 3, generator=g)
    labels = torch.randint(0, 5, (40,), generator=g)
    test = torch.randn(7, 8, 3, 3, generator=g)
    got = knn_scores(train, labels, test, 5, k=6, temperature=0.1).numpy()
    want = _direct(train.numpy(), labels.numpy(), test.numpy(), 5, 6, 0.1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)  # single-label: the shares sum to one


def test_scores_equal_the_definition_multi_label_tokens():
    g = torch.Generator().manual_seed(1)
    train = torch.randn(30, 5, 12, generator=g)  # (S, L, C) tokens
    labels = (torch.rand(30, 9, generator=g) < 0.3).float()
    test = torch.randn(4, 5, 12, generator=g)
    got = knn_scores(train, labels, test, 9, k=4, temperature=0.07).numpy()
    # tokens (S, L, C): the mean over L; the direct computation takes (S, C, L)
    want = _direct(train.permute(0, 2, 1).numpy(), labels.numpy(), test.permute(0, 2, 1).numpy(), 9, 4, 0.07)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_an_image_in_the_bank_is_its_own_nearest_neighbour():
    train = torch.eye(6).reshape(6, 6, 1, 1) + 0.01
    labels = torch.arange(6)
    scores = knn_scores(train, labels, train, 6, k=1)
    assert scores.argmax(dim=1).tolist() == list(range(6))
    assert pooled(train).norm(dim=1).sub(1).abs().max() < 1e-6


def test_k_larger_than_the_bank_takes_the_whole_bank():
    train = torch.randn(3, 4, 2, 2)
    scores = knn_scores(train, torch.tensor([0, 1, 1]), torch.randn(2, 4, 2, 2), 2, k=50)
    np.testing.assert_allclose(scores.sum(dim=1).numpy(), 1.0, rtol=1e-5)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k_is_a_value_error(k):
    with pytest.raises(ValueError, match="k must be"):
        knn_scores(torch.randn(3, 4, 2, 2), torch.tensor([0, 1, 1]), torch.randn(1, 4, 2, 2), 2, k=k)


def test_logits_keep_the_ranking_and_the_argmax():
    s = torch.tensor([[0.0, 0.3, 0.7], [0.5, 0.5, 0.0]])
    multi = knn_logits(s, multilabel=True)
    assert torch.isfinite(multi).all()
    assert (torch.sigmoid(multi) - s.clamp(1e-6, 1 - 1e-6)).abs().max() < 1e-5
    single = knn_logits(s, multilabel=False)
    assert single.argmax(dim=1).tolist() == s.argmax(dim=1).tolist()


def test_label_and_macs():
    assert knn_label(20) == "knn(k=20)"
    assert knn_macs(2500, 1280) == 2500 * 1280


def test_knn_needs_the_probe_protocol():
    with pytest.raises(ValueError, match="needs --protocol probe"):
        build_config(heads=["gap"], backbones=["test_resnet"], protocol="finetune", knn=5, dataset="scenes")
    with pytest.raises(ValueError, match="knn must be"):
        build_config(heads=["gap"], backbones=["test_resnet"], protocol="probe", knn=-1, dataset="scenes")


def _cfg(tmp_path, heads):
    return build_config(heads=heads, backbones=["test_resnet"], img_size=32, protocol="probe", epochs=1, seeds=[0, 1],
                     timing=False, workers=0, knn=5, dataset="scenes(train_size=48, val_size=32)",
                     results_dir=str(tmp_path), run_id="knn", cache_dir=str(tmp_path / "cache"))


def test_a_probe_run_writes_one_knn_row_per_seed_and_resumes(tmp_path):
    cfg = _cfg(tmp_path, ["gap"])
    run(cfg)
    df = pd.read_csv(cfg.results_path)
    acc = df[df["seed"].notna()]
    knn = acc[acc["head"] == "knn(k=5)"]
    assert sorted(knn["seed"].astype(int)) == [0, 1]
    assert (knn["status"] == "ok").all() and (knn["params_head"] == 0).all()
    gap = acc[acc["head"] == "gap"].iloc[0]
    channels = (gap["params_head"] - gap["num_classes"]) / gap["num_classes"]  # a linear layer: C * N + N
    assert knn["gmacs_head"].iloc[0] == pytest.approx(48 * channels / 1e9)  # 48 training images, C each
    assert math.isfinite(knn["map"].iloc[0]) and knn["map"].iloc[0] > knn["map_chance"].iloc[0]
    assert pending_cells(cfg, plan_cells(cfg)) == []
    # a run that adds a head runs only that head; the k-NN rows are already there
    cfg2 = _cfg(tmp_path, ["gap", "gmp"])
    todo = pending_cells(cfg2, plan_cells(cfg2))
    assert [(c.heads, c.knn) for c in todo if c.kind == "accuracy"] == [(["gmp"], 0), (["gmp"], 0)]


def test_a_cell_with_only_the_knn_row_missing_runs_it_alone(tmp_path):
    cfg = _cfg(tmp_path, ["gap"])
    run(cfg)
    df = pd.read_csv(cfg.results_path)
    df = df[~((df["head"] == "knn(k=5)") & (df["seed"] == 1))]
    df.to_csv(cfg.results_path, index=False)
    todo = [c for c in pending_cells(cfg, plan_cells(cfg)) if c.kind == "accuracy"]
    assert [(c.heads, c.knn, c.seed) for c in todo] == [([], 5, 1)]
    assert todo[0].label == "k-NN baseline on test_resnet (seed 1)"
    run(cfg)
    df = pd.read_csv(cfg.results_path)
    assert len(df[(df["head"] == "knn(k=5)") & (df["status"] == "ok")]) == 2
    assert len(df[(df["head"] == "gap") & (df["seed"].notna())]) == 2  # nothing doubled
