"""Training protocols: ``finetune`` (end to end), ``probe`` (a head on cached frozen-backbone features) and ``eval``
(``predict`` with given weights, no training).

The defaults of ``TrainConfig`` are the ML-Decoder COCO recipe: asymmetric loss (gamma_neg 4, gamma_pos 0,
clip 0.05, summed), Adam with decoupled ("true") weight decay 1e-4 that skips biases, norms and frozen parameters,
OneCycle (pct_start 0.2) stepped per batch, an EMA of the weights (decay 0.9997), AMP on CUDA. Nothing is selected
on the evaluation split: a run returns the last epoch's weights and their EMA, and the caller reports both.

Checkpoints (``checkpoint_dir/last.pt``, written atomically after every epoch) hold the model, the EMA, the
optimizer, scheduler and scaler states, the RNG states and the config; ``resume=True`` continues from there and
ends with the same weights as an uninterrupted run (same seed, deterministic kernels, ``workers=0`` on CPU).

Launched by ``torchrun`` (``WORLD_SIZE`` > 1), ``train_finetune`` is data-parallel: see its docstring and
``bench.train.distributed``. The data order depends only on the seed and the epoch (a ``DistributedSampler`` on one
process as on many), so a run on N processes sees the same global batches as a run on one.
"""
from __future__ import annotations

import copy
import dataclasses
import inspect
import os
import random
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm  # not tqdm.auto: its asyncio class calls iter() on the DataLoader in __init__

from ..heads._base import Head
from ..measure.alloc import keep_freed_memory
from . import ddp
from .features import AMP_DTYPES, _atomic_save, extract_features, feature_cache_key  # noqa: F401 (re-exported)
from .losses import LOSSES, REDUCTIONS, compute_loss

CHECKPOINT_NAME = "last.pt"
AMP_MODES = ("bf16", "fp16", "off")
# Config fields that may change between a run and its resumption without changing its result.
_RESUMABLE_CHANGES = ("workers", "device")


@dataclass
class TrainConfig:
    """Every training hyper-parameter, defaulting to the ML-Decoder COCO recipe.

    ``weight_decay`` is decoupled (``torch.optim.AdamW``: ``p -= lr * weight_decay * p``), the paper's "true
    weight decay"; the official script instead adds ``weight_decay * p`` to the gradient of Adam. It skips 1-D
    parameters (biases, norm weights) and frozen ones (``requires_grad=False``, e.g. fixed queries, which never
    enter the optimizer). Learnable queries (a head's ``query_parameters``) have their own group: learning rate
    ``lr * query_lr_scale`` and no weight decay, so that in a short run they move away from their random start
    instead of staying the fixed queries they began as (the queries study records how far they moved). ``amp``
    applies on CUDA only; on CPU the run is float32. ``device="auto"`` means CUDA
    when available, else CPU. Short CPU runs need a faster EMA (e.g. ``ema_decay=0.99``): at 0.9997 the EMA
    averages over ~3300 steps.
    """

    epochs: int = 40
    batch_size: int = 56
    lr: float = 1e-4
    weight_decay: float = 1e-4
    # Learnable queries: lr * this, no weight decay. They start at N(0, 1) (entries ~1 where other weights are
    # ~0.1) behind a LayerNorm, so only their direction matters and the base lr barely turns them: in the CPU
    # proxy (155 steps at lr 1e-3) they moved 4% of their norm at 10x and 43% at 100x.
    query_lr_scale: float = 100.0
    betas: Tuple[float, float] = (0.9, 0.999)
    # OneCycle, stepped per batch (torch defaults for the rest, as the official script: beta1 cycles 0.95-0.85).
    pct_start: float = 0.2
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    cycle_momentum: bool = True
    loss: str = "asl"  # "asl", "bce" or "ce" (single-label)
    reduction: str = "sum"  # over the batch and classes, as the paper; "mean" over the known entries
    gamma_neg: float = 4.0
    gamma_pos: float = 0.0
    clip: float = 0.05
    eps: float = 1e-8
    ema_decay: float = 0.9997
    amp: str = "bf16"  # "bf16", "fp16" (with a GradScaler) or "off"; CUDA only
    grad_clip: Optional[float] = None  # max global gradient norm; None = off
    drop_last: bool = True  # drop the last incomplete batch (when the split holds at least one full batch)
    workers: int = 2
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; valid: {', '.join(LOSSES)}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {self.reduction!r}; valid: {', '.join(REDUCTIONS)}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"unknown amp {self.amp!r}; valid: {', '.join(AMP_MODES)}")
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if not 0.0 < self.pct_start < 1.0:
            raise ValueError(f"pct_start must be in (0, 1), got {self.pct_start!r}")
        if not self.query_lr_scale > 0:
            raise ValueError(f"query_lr_scale must be positive, got {self.query_lr_scale!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive or None (off), got {self.grad_clip!r}")
        self.betas = tuple(self.betas)

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@dataclass
class TrainOutcome:
    """What a training run returns: the last epoch's model and its EMA (both to be evaluated and reported),
    per-epoch history ``[{"epoch", "loss", "lr"}]`` (mean loss per batch, lr at the epoch's end), the training
    time in seconds (summed over resumed parts), and the number of epochs done."""

    model: nn.Module
    ema_model: nn.Module
    history: List[Dict[str, float]] = field(default_factory=list)
    train_s: float = 0.0
    epochs_done: int = 0


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite (on any rank: all ranks raise it together); ``checkpoint`` is the last good
    checkpoint (None without one)."""

    def __init__(self, message: str, epoch: int, step: int, checkpoint: Optional[str]):
        super().__init__(message)
        self.epoch, self.step, self.checkpoint = epoch, step, checkpoint


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (all devices) random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: torch seeds each worker from the loader's generator; seed the others alike."""
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def param_groups(model: nn.Module, weight_decay: float, query_lr: Optional[float] = None) -> List[dict]:
    """Optimizer groups: weight decay for the >= 2-D weights, none for biases and norm weights (1-D); frozen
    parameters (``requires_grad=False``) are left out. With ``query_lr``, the learnable queries of every head in
    the model (``Head.query_parameters``) form a third group with that learning rate and no weight decay."""
    queries = set()
    if query_lr is not None:
        queries = {id(p) for m in model.modules() if isinstance(m, Head) for p in m.query_parameters().values()}
    decay, no_decay, query = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in queries:
            query.append(p)
        else:
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if query:
        groups.append({"params": query, "weight_decay": 0.0, "lr": query_lr})
    return groups


def adamw(params, device: torch.device, **kwargs) -> torch.optim.AdamW:
    """The training's AdamW. On the CPU its fused kernel (one vectorised pass over each tensor: ~3x faster than
    foreach on a head of 3M parameters, which spent a quarter of its probe step in AdamW); elsewhere foreach, one
    kernel per update across the parameter list instead of a Python loop over its tensors (torch's own choice on
    CUDA). The same update either way, up to floating-point rounding."""
    flavour = {"fused": True} if torch.device(device).type == "cpu" else {"foreach": True}
    return torch.optim.AdamW(params, **kwargs, **flavour)


class ModelEMA:
    """Exponential moving average of a model's weights and floating-point buffers (BN statistics); integer
    buffers are copied. ``module`` is a frozen copy in eval mode."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        floats, targets = [], []
        for e, m in zip(self.module.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                floats.append(e)
                targets.append(m.detach())
            else:
                e.copy_(m)
        if floats:
            torch._foreach_lerp_(floats, targets, 1.0 - self.decay)


def _rng_state(generator: torch.Generator) -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state(), "loader": generator.get_state()}
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    generator.set_state(state["loader"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _column_index(columns: Optional[Sequence[int]], num: int) -> Optional[torch.Tensor]:
    if columns is None:
        return None
    idx = torch.as_tensor(list(columns), dtype=torch.long)
    if idx.numel() == 0 or idx.min() < 0 or idx.max() >= num:
        raise ValueError(f"columns must be a non-empty list of class indices in [0, {num}), got {list(columns)}")
    return idx


@dataclass
class _Labels:
    """What a training run's targets are: multi-hot over ``num_classes`` classes (``multilabel``, -1 unknown) or
    class indices; the class embeddings (N, word_dim), one row per class, that a word-query head takes; and the
    ``columns`` (class indices) trained on, None for every class."""

    multilabel: bool
    num_classes: int
    class_embeddings: Optional[torch.Tensor] = None
    columns: Optional[Sequence[int]] = None


@dataclass
class _TrainerOptions:
    """How a training run goes, beside its hyper-parameters (``TrainConfig``): a progress bar, the checkpoint's
    directory and whether to resume from it, the loader's worker processes, data-parallel over the process group
    (``distributed``) and DDP's ``find_unused_parameters``."""

    progress: bool = False
    checkpoint_dir: Optional[str] = None
    resume: bool = False
    workers: int = 0
    distributed: bool = False
    find_unused_parameters: bool = False


def _check_data(ds: Dataset, cfg: TrainConfig, labels: _Labels) -> None:
    if cfg.loss == "ce" and labels.multilabel:
        raise ValueError("loss 'ce' is for single-label data; this dataset is multi-label (use 'asl' or 'bce')")
    if labels.columns is not None and not labels.multilabel:
        raise ValueError("columns (a subset of the classes to train on) apply to multi-label data only")
    if len(ds) == 0:
        raise ValueError("the training split is empty")


def _data_parallel(module: nn.Module, device: torch.device, find_unused_parameters: bool) -> nn.Module:
    """``module`` in DistributedDataParallel. Parameters with requires_grad=False (fixed queries) are not DDP's
    concern; ``find_unused_parameters`` is only for modules whose forward skips trainable parameters. Buffers are
    averaged after each step (ddp.average_buffers_) rather than broadcast from rank 0 before each forward."""
    no_forward_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in
                       inspect.signature(nn.parallel.DistributedDataParallel).parameters
                       else {"broadcast_buffers": False})  # renamed in recent torch; both still sync at init
    return nn.parallel.DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters, **no_forward_sync)


class _Trainer:
    """One training run of ``model`` on (input, target) pairs; shared by finetune and probe."""

    def __init__(self, model: nn.Module, ds: Dataset, cfg: TrainConfig, labels: _Labels, run: _TrainerOptions):
        # (features, targets) when ``ds`` is a TensorDataset of them trained without workers: batches are indexed
        self.tensors = (tuple(ds.tensors) if isinstance(ds, TensorDataset) and run.workers == 0
                        and len(ds.tensors) == 2 else None)
        _check_data(ds, cfg, labels)
        # Data-parallel over the process group when asked and there is one; else one process (rank 0 of 1).
        self.dist = ddp.current() if run.distributed else ddp.DistContext()
        W = self.dist.world_size
        if cfg.batch_size % W:
            raise ValueError(f"batch_size {cfg.batch_size} is the global batch and must be divisible by the number "
                             f"of processes ({W}); each process takes batch_size / {W}")
        self.cfg, self.progress = cfg, run.progress and self.dist.is_main
        self.device = self._place()
        self.module = model.to(self.device)  # the model itself; self.model is its DDP wrapper when distributed
        self.model = self.module
        self.cols = _column_index(labels.columns, labels.num_classes)
        self.head_kwargs = self._head_kwargs(labels)
        self._loader(ds, run.workers)
        if self.dist.enabled:
            self.model = _data_parallel(self.module, self.device, run.find_unused_parameters)
        self._optimization(model, steps=len(self.loader))
        self.ema = ModelEMA(self.module, cfg.ema_decay)  # after DDP's broadcast: the same start on every rank
        self.path = os.path.join(run.checkpoint_dir, CHECKPOINT_NAME) if run.checkpoint_dir else None
        self.epoch, self.history, self.train_s = 0, [], 0.0

    def _place(self) -> torch.device:
        """The device this process trains on: ``cfg.device``, or under DDP on CUDA its own GPU."""
        device = self.cfg.resolved_device()
        if self.dist.enabled and device.type == "cuda":
            device = torch.device("cuda", self.dist.local_rank)  # one GPU per process, whatever cfg.device
            torch.cuda.set_device(device)
        if self.dist.enabled and device.type != "cuda" and torch.distributed.get_backend() == "nccl":
            raise ValueError(f"the process group uses NCCL, which needs CUDA, but training runs on {device}")
        return device

    def _head_kwargs(self, labels: _Labels) -> dict:
        """The head's keyword arguments: the class embeddings of the classes trained on, on the device."""
        E = labels.class_embeddings
        if E is None:
            return {}
        if E.dim() != 2 or E.shape[0] != labels.num_classes:
            raise ValueError(f"class_embeddings must be (N={labels.num_classes}, word_dim) with one row per class of "
                             f"the dataset, got shape {tuple(E.shape)}")
        E = E if self.cols is None else E[self.cols]  # (N', word_dim): the seen ones
        return {"class_embeddings": E.to(self.device)}

    def _loader(self, ds: Dataset, workers: int) -> None:
        """The seeded sampler, loader and their generator of this process."""
        cfg, W = self.cfg, self.dist.world_size
        # The loader's generator seeds the workers (augmentations): distinct per rank, rank 0's is the seed.
        self.generator = torch.Generator()
        self.generator.manual_seed(cfg.seed + 7919 * self.dist.rank)
        drop_last = cfg.drop_last and len(ds) >= cfg.batch_size
        # The order is a permutation drawn from (seed, epoch); rank r takes its positions r, r + W, ... so that
        # the W local batches of a step are together the batch a single process would take at that step. With
        # drop_last the tail that no full global batch holds is dropped; without it the sampler pads by repeats.
        self.sampler = DistributedSampler(ds, num_replicas=W, rank=self.dist.rank, shuffle=True, seed=cfg.seed,
                                          drop_last=drop_last)
        self.loader = DataLoader(ds, batch_size=cfg.batch_size // W, sampler=self.sampler, drop_last=drop_last,
                                 num_workers=workers, worker_init_fn=_seed_worker, generator=self.generator,
                                 pin_memory=self.device.type == "cuda")
        if len(self.loader) == 0:
            raise ValueError(f"the training split ({len(ds)} samples) gives no batch to each of {W} processes")

    def _optimization(self, model: nn.Module, steps: int) -> None:
        """AdamW, its OneCycle schedule over ``steps`` batches per epoch, and the mixed precision's scaler."""
        cfg = self.cfg
        groups = param_groups(model, cfg.weight_decay, query_lr=cfg.lr * cfg.query_lr_scale)
        self.optimizer = adamw(groups, self.device, lr=cfg.lr, betas=cfg.betas)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(  # max_lr per group: the queries' own
            self.optimizer, max_lr=[g.get("lr", cfg.lr) for g in groups], epochs=cfg.epochs, steps_per_epoch=steps,
            pct_start=cfg.pct_start, div_factor=cfg.div_factor, final_div_factor=cfg.final_div_factor,
            cycle_momentum=cfg.cycle_momentum)
        self.use_amp = self.device.type == "cuda" and cfg.amp != "off"
        self.amp_dtype = AMP_DTYPES.get(cfg.amp, torch.bfloat16)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and cfg.amp == "fp16")

    # -- checkpoints ------------------------------------------------------------------------------------------
    def save(self) -> None:
        """Write the checkpoint from rank 0 (every rank must call it: the RNG states are gathered first, and the
        others wait at a barrier until the file is complete)."""
        rngs = ddp.all_gather_objects(_rng_state(self.generator)) if self.dist.enabled else [_rng_state(self.generator)]
        if self.dist.is_main:
            _atomic_save({
                "model": self.module.state_dict(), "state_dict_ema": self.ema.module.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "epoch": self.epoch, "rng": rngs[0], "rng_per_rank": rngs,
                "world_size": self.dist.world_size, "config": dataclasses.asdict(self.cfg),
                "history": self.history, "train_s": self.train_s,
            }, self.path)
        if self.dist.enabled:
            ddp.barrier()

    def load(self) -> None:
        ck = torch.load(self.path, map_location="cpu", weights_only=True)
        saved = ck["config"]
        now = dataclasses.asdict(self.cfg)
        diff = [k for k in now if k not in _RESUMABLE_CHANGES and
                (list(saved.get(k)) if isinstance(saved.get(k), (list, tuple)) else saved.get(k)) !=
                (list(now[k]) if isinstance(now[k], tuple) else now[k])]
        if diff:
            raise ValueError(f"cannot resume from {self.path!r}: its config differs in "
                             + ", ".join(f"{k} (saved {saved.get(k)!r}, now {now[k]!r})" for k in diff))
        saved_world = int(ck.get("world_size", 1))
        if saved_world != self.dist.world_size:
            raise ValueError(f"cannot resume from {self.path!r}: it was written by {saved_world} process(es), this "
                             f"run has {self.dist.world_size}; the per-process data order and RNG states differ")
        self.module.load_state_dict(ck["model"])
        self.ema.module.load_state_dict(ck["state_dict_ema"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        _set_rng_state(ck.get("rng_per_rank", [ck["rng"]])[self.dist.rank], self.generator)
        self.epoch, self.history, self.train_s = ck["epoch"], ck["history"], ck["train_s"]

    # -- the loop ---------------------------------------------------------------------------------------------
    def _loss(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str) -> torch.Tensor:
        cfg = self.cfg
        if self.cols is not None:
            targets = targets[:, self.cols.to(targets.device)]  # (B, N')
            if "class_embeddings" not in self.head_kwargs and logits.shape[1] != targets.shape[1]:
                logits = logits[:, self.cols.to(logits.device)]  # a fixed-query head scores all N classes
        if targets.dim() == 2 and logits.shape[1] > targets.shape[1]:
            # the extra columns of random_queries (word queries, training only) are negatives
            targets = torch.cat([targets, targets.new_zeros(targets.shape[0], logits.shape[1] - targets.shape[1])], 1)
        return compute_loss(cfg.loss, logits, targets, reduction=reduction, gamma_neg=cfg.gamma_neg,
                            gamma_pos=cfg.gamma_pos, clip=cfg.clip, eps=cfg.eps)

    def _step_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, float]:
        """(the loss to backpropagate, the global batch's loss as a float; NaN on every rank if on any).

        DDP averages the gradients over the W ranks; the loss each rank backpropagates is scaled so that this
        average is the gradient of the whole global batch's loss, as one process with the same batch would have:
        W x its share of the sum ("sum"), or W x its share of the sum / the global number of known entries
        ("mean"). The reported value is that global loss, the same on every rank.
        """
        cfg = self.cfg
        if not self.dist.enabled:
            loss = self._loss(logits, targets, cfg.reduction)
            return loss, loss.item()
        terms = self._loss(logits, targets, "terms")  # [sum over this rank's known entries, their number]
        finite = torch.isfinite(terms[0].detach()).float()
        stats = ddp.all_reduce_sum(torch.stack([terms[0].detach().nan_to_num(0.0, 0.0, 0.0), terms[1],
                                                1.0 - finite]))  # [global sum, global known, ranks not finite]
        count = stats[1].clamp(min=1) if cfg.reduction == "mean" else stats.new_ones(())
        W = self.dist.world_size
        value = float("nan") if stats[2].item() > 0 else (stats[0] / count).item()
        return terms[0] * (W / count), value

    def batches(self):
        """The current epoch's (input, target) batches: the loader's, or for tensors held in memory (the probe's
        cached features) the same batches indexed directly, without a per-sample fetch and collate."""
        if self.tensors is None:
            return iter(self.loader)
        return self._tensor_batches()

    def _tensor_batches(self):
        features, targets = self.tensors
        order = list(self.sampler)  # the sampler's permutation for this epoch, as the loader would take it
        B, drop_last = self.loader.batch_size, self.loader.drop_last
        for i in range(0, len(order), B):
            idx = order[i:i + B]
            if drop_last and len(idx) < B:
                break
            idx = torch.as_tensor(idx, dtype=torch.long)
            yield features[idx], targets[idx]  # (B, ...) each: what default_collate would stack

    def begin_epoch(self) -> None:
        self.sampler.set_epoch(self.epoch)
        self.model.train()

    def step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimisation step on a batch: forward, loss, backward, optimizer, scheduler, EMA. Returns the
        batch's loss; raises TrainingDiverged (before the backward) when it is NaN or infinite."""
        cfg, dev = self.cfg, self.device
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=self.amp_dtype, enabled=self.use_amp):
            logits = self.model(x, **self.head_kwargs)  # (B, N) or (B, N' + random_queries)
        loss, value = self._step_loss(logits, y)
        if not np.isfinite(value):  # agreed over the ranks: all stop here, before DDP's backward
            where = self.path if self.path and os.path.isfile(self.path) else None
            raise TrainingDiverged(
                f"loss became {value} at epoch {self.epoch + 1} step {step + 1}; last good checkpoint: "
                f"{where or 'none'}", self.epoch + 1, step + 1, where)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.dist.enabled:
            ddp.average_buffers_(self.module)
        self.ema.update(self.module)
        return value

    def end_epoch(self, total: float, n: int, seconds: float) -> None:
        """Record the epoch (mean batch loss, lr at its end, its seconds) and write the checkpoint."""
        self.train_s += seconds
        self.epoch += 1
        self.history.append({"epoch": self.epoch, "loss": total / max(n, 1),
                             "lr": self.optimizer.param_groups[0]["lr"]})
        if self.path:
            self.save()

    def outcome(self) -> TrainOutcome:
        return TrainOutcome(self.module, self.ema.module, list(self.history), self.train_s, self.epoch)

    def run(self) -> TrainOutcome:
        cfg = self.cfg
        while self.epoch < cfg.epochs:
            t0 = time.perf_counter()
            self.begin_epoch()
            total, n = 0.0, 0
            bar = tqdm(self.batches(), total=len(self.loader), desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                       disable=not self.progress, leave=False)
            try:
                for step, (x, y) in enumerate(bar):
                    value = self.step(step, x, y)
                    total, n = total + value, n + 1
                    bar.set_postfix(loss=f"{value:.4g}")
            finally:
                bar.close()
            self.end_epoch(total, n, time.perf_counter() - t0)
        return self.outcome()


def _prepare(model: nn.Module, ds: Dataset, cfg: TrainConfig, labels: _Labels,
             run: _TrainerOptions) -> _Trainer:
    """Seed, build the trainer and, with ``run.resume``, load its checkpoint: everything before the first step."""
    if cfg.resolved_device().type == "cpu":
        keep_freed_memory()  # the step's buffers stay mapped for the next step (bench.measure.alloc)
    seed_everything(cfg.seed)
    trainer = _Trainer(model, ds, cfg, labels, run)
    if run.resume:
        if run.checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir")
        found = os.path.isfile(trainer.path)
        ranks_found = int(ddp.all_reduce_sum(torch.tensor([float(found)])).item()) if trainer.dist.enabled else found
        if 0 < ranks_found < trainer.dist.world_size:  # every rank raises alike: the count is the same on all
            raise ValueError(f"checkpoint {trainer.path!r} exists on some ranks only: checkpoint_dir must be on a "
                             "filesystem that every node shares (rank 0 writes it, every rank reads it)")
        if found:
            trainer.load()
    return trainer


def _train(model: nn.Module, ds: Dataset, cfg: TrainConfig, labels: _Labels, run: _TrainerOptions
           ) -> TrainOutcome:
    return _prepare(model, ds, cfg, labels, run).run()


def train_finetune(model: nn.Module, train_ds: Dataset, cfg: TrainConfig, *,
                   class_embeddings: Optional[torch.Tensor] = None, columns: Optional[Sequence[int]] = None,
                   progress: bool = True, checkpoint_dir: Optional[str] = None, resume: bool = False,
                   find_unused_parameters: bool = False) -> TrainOutcome:
    """Train ``model`` (a ``HeadModel``, or any module ``model(x, **head_kwargs) -> logits``) end to end.

    ``class_embeddings`` (N, word_dim), one row per class of the dataset, are passed to a word-query head.
    ``columns`` restricts training to those classes (targets, embeddings, and the logits of a fixed-query head):
    a zero-shot run passes the seen classes. A dataset with ``unseen`` classes needs an explicit ``columns`` so
    that held-out labels never leak into training. ``resume=True`` continues from ``checkpoint_dir/last.pt``
    when it exists (and starts afresh when it does not). Raises ``TrainingDiverged`` on a NaN/inf loss.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) it joins the process group (``bench.train.distributed.init_distributed``)
    and trains data-parallel: the model in DistributedDataParallel on GPU ``LOCAL_RANK`` (or the CPU, gloo),
    ``cfg.batch_size`` is the *global* batch (each of the W processes takes ``batch_size / W``, which must divide),
    so the recipe's learning rate and the number of steps do not change with W and the gradients are those of the
    same global batches as on one process. BatchNorm statistics are per rank and averaged after each step;
    the EMA is updated alike on every rank; rank 0 alone writes checkpoints (``checkpoint_dir`` must be shared by
    every node to resume) and shows progress; a NaN loss on any rank stops all of them. ``find_unused_parameters``
    is DDP's, for modules whose forward skips trainable parameters (no head of this package does). Every
    rank returns the same weights.
    """
    ddp.init_distributed()
    unseen = list(getattr(train_ds, "unseen", ()) or ())
    if unseen and columns is None:
        raise ValueError(f"the dataset holds out classes {unseen} for zero-shot evaluation; pass columns=<the seen "
                         "class indices> (or columns=range(N) to train on every class deliberately)")
    multilabel = getattr(train_ds, "multilabel", True)
    num_classes = len(train_ds.class_names) if hasattr(train_ds, "class_names") else _infer_classes(model)
    return _train(model, train_ds, cfg, _Labels(multilabel, num_classes, class_embeddings, columns),
                  _TrainerOptions(progress=progress, checkpoint_dir=checkpoint_dir, resume=resume,
                                  workers=cfg.workers, distributed=True,
                                  find_unused_parameters=find_unused_parameters))


def _infer_classes(model: nn.Module) -> int:
    head = getattr(model, "head", model)
    if not hasattr(head, "num_classes"):
        raise ValueError("cannot tell the number of classes: give a dataset with class_names or a bench head")
    return head.num_classes


def _check_features(features: torch.Tensor, targets: torch.Tensor) -> None:
    if features.shape[0] != targets.shape[0]:
        raise ValueError(f"features ({features.shape[0]}) and targets ({targets.shape[0]}) differ in length")


def train_probe(head: nn.Module, features: torch.Tensor, targets: torch.Tensor, cfg: TrainConfig, *,
                class_embeddings: Optional[torch.Tensor] = None, columns: Optional[Sequence[int]] = None,
                progress: bool = True, checkpoint_dir: Optional[str] = None,
                resume: bool = False) -> TrainOutcome:
    """Train ``head`` alone on cached backbone features (``extract_features``); the backbone never runs.

    ``targets`` (S, N) float multi-hot (-1 = unknown) or (S,) long. Other arguments as ``train_finetune``;
    the features are in memory, so batches are indexed from them directly (no loader workers). Several heads on
    the same features: ``train_probes``, which gives each head exactly what this function gives it.
    """
    _check_features(features, targets)
    multilabel = targets.dim() == 2
    num_classes = targets.shape[1] if multilabel else _infer_classes(head)
    labels = _Labels(multilabel, num_classes, class_embeddings, columns)
    return _train(head, TensorDataset(features, targets), cfg, labels,
                  _TrainerOptions(progress=progress, checkpoint_dir=checkpoint_dir, resume=resume, workers=0))


class _RngStreams:
    """One random-number stream per name (Python's, NumPy's, torch's CPU and, on CUDA, the device's generator
    states): ``enter(name)`` makes that stream the global one, ``leave(name)`` stores where it got to. Heads
    trained in turn on the same batches thus draw (dropout, random queries) exactly what each would draw alone."""

    def __init__(self, cuda: bool):
        self.cuda = cuda and torch.cuda.is_available()
        self.states: Dict[str, tuple] = {}

    def _get(self) -> tuple:
        return (random.getstate(), np.random.get_state(), torch.get_rng_state(),
                torch.cuda.get_rng_state() if self.cuda else None)

    def leave(self, name: str) -> None:
        self.states[name] = self._get()

    def enter(self, name: str) -> None:
        py, npy, cpu, cuda = self.states[name]
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)


def train_probes(heads: Dict[str, nn.Module], features: torch.Tensor, targets: torch.Tensor, cfg: TrainConfig,
                 *, class_embeddings: Optional[Dict[str, Optional[torch.Tensor]]] = None,
                 columns: Optional[Sequence[int]] = None, progress: bool = True,
                 checkpoint_dirs: Optional[Dict[str, Optional[str]]] = None, resume: bool = False,
                 errors: Optional[Dict[str, BaseException]] = None) -> Dict[str, TrainOutcome]:
    """Train several heads on the same cached features in one pass over them per epoch: each batch is indexed
    once and every head takes its step on it, each with its own optimizer, scheduler, loss, EMA, checkpoint
    (``checkpoint_dirs[name]``) and random-number stream.

    Each head ends with exactly the weights ``train_probe`` gives it alone with the same ``cfg`` (same batches, same
    seeded stream, same resume rules), whatever the other heads are; heads resumed at different epochs each go on
    from their own. ``class_embeddings[name]`` is passed to a word-query head. A head's ``train_s`` is the time of
    its own steps plus an equal share of the batch indexing. With ``errors`` (a dict), a head whose training
    raises (e.g. ``TrainingDiverged``) is dropped and its exception stored there while the others go on; without
    it the first failure raises. Returns ``{name: TrainOutcome}`` for the heads that finished.
    """
    _check_features(features, targets)
    if not heads:
        raise ValueError("train_probes needs at least one head")
    class_embeddings, checkpoint_dirs = dict(class_embeddings or {}), dict(checkpoint_dirs or {})
    unknown = sorted((set(class_embeddings) | set(checkpoint_dirs)) - set(heads))
    if unknown:
        raise ValueError(f"class_embeddings / checkpoint_dirs name heads that are not given: {unknown}; "
                         f"heads: {', '.join(heads)}")
    multilabel = targets.dim() == 2
    ds = TensorDataset(features, targets)
    streams = _RngStreams(cuda=cfg.resolved_device().type == "cuda")
    trainers: Dict[str, _Trainer] = {}
    for name, head in heads.items():
        labels = _Labels(multilabel, targets.shape[1] if multilabel else _infer_classes(head),
                         class_embeddings.get(name), columns)
        options = _TrainerOptions(checkpoint_dir=checkpoint_dirs.get(name), resume=resume, workers=0)
        trainers[name] = _prepare(head, ds, cfg, labels, options)
        streams.leave(name)  # the stream as train_probe would start (or resume) it
    live = dict(trainers)
    for epoch in range(min(t.epoch for t in trainers.values()), cfg.epochs):
        active = [n for n, t in live.items() if t.epoch == epoch]  # a head resumed further along waits
        if active:
            _probe_epoch(live, active, streams, progress, errors)
    return {name: t.outcome() for name, t in live.items()}


def _probe_epoch(live: Dict[str, _Trainer], active: List[str], streams: _RngStreams, progress: bool,
                 errors: Optional[Dict[str, BaseException]]) -> None:
    """One epoch of the ``active`` heads (all at the same epoch) over the same batches, each step in the head's own
    random stream (``train_probes``). A head that fails is removed from ``live`` and ``active`` and its exception
    stored in ``errors`` (without ``errors`` it raises)."""
    for name in active:
        streams.enter(name)
        live[name].begin_epoch()
        streams.leave(name)
    totals = {n: 0.0 for n in active}
    seconds = {n: 0.0 for n in active}
    steps, data_s = 0, 0.0
    lead = live[active[0]]  # every trainer has the same sampler (same data, seed and batch size) and device
    bar = tqdm(total=len(lead.loader), desc=f"epoch {lead.epoch + 1}/{lead.cfg.epochs} ({len(active)} heads)",
               disable=not progress, leave=False)
    batches = lead.batches()
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            break
        x, y = batch[0].to(lead.device, non_blocking=True), batch[1].to(lead.device, non_blocking=True)
        data_s += time.perf_counter() - t0
        for name in list(active):
            t0 = time.perf_counter()
            streams.enter(name)
            try:
                totals[name] += live[name].step(steps, x, y)
            except Exception as e:  # noqa: BLE001 (a failed head is reported; the others go on)
                if errors is None:
                    bar.close()
                    raise
                errors[name] = e
                active.remove(name)
                del live[name]
            finally:
                streams.leave(name)
            seconds[name] += time.perf_counter() - t0
        steps += 1
        bar.update(1)
    bar.close()
    for name in active:
        streams.enter(name)  # the checkpoint stores the head's own stream
        live[name].end_epoch(totals[name], steps, seconds[name] + data_s / len(active))
        streams.leave(name)


@torch.no_grad()
def predict(model: nn.Module, data: Union[Dataset, torch.Tensor], *, batch_size: int, device: str = "cpu",
            class_embeddings: Optional[torch.Tensor] = None, workers: int = 0, amp: str = "off",
            progress: bool = False, return_targets: bool = False):
    """Logits (S, N) as float32 numpy of ``model`` in eval mode, over a dataset of (image, target) pairs or a
    tensor of cached features (then ``model`` is a head). The ``eval`` protocol: build the model with a
    checkpoint (``bench.backbones.model.build_model(..., checkpoint=path)``) and call this. ``class_embeddings`` are
    passed to a word-query head (all classes, seen and unseen, for zero-shot evaluation). ``amp`` applies on CUDA
    only.

    ``return_targets=True`` (datasets only) also returns the targets as they came with the images: a dataset
    that skips an undecodable image serves the next one with its own target, so the batch stream, not
    ``ds.targets``, is what the logits line up with.
    """
    if amp not in AMP_MODES:
        raise ValueError(f"unknown amp {amp!r}; valid: {', '.join(AMP_MODES)}")
    dev = torch.device(device)
    was_training = model.training
    model.to(dev).eval()
    kwargs = {} if class_embeddings is None else {"class_embeddings": class_embeddings.to(dev)}
    if isinstance(data, torch.Tensor):
        batches = (data[i:i + batch_size] for i in range(0, data.shape[0], batch_size))
        total = (data.shape[0] + batch_size - 1) // batch_size
    else:
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=workers,
                            pin_memory=dev.type == "cuda")
        batches, total = loader, len(loader)
    out, targets = [], []
    use_amp = dev.type == "cuda" and amp != "off"
    try:
        for x in tqdm(batches, total=total, desc="predict", disable=not progress, leave=False):
            if isinstance(x, (list, tuple)):  # (images, targets) from a dataset
                x, t = x
                targets.append(t)
            with torch.autocast(dev.type, dtype=AMP_DTYPES.get(amp, torch.bfloat16), enabled=use_amp):
                logits = model(x.to(dev, non_blocking=True), **kwargs)  # (B, N)
            out.append(logits.float().cpu())
    finally:
        model.train(was_training)
    logits = torch.cat(out).numpy()
    if return_targets:
        if not targets:
            raise ValueError("return_targets needs a dataset of (image, target) pairs, not cached features")
        return logits, torch.cat(targets).numpy()
    return logits


__all__ = ["TrainConfig", "TrainOutcome", "TrainingDiverged", "ModelEMA", "extract_features", "feature_cache_key",
           "param_groups", "predict", "seed_everything", "train_finetune", "train_probe", "train_probes"]
