"""Data-parallel fine-tuning and sharded evaluation, on CPU with the gloo backend and two processes on loopback.

Each group of checks runs once in two spawned processes (a module fixture) and the tests compare what the ranks
returned with a one-process run made here: the gathered scores and their mAP equal a one-process evaluation
(sizes not divisible by 2 included), the ranks end with identical weights, rank 0 alone writes checkpoints,
resume works, a NaN on one rank stops both, and two processes with global batch B train like one with batch B.
"""
from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from bench.datasets import HeadDataset
from bench.heads import create_head
from bench.analysis.metrics import mean_average_precision, sigmoid
from bench.backbones.model import HeadModel
from bench.train.training import TrainConfig, TrainingDiverged, predict, seed_everything, train_finetune

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="needs torch.distributed with the gloo backend")

C = 4  # classes
WORLD = 2
TIMEOUT_S = 120  # a hung collective fails the test instead of the suite


class ToyDataset(HeadDataset):
    """In memory: class k brightens channel k % 3 in quadrant k; some targets unknown (-1) when asked."""

    def __init__(self, n=24, size=8, seed=0, unknown=0.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.class_names = [f"class {k}" for k in range(C)]
        self.spec = f"toy(n={n})"
        y = (torch.rand(n, C, generator=g) < 0.4).float()  # (S, C)
        if unknown:
            y[torch.rand(n, C, generator=g) < unknown] = -1.0
        self.targets = y.numpy()
        x = 0.3 * torch.rand(n, 3, size, size, generator=g)
        h = size // 2
        for k in range(C):
            r, c = divmod(k, 2)
            x[:, k % 3, r * h:(r + 1) * h, c * h:(c + 1) * h] += 0.6 * y[:, k, None, None].clamp(min=0)
        self.images = x
        self.calls = 0
        self.fail_at = None  # raise KeyboardInterrupt after this many items (a killed run)
        self.nan_on_rank, self.nan_after = None, None  # NaN images on one rank only (a diverging rank)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.calls += 1
        if self.fail_at is not None and self.calls > self.fail_at:
            raise KeyboardInterrupt("killed")
        x = self.images[i]
        if self.nan_on_rank is not None and self.nan_on_rank == dist.get_rank() and self.calls > self.nan_after:
            x = torch.full_like(x, float("nan"))
        return x, torch.from_numpy(self.targets[i])


class TinyBackbone(nn.Module):
    num_features = 16

    def __init__(self, batchnorm=True):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8) if batchnorm else nn.Identity(),
                                 nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())

    def forward(self, x):
        return self.net(x)  # (B, 16, H/2, W/2)


def tiny_model(head="gap", batchnorm=True, seed=0):
    seed_everything(seed)
    bb = TinyBackbone(batchnorm)
    return HeadModel(bb, create_head(head, bb.num_features, C), "tiny")


def cfg(**kw):
    base = dict(epochs=2, batch_size=8, lr=1e-2, ema_decay=0.9, workers=0, device="cpu", seed=0)
    base.update(kw)
    return TrainConfig(**base)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# -- running two ranks ----------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank, port, job, tmp):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from bench.train.distributed import init_distributed

    init_distributed("gloo")
    try:
        out = job(rank, tmp)
    finally:
        dist.destroy_process_group()
    with open(os.path.join(tmp, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump(out, f)


def run_ranks(job, tmp):
    """``job(rank, tmp)`` in two spawned processes (gloo, loopback); their return values in rank order."""
    ctx = mp.start_processes(_entry, args=(_free_port(), job, str(tmp)), nprocs=WORLD, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.terminate()
            pytest.fail(f"the {WORLD} ranks did not finish in {TIMEOUT_S} s (a collective hung?)")
    out = []
    for r in range(WORLD):
        with open(os.path.join(tmp, f"rank{r}.pkl"), "rb") as f:
            out.append(pickle.load(f))
    return out


# -- evaluation across ranks ----------------------------------------------------------------------------------

EVAL_SIZES = (7, 8, 1)  # odd (rank 1 gets one padding sample), even, and fewer samples than ranks


def _eval_job(rank, tmp):
    from bench.train.distributed import predict_distributed

    model = tiny_model("mldecoder(groups=2, layers=1, embed=32, heads=2, ffn=64)")
    out = {}
    for n in EVAL_SIZES:
        ds = ToyDataset(n=n, seed=n)
        out[n] = predict_distributed(model, ds, batch_size=3, device="cpu")
        out[(n, "all")] = predict_distributed(model, ds, batch_size=3, device="cpu", all_ranks=True)
    feats = torch.randn(5, 16, 4, 4, generator=torch.Generator().manual_seed(1))  # cached features: the head alone
    out["features"] = predict_distributed(model.head, feats, batch_size=2, device="cpu")
    return out


@pytest.fixture(scope="module")
def eval_ranks(tmp_path_factory):
    return run_ranks(_eval_job, tmp_path_factory.mktemp("eval"))


@pytest.mark.slow
@pytest.mark.parametrize("n", EVAL_SIZES)
def test_two_process_evaluation_equals_one_process(eval_ranks, n):
    model = tiny_model("mldecoder(groups=2, layers=1, embed=32, heads=2, ffn=64)")
    ds = ToyDataset(n=n, seed=n)
    one = predict(model, ds, batch_size=n, device="cpu")  # (S, N), another batching than the ranks'
    two = eval_ranks[0][n]
    assert eval_ranks[1][n] is None  # gathered on rank 0 only
    assert two.shape == one.shape == (n, C)  # the padding sample is dropped
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(eval_ranks[1][(n, "all")], two)  # all_ranks=True: every rank the same
    if n > 1:
        targets = ds.targets
        m1, m2 = mean_average_precision(sigmoid(one), targets), mean_average_precision(sigmoid(two), targets)
        assert 0 < m1 <= 100 and abs(m1 - m2) < 1e-6


@pytest.mark.slow
def test_two_process_prediction_of_cached_features_is_in_order(eval_ranks):
    model = tiny_model("mldecoder(groups=2, layers=1, embed=32, heads=2, ffn=64)")
    feats = torch.randn(5, 16, 4, 4, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(eval_ranks[0]["features"], predict(model.head, feats, batch_size=5), atol=1e-5)


# -- data-parallel fine-tuning --------------------------------------------------------------------------------

# The ranks' losses are scaled so that DDP's average is the global batch's gradient, for "sum" and for "mean"
# over the known entries (targets -1 are unknown); gradient clipping makes that scale matter to the weights too.
EQUIVALENCE = [("asl_sum", dict(grad_clip=0.5), 0.0),
               ("bce_mean", dict(loss="bce", reduction="mean", grad_clip=0.05), 0.3)]


def first_step_gradients(kw, unknown, distributed):
    """The gradients of the first step's batch (the global one, from whichever ranks), after DDP's all-reduce."""
    from bench.train.training import _Labels, _Trainer, _TrainerOptions

    t = _Trainer(tiny_model(batchnorm=False), ToyDataset(n=20, unknown=unknown), cfg(**kw),
                 _Labels(multilabel=True, num_classes=C), _TrainerOptions(workers=0, distributed=distributed))
    t.sampler.set_epoch(0)
    x, y = next(iter(t.loader))
    loss, _ = t._step_loss(t.model(x), y)
    loss.backward()
    return {k: p.grad.clone() for k, p in t.module.named_parameters()}


def _train_job(rank, tmp):
    import bench.train.training as training

    writes = []
    save = training._atomic_save
    training._atomic_save = lambda obj, path: (writes.append(os.path.basename(path)), save(obj, path))[1]
    out = {}
    # A model with BatchNorm: two epochs with a checkpoint, then a run killed in epoch 2 (on both ranks at the same
    # item: equal shards) and resumed.
    ds = ToyDataset(n=24)
    full = train_finetune(tiny_model(), ds, cfg(), progress=False, checkpoint_dir=os.path.join(tmp, "full"))
    out["full"] = (state(full.model), state(full.ema_model), full.history)
    out["writes_full"] = list(writes)
    killed = ToyDataset(n=24)
    killed.fail_at = 12 + 6  # rank's share per epoch: 12 items; die in the middle of epoch 2
    try:
        train_finetune(tiny_model(), killed, cfg(), progress=False, checkpoint_dir=os.path.join(tmp, "resumed"))
    except KeyboardInterrupt:
        pass
    resumed = train_finetune(tiny_model(), ToyDataset(n=24), cfg(), progress=False, resume=True,
                             checkpoint_dir=os.path.join(tmp, "resumed"))
    out["resumed"] = (state(resumed.model), state(resumed.ema_model), resumed.history)
    out["writes"] = list(writes)
    # No BatchNorm: two processes with global batch 8 against one process with batch 8 (the test compares).
    for name, kw, unknown in EQUIVALENCE:
        o = train_finetune(tiny_model(batchnorm=False), ToyDataset(n=20, unknown=unknown), cfg(**kw),
                           progress=False)
        out[name] = (state(o.model), state(o.ema_model), o.history)
        out["grad_" + name] = first_step_gradients(kw, unknown, distributed=True)
    # A NaN on rank 1 only, in epoch 1 step 2 (its 4 items per step): both ranks must stop at the same step.
    nan = ToyDataset(n=24)
    nan.nan_on_rank, nan.nan_after = 1, 4
    try:
        train_finetune(tiny_model(), nan, cfg(), progress=False)
        out["nan"] = None
    except TrainingDiverged as e:
        out["nan"] = (e.epoch, e.step, str(e))
    return out


@pytest.fixture(scope="module")
def train_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    return tmp, run_ranks(_train_job, tmp)


def _assert_same(a, b, atol=0.0, rtol=0.0):
    assert a.keys() == b.keys()
    for k in a:
        if atol == rtol == 0.0 or not a[k].dtype.is_floating_point:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=atol, msg=k)


@pytest.mark.slow
def test_ddp_ranks_end_with_identical_weights_ema_and_bn_statistics(train_ranks):
    _, (r0, r1) = train_ranks
    for key in ("full", "resumed", "asl_sum", "bce_mean"):
        _assert_same(r0[key][0], r1[key][0])  # model, BatchNorm running statistics included
        _assert_same(r0[key][1], r1[key][1])  # EMA
        assert r0[key][2] == r1[key][2]  # the same (global) loss history
    assert not torch.equal(r0["full"][0]["head.fc.weight"], tiny_model().state_dict()["head.fc.weight"])  # trained


@pytest.mark.slow
def test_ddp_checkpoints_are_written_by_rank_0_only_and_resume(train_ranks):
    tmp, (r0, r1) = train_ranks
    assert r0["writes_full"] == ["last.pt", "last.pt"] and r1["writes_full"] == []  # one per epoch, rank 0
    assert r0["writes"] == ["last.pt"] * 4 and r1["writes"] == []  # + killed run's epoch 1 + resumed epoch 2
    ck = torch.load(os.path.join(tmp, "full", "last.pt"), weights_only=True)
    assert ck["world_size"] == WORLD and ck["epoch"] == 2 and len(ck["rng_per_rank"]) == WORLD
    _assert_same(ck["model"], r0["full"][0])
    _assert_same(ck["state_dict_ema"], r0["full"][1])
    # the killed-and-resumed run ends with the uninterrupted run's weights
    _assert_same(r0["resumed"][0], r0["full"][0])
    _assert_same(r0["resumed"][1], r0["full"][1])
    assert [h["loss"] for h in r0["resumed"][2]] == [h["loss"] for h in r0["full"][2]]
    with pytest.raises(ValueError, match="written by 2 process"):  # one process cannot resume it
        train_finetune(tiny_model(), ToyDataset(n=24), cfg(), progress=False, resume=True,
                       checkpoint_dir=os.path.join(tmp, "full"))


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank_at_the_same_step(train_ranks):
    _, (r0, r1) = train_ranks
    assert r0["nan"] is not None and r1["nan"] is not None
    assert r0["nan"][:2] == r1["nan"][:2] == (1, 2)
    assert "loss became nan" in r0["nan"][2]


@pytest.mark.slow
@pytest.mark.parametrize("name, kw, unknown", EQUIVALENCE)
def test_two_processes_with_global_batch_b_train_like_one_with_batch_b(train_ranks, name, kw, unknown):
    # Without BatchNorm (whose statistics are per rank's half-batch) the gradients are those of the same global
    # batch; only the summation order differs, so the weights agree to float tolerance after 6 Adam steps.
    _, (r0, r1) = train_ranks
    grads = first_step_gradients(kw, unknown, distributed=False)
    _assert_same(r0["grad_" + name], grads, atol=1e-6, rtol=1e-5)
    _assert_same(r1["grad_" + name], grads, atol=1e-6, rtol=1e-5)
    one = train_finetune(tiny_model(batchnorm=False), ToyDataset(n=20, unknown=unknown), cfg(**kw), progress=False)
    _assert_same(r0[name][0], state(one.model), atol=1e-5)
    _assert_same(r0[name][1], state(one.ema_model), atol=1e-5)
    np.testing.assert_allclose([h["loss"] for h in r0[name][2]], [h["loss"] for h in one.history], rtol=1e-5)


def test_batch_size_must_divide_over_the_ranks(monkeypatch):
    import bench.train.ddp as d
    from bench.train.training import _Labels, _Trainer, _TrainerOptions

    monkeypatch.setattr(d, "current", lambda: d.DistContext(rank=0, local_rank=0, world_size=2))  # checked first
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        _Trainer(tiny_model(), ToyDataset(n=24), cfg(batch_size=7), _Labels(multilabel=True, num_classes=C),
                 _TrainerOptions(workers=0, distributed=True))


# -- the entry point ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_torchrun_entry_point_writes_one_row(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
           "-m", "bench.train.distributed", "--backbone", "test_resnet", "--head", "gap",
           "--dataset", "scenes(classes=6, train_size=16, val_size=9)", "--img-size", "32", "--epochs", "1",
           "--batch-size", "8", "--workers", "0", "--ema-decay", "0.5", "--backend", "gloo", "--device", "cpu",
           "--results-dir", str(tmp_path / "runs"), "--run-id", "ddp", "--checkpoint-dir", str(tmp_path / "ck")]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert p.returncode == 0, p.stderr[-2000:]
    from bench.run.results import read_results

    df = read_results([str(tmp_path / "runs" / "ddp.csv")])
    assert len(df) == 1  # rank 0 only
    row = df.iloc[0]
    assert row["status"] == "ok" and row["protocol"] == "finetune" and row["eval_images"] == 9
    assert 0 < row["map"] <= 100 and 0 < row["map_ema"] <= 100 and row["head"] == "gap"
    assert os.listdir(tmp_path / "ck") == ["last.pt"]
    assert p.stdout.count("mAP") == 1  # rank 0 alone prints


def test_the_entry_points_defaults_are_the_datasets():
    from bench.run.defaults import DATASET_DEFAULTS, GENERIC
    from bench.train.distributed import DistributedOptions

    given = dict(backbone="test_resnet", head="gap", data_root=None, seed=0, batch_size=8, eval_batch_size=8, lr=1e-3,
                 ema_decay=0.9, amp="off", workers=0, device="cpu", backend="gloo", pretrained=False,
                 checkpoint=None, checkpoint_dir=None, resume=False, find_unused_parameters=False,
                 results_dir="unused", run_id="")
    voc = DistributedOptions(dataset="voc2007(year=2012)", img_size=None, epochs=None, **given)
    assert (voc.resolved_img_size, voc.train_config().epochs) == (DATASET_DEFAULTS["voc2007"]["img_size"],
                                                                  DATASET_DEFAULTS["voc2007"]["epochs"])
    other = DistributedOptions(dataset="a-dataset-with-no-defaults", img_size=None, epochs=None, **given)
    assert (other.resolved_img_size, other.train_config().epochs) == (GENERIC["img_size"], GENERIC["epochs"])
    mine = DistributedOptions(dataset="scenes", img_size=40, epochs=2, **given)
    assert (mine.resolved_img_size, mine.train_config().epochs, mine.train_config().seed) == (40, 2, 0)
