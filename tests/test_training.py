"""Training: losses against hand computations, optimizer groups, EMA, the probe feature cache, resume, divergence."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from bench.datasets import HeadDataset
from bench.train.features import extract_features, feature_cache_key
from bench.heads import create_head
from bench.train.losses import asymmetric_loss, bce_loss, ce_loss, compute_loss
from bench.backbones.model import HeadModel
from bench.train.training import (ModelEMA, TrainConfig, TrainingDiverged, TrainOutcome, param_groups, predict,
                            seed_everything, train_finetune, train_probe, train_probes)

C = 3  # classes of the toy problem


class ToyDataset(HeadDataset):
    """In memory: class k adds a bright offset to channel k; noise elsewhere. Learnable by conv + GAP."""

    def __init__(self, n=48, size=12, seed=0, multilabel=True, unseen=()):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.class_names = [f"class {k}" for k in range(C)]
        self.multilabel = multilabel
        self.unseen = list(unseen)
        self.spec = f"toy(n={n})"
        if multilabel:
            y = (torch.rand(n, C, generator=g) < 0.4).float()  # (S, C)
            self.targets = y.numpy()
        else:
            idx = torch.randint(0, C, (n,), generator=g)
            y = nn.functional.one_hot(idx, C).float()
            self.targets = idx.numpy()
        self.images = 0.3 * torch.rand(n, 3, size, size, generator=g) + 0.6 * y[:, :, None, None]
        self.calls = 0
        self.fail_at = None  # raise after this many items (a killed run)
        self.nan_after = None  # return NaN images after this many items (a diverging run)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.calls += 1
        if self.fail_at is not None and self.calls > self.fail_at:
            raise KeyboardInterrupt("killed")
        x = self.images[i]
        if self.nan_after is not None and self.calls > self.nan_after:
            x = torch.full_like(x, float("nan"))
        t = torch.from_numpy(np.asarray(self.targets[i]))
        return x, t


class TinyBackbone(nn.Module):
    """Two convs and a BatchNorm (a buffer for the EMA); counts its forward calls."""

    num_features = 16

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.forward_calls = 0

    def forward(self, x):
        self.forward_calls += 1
        return self.net(x)  # (B, 16, H/2, W/2)


def tiny_model(head_spec="gap", seed=0):
    seed_everything(seed)
    bb = TinyBackbone()
    return HeadModel(bb, create_head(head_spec, bb.num_features, C), "tiny")


def cfg(**kw):
    base = dict(epochs=3, batch_size=8, lr=1e-2, ema_decay=0.9, workers=0, device="cpu", seed=0)
    base.update(kw)
    return TrainConfig(**base)


MLD = "mldecoder(embed=32, ffn=64, heads=4)"


# -- losses ---------------------------------------------------------------------------------------------------

def test_asl_matches_hand_computation():
    x = torch.tensor([[2.0, -1.0, 0.5]])
    y = torch.tensor([[1.0, 0.0, 0.0]])
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = 0.0
    expected += -math.log(sig(2.0))  # positive, gamma_pos 0: plain log-likelihood
    for v in (-1.0, 0.5):  # negatives: p_m = max(p - 0.05, 0), weight p_m^4
        pm = max(sig(v) - 0.05, 0.0)
        expected += -(pm ** 4) * math.log(1 - pm)
    got = asymmetric_loss(x, y, gamma_neg=4, gamma_pos=0, clip=0.05, eps=1e-8)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # gamma_pos applies to positives: (1 - p)^gamma_pos
    got = asymmetric_loss(x[:, :1], y[:, :1], gamma_neg=4, gamma_pos=2, clip=0.05)
    assert got.item() == pytest.approx(-(1 - sig(2.0)) ** 2 * math.log(sig(2.0)), rel=1e-5)


def test_asl_reduces_to_bce_sum():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 7, generator=g)
    y = (torch.rand(5, 7, generator=g) < 0.3).float()
    ref = nn.functional.binary_cross_entropy_with_logits(x, y, reduction="sum")
    assert asymmetric_loss(x, y, gamma_neg=0, gamma_pos=0, clip=0).item() == pytest.approx(ref.item(), rel=1e-5)
    assert bce_loss(x, y).item() == pytest.approx(ref.item(), rel=1e-6)
    mean = compute_loss("bce", x, y, reduction="mean").item()
    assert mean == pytest.approx(ref.item() / 35, rel=1e-6)


@pytest.mark.parametrize("name", ["asl", "bce"])
def test_unknown_targets_are_ignored(name):
    # logits in (-1, 1): ASL's clip (0.05) zeroes the gradient of negatives below about -2.94
    x = (torch.rand(4, 5, generator=torch.Generator().manual_seed(0)) * 2 - 1).requires_grad_()
    y = torch.tensor([[1, 0, -1, 0, 1], [0, -1, -1, 1, 0], [1, 1, 0, 0, -1], [0, 0, 0, 0, 0]]).float()
    loss = compute_loss(name, x, y)
    loss.backward()
    assert torch.all(x.grad[y == -1] == 0) and torch.all(x.grad[y != -1] != 0)
    # the same loss as computing only the known entries
    known = y >= 0
    ref = sum(compute_loss(name, x[i, known[i]][None], y[i, known[i]][None]) for i in range(4))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_ce_loss_single_label_ignores_minus_one():
    x = torch.randn(3, 4)
    t = torch.tensor([2, -1, 0])
    ref = nn.functional.cross_entropy(x, t, ignore_index=-1, reduction="sum")
    assert ce_loss(x, t).item() == pytest.approx(ref.item(), rel=1e-6)
    with pytest.raises(ValueError, match="single-label"):
        ce_loss(x, torch.zeros(3, 4))


def test_config_rejects_unknown_values():
    with pytest.raises(ValueError, match="unknown loss 'focal'; valid: asl, bce, ce"):
        TrainConfig(loss="focal")
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="fp8")
    d = TrainConfig()
    assert (d.loss, d.gamma_neg, d.gamma_pos, d.clip, d.lr, d.weight_decay, d.pct_start, d.ema_decay) == \
        ("asl", 4.0, 0.0, 0.05, 1e-4, 1e-4, 0.2, 0.9997)
    assert d.grad_clip is None


# -- optimizer and EMA ----------------------------------------------------------------------------------------

def test_param_groups_skip_biases_norms_and_frozen_queries():
    model = tiny_model(MLD)
    decay, no_decay = param_groups(model, 1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    d = {names[id(p)] for p in decay["params"]}
    nd = {names[id(p)] for p in no_decay["params"]}
    assert "head.queries" not in d | nd  # fixed queries are frozen and never optimized
    assert not model.head.queries.requires_grad
    assert {"backbone.net.0.weight", "head.input_proj.weight", "head.pool_weight",
            "head.decoder.layers.0.linear1.weight"} <= d
    assert {"backbone.net.0.bias", "backbone.net.1.weight", "backbone.net.1.bias", "head.pool_bias",
            "head.decoder.layers.0.norm1.weight", "head.decoder.layers.0.cross_attn.in_proj_bias"} <= nd
    assert all(p.ndim >= 2 for p in decay["params"])
    learnable = tiny_model("mldecoder(embed=32, ffn=64, heads=4, queries='learnable')")
    assert any(p is learnable.head.queries for p in param_groups(learnable, 1e-4)[0]["params"])


def test_learnable_queries_get_their_own_lr_and_no_weight_decay():
    learnable = tiny_model("mldecoder(embed=32, ffn=64, heads=4, queries='learnable')")
    groups = param_groups(learnable, 1e-4, query_lr=0.1)
    assert len(groups) == 3 and groups[2]["lr"] == 0.1 and groups[2]["weight_decay"] == 0.0
    assert len(groups[2]["params"]) == 1 and groups[2]["params"][0] is learnable.head.queries
    assert all(p is not learnable.head.queries for g in groups[:2] for p in g["params"])
    assert len(param_groups(tiny_model(MLD), 1e-4, query_lr=0.1)) == 2  # fixed queries: frozen, no group
    # OneCycle keeps each group's own peak: the queries' lr stays lr * query_lr_scale through the cycle
    cfg = TrainConfig(lr=1e-3, query_lr_scale=100.0)
    opt = torch.optim.AdamW(param_groups(learnable, cfg.weight_decay, query_lr=cfg.lr * cfg.query_lr_scale),
                            lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g.get("lr", cfg.lr) for g in opt.param_groups],
                                                total_steps=10)
    for _ in range(3):
        opt.step()
        sched.step()
    assert opt.param_groups[2]["lr"] == pytest.approx(100 * opt.param_groups[0]["lr"])
    with pytest.raises(ValueError, match="query_lr_scale"):
        TrainConfig(query_lr_scale=0.0)


def test_ema_update_by_hand():
    m = nn.BatchNorm1d(2)
    ema = ModelEMA(m, decay=0.75)
    with torch.no_grad():
        m.weight.fill_(3.0)
        m.running_mean.fill_(2.0)
        m.num_batches_tracked.fill_(5)
    ema.update(m)
    assert torch.allclose(ema.module.weight, torch.full((2,), 0.75 * 1 + 0.25 * 3))
    assert torch.allclose(ema.module.running_mean, torch.full((2,), 0.25 * 2))  # buffers are averaged too
    assert ema.module.num_batches_tracked.item() == 5
    assert not ema.module.training and not ema.module.weight.requires_grad


def test_cpu_adamw_is_fused_and_makes_the_foreach_update():
    """training.adamw takes torch's fused kernel on the CPU: the same AdamW (groups, decay, betas) as foreach, up to
    floating-point rounding, over 50 steps with two learning rates."""
    from bench.train.training import adamw

    torch.manual_seed(0)
    start = [torch.randn(300, 40), torch.randn(40)]
    a = [p.clone().requires_grad_() for p in start]
    b = [p.clone().requires_grad_() for p in start]
    groups = lambda ps: [{"params": [ps[0]], "weight_decay": 1e-2}, {"params": [ps[1]], "lr": 1e-2, "weight_decay": 0.0}]
    fused = adamw(groups(a), torch.device("cpu"), lr=1e-3, betas=(0.9, 0.999))
    assert fused.defaults["fused"] is True
    ref = torch.optim.AdamW(groups(b), lr=1e-3, betas=(0.9, 0.999), foreach=True)
    for _ in range(50):
        grads = [torch.randn_like(p) for p in start]
        for ps, opt in ((a, fused), (b, ref)):
            for p, g in zip(ps, grads):
                p.grad = g.clone()
            opt.step()
    moved = max((x - s).abs().max().item() for x, s in zip(b, start))
    assert moved > 1e-2  # the parameters did move
    assert max((x - y).abs().max().item() for x, y in zip(a, b)) < 1e-5


def test_finetune_learns_and_ema_tracks():
    model = tiny_model("gap")
    init = {k: v.clone() for k, v in model.state_dict().items()}
    out = train_finetune(model, ToyDataset(), cfg(epochs=4), progress=False)
    losses = [h["loss"] for h in out.history]
    assert out.epochs_done == 4 and len(losses) == 4 and out.train_s > 0
    assert losses[-1] < 0.6 * losses[0], losses
    w, e, w0 = (s["head.fc.weight"] for s in (out.model.state_dict(), out.ema_model.state_dict(), init))
    assert not torch.equal(e, w) and not torch.equal(e, w0)
    assert (e - w).norm() < (w0 - w).norm()  # the EMA follows the model away from the initial weights
    # predictions from the last weights rank the toy labels well
    ds = ToyDataset(seed=1)
    scores = predict(out.model, ds, batch_size=16, device="cpu")
    assert scores.shape == (len(ds), C) and scores.dtype == np.float32
    pos, neg = scores[ds.targets == 1], scores[ds.targets == 0]
    assert pos.mean() > neg.mean() + 1.0


def test_finetune_single_label_ce():
    out = train_finetune(tiny_model("gap"), ToyDataset(multilabel=False), cfg(loss="ce"), progress=False)
    assert out.history[-1]["loss"] < out.history[0]["loss"]
    with pytest.raises(ValueError, match="multi-label"):
        train_finetune(tiny_model("gap"), ToyDataset(), cfg(loss="ce"), progress=False)


def test_loader_workers_do_not_change_the_result():
    a = train_finetune(tiny_model("gap"), ToyDataset(n=24), cfg(epochs=1), progress=False)
    b = train_finetune(tiny_model("gap"), ToyDataset(n=24), cfg(epochs=1, workers=2), progress=False)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for AMP")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_on_cuda(amp):
    out = train_finetune(tiny_model(MLD), ToyDataset(), cfg(epochs=2, amp=amp, device="cuda"), progress=False)
    assert all(np.isfinite(h["loss"]) for h in out.history)
    assert out.history[-1]["loss"] < out.history[0]["loss"]
    assert next(out.model.parameters()).dtype == torch.float32  # autocast, the weights stay float32
    scores = predict(out.ema_model, ToyDataset(seed=1), batch_size=16, device="cuda", amp=amp)
    assert np.isfinite(scores).all()


def test_zero_shot_word_queries_train_on_seen_columns():
    E = torch.randn(C, 8, generator=torch.Generator().manual_seed(3))  # (N, word_dim)
    spec = "mldecoder(embed=32, ffn=64, heads=4, queries='word', word_dim=8, random_queries=2)"
    ds = ToyDataset(unseen=[2])
    with pytest.raises(ValueError, match="held out|holds out"):
        train_finetune(tiny_model(spec), ds, cfg(epochs=1), class_embeddings=E, progress=False)
    out = train_finetune(tiny_model(spec), ds, cfg(epochs=1), class_embeddings=E, columns=[0, 1], progress=False)
    assert np.isfinite(out.history[0]["loss"])
    scores = predict(out.ema_model, ds, batch_size=16, device="cpu", class_embeddings=E)  # seen + unseen
    assert scores.shape == (len(ds), C)
    # a fixed-query head restricted to the seen columns trains on those logits only
    out = train_finetune(tiny_model(MLD), ds, cfg(epochs=1), columns=[0, 1], progress=False)
    assert np.isfinite(out.history[0]["loss"])


# -- probe ----------------------------------------------------------------------------------------------------

def test_probe_computes_features_once_and_shares_them(tmp_path):
    bb = TinyBackbone()
    train, val = ToyDataset(n=32), ToyDataset(n=16, seed=1)
    f1, t1 = extract_features(bb, train, batch_size=8, device="cpu", cache_dir=str(tmp_path), progress=False)
    assert bb.forward_calls == 4 and f1.shape == (32, 16, 6, 6) and torch.equal(t1, torch.from_numpy(train.targets))
    assert bb.training  # the backbone ran in eval mode and got its own mode back
    f2, _ = extract_features(bb, train, batch_size=8, device="cpu", cache_dir=str(tmp_path), progress=False)
    assert bb.forward_calls == 4 and torch.equal(f1, f2)  # read back from disk, no backbone pass
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]  # temp files were renamed
    fv, _ = extract_features(bb, val, batch_size=8, device="cpu", cache_dir=str(tmp_path), progress=False)
    assert bb.forward_calls == 6  # another split is another key
    heads = [create_head(s, 16, C) for s in ("gap", MLD)]
    for head, feats in zip(heads, (f1, f2)):  # f2 is the memory-mapped cache file
        out = train_probe(head, feats, t1, cfg(epochs=2), progress=False)
        assert out.epochs_done == 2 and predict(out.ema_model, fv, batch_size=8).shape == (16, C)
    assert bb.forward_calls == 6  # two heads trained and evaluated, no further backbone pass
    # features equal a direct eval-mode pass; new weights give a new key
    with torch.no_grad():
        assert torch.allclose(f1[:8], bb.eval()(train.images[:8]), atol=1e-6)
    k1 = feature_cache_key(bb, backbone_name="tiny", dataset_spec="toy", split="train", img_size=12)
    with torch.no_grad():
        bb.net[0].weight.add_(1e-3)
    assert k1 != feature_cache_key(bb, backbone_name="tiny", dataset_spec="toy", split="train", img_size=12)


PROBE_HEADS = ("gap", "mldecoder(embed=32, ffn=64, heads=4, dropout=0.1)",  # dropout: each head's own RNG
               "txdec(embed=32, ffn=64, heads=4, dropout=0.1)")


def probe_data(n=44, seed=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 16, 3, 3, generator=g), (torch.rand(n, C, generator=g) < 0.4).float()  # (S,16,3,3), (S,C)


def fresh_heads(specs=PROBE_HEADS):
    out = {}
    for spec in specs:
        seed_everything(11)  # the same initial weights whichever way they are trained
        out[spec] = create_head(spec, 16, C)
    return out


def same_weights(a: TrainOutcome, b: TrainOutcome) -> bool:
    return all(torch.equal(x.state_dict()[k], y.state_dict()[k]) for x, y in ((a.model, b.model),
               (a.ema_model, b.ema_model)) for k in x.state_dict())


def test_probe_batches_indexed_from_memory_equal_the_loaders():
    feats, targets = probe_data()

    class Pairs(torch.utils.data.Dataset):  # not a TensorDataset: trained through the DataLoader
        def __len__(self):
            return len(feats)

        def __getitem__(self, i):
            return feats[i], targets[i]

    from bench.train.training import _Labels, _TrainerOptions, _train

    fast = train_probe(fresh_heads()[PROBE_HEADS[1]], feats, targets, cfg(), progress=False)
    slow = _train(fresh_heads()[PROBE_HEADS[1]], Pairs(), cfg(), _Labels(multilabel=True, num_classes=C),
                  _TrainerOptions(progress=False, workers=0))
    assert same_weights(fast, slow) and [h["loss"] for h in fast.history] == [h["loss"] for h in slow.history]


def test_probes_trained_together_equal_each_trained_alone():
    feats, targets = probe_data()
    alone = {spec: train_probe(head, feats, targets, cfg(), progress=False) for spec, head in fresh_heads().items()}
    together = train_probes(fresh_heads(), feats, targets, cfg(), progress=False)
    assert list(together) == list(PROBE_HEADS)
    for spec in PROBE_HEADS:  # same machine, same threads: the same weights, not merely close ones
        assert same_weights(alone[spec], together[spec]), spec
        assert [h["loss"] for h in alone[spec].history] == [h["loss"] for h in together[spec].history]
        assert together[spec].epochs_done == 3 and together[spec].train_s > 0
    # a head's result does not depend on which heads train beside it
    pair = train_probes(fresh_heads(PROBE_HEADS[1:]), feats, targets, cfg(), progress=False)
    assert same_weights(pair[PROBE_HEADS[2]], alone[PROBE_HEADS[2]])
    with pytest.raises(ValueError, match="name heads that are not given"):
        train_probes(fresh_heads(["gap"]), feats, targets, cfg(), checkpoint_dirs={"csra": "x"}, progress=False)


def test_probes_resume_each_head_from_its_own_checkpoint(tmp_path, monkeypatch):
    from bench.train import training

    feats, targets = probe_data()
    full = train_probes(fresh_heads(), feats, targets, cfg(), progress=False)
    dirs = {spec: str(tmp_path / f"h{i}") for i, spec in enumerate(PROBE_HEADS)}
    steps_per_epoch = len(feats) // 8
    real_step, calls = training._Trainer.step, []

    def killed(self, step, x, y):  # killed in epoch 2, after the first head's step of one batch
        calls.append(1)
        if len(calls) > len(PROBE_HEADS) * (steps_per_epoch + 1) + 1:
            raise KeyboardInterrupt("killed")
        return real_step(self, step, x, y)

    monkeypatch.setattr(training._Trainer, "step", killed)
    with pytest.raises(KeyboardInterrupt):
        train_probes(fresh_heads(), feats, targets, cfg(), progress=False, checkpoint_dirs=dirs)
    monkeypatch.setattr(training._Trainer, "step", real_step)
    # one head is a further epoch along (its own run finished): each goes on from where it is
    done = train_probe(fresh_heads()[PROBE_HEADS[0]], feats, targets, cfg(), progress=False,
                       checkpoint_dir=dirs[PROBE_HEADS[0]], resume=True)
    assert done.epochs_done == 3
    resumed = train_probes(fresh_heads(), feats, targets, cfg(), progress=False, checkpoint_dirs=dirs, resume=True)
    for spec in PROBE_HEADS:
        assert same_weights(full[spec], resumed[spec]), spec
        assert [h["epoch"] for h in resumed[spec].history] == [1, 2, 3]


def test_probes_keep_going_when_one_head_diverges():
    feats, targets = probe_data()

    class Diverges(nn.Module):
        num_classes = C

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, C)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            out = self.fc(x.mean((2, 3)))
            return out * float("nan") if self.calls > 4 else out

    heads = fresh_heads(["gap", PROBE_HEADS[1]])
    alone = train_probe(fresh_heads([PROBE_HEADS[1]])[PROBE_HEADS[1]], feats, targets, cfg(), progress=False)
    errors = {}
    out = train_probes({**heads, "bad": Diverges()}, feats, targets, cfg(), progress=False, errors=errors)
    assert set(out) == {"gap", PROBE_HEADS[1]} and isinstance(errors["bad"], TrainingDiverged)
    assert same_weights(out[PROBE_HEADS[1]], alone)
    with pytest.raises(TrainingDiverged):
        train_probes({"bad": Diverges()}, feats, targets, cfg(), progress=False)


# -- checkpoints, resume, divergence --------------------------------------------------------------------------

def test_resume_after_a_killed_run_equals_an_uninterrupted_run(tmp_path):
    spec = "mldecoder(embed=32, ffn=64, heads=4, dropout=0.1)"  # dropout: the RNG states must be restored
    full = train_finetune(tiny_model(spec), ToyDataset(), cfg(), progress=False)

    ds = ToyDataset()
    ds.fail_at = 48 + 20  # killed during the second epoch
    with pytest.raises(KeyboardInterrupt):
        train_finetune(tiny_model(spec), ds, cfg(), progress=False, checkpoint_dir=str(tmp_path))
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["epoch"] == 1 and set(ck) >= {"model", "state_dict_ema", "optimizer", "scheduler", "scaler", "rng",
                                           "config"}
    ds.fail_at = None
    resumed = train_finetune(tiny_model(spec, seed=5), ds, cfg(), progress=False, checkpoint_dir=str(tmp_path),
                             resume=True)
    assert resumed.epochs_done == 3 and [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for a, b in ((full.model, resumed.model), (full.ema_model, resumed.ema_model)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]
    with pytest.raises(ValueError, match="config differs in lr"):
        train_finetune(tiny_model(spec), ds, cfg(lr=1e-3), progress=False, checkpoint_dir=str(tmp_path),
                       resume=True)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    ds = ToyDataset()
    ds.nan_after = 48 + 2 * 8  # NaN images from the third batch of the second epoch
    with pytest.raises(TrainingDiverged) as err:
        train_finetune(tiny_model("gap"), ds, cfg(), progress=False, checkpoint_dir=str(tmp_path))
    path = str(tmp_path / "last.pt")
    assert err.value.epoch == 2 and err.value.step == 3 and err.value.checkpoint == path
    assert str(err.value) == f"loss became nan at epoch 2 step 3; last good checkpoint: {path}"
    ck = torch.load(path, weights_only=True)
    assert ck["epoch"] == 1 and all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
