"""How long a run will take on this machine, from quick measurements of the work its cells repeat.

Before a run starts, ``Calibration`` times the pieces on the run's own device: a forward pass of each backbone
(and head) at each batch size the run uses, one training step per (backbone, head) at the training batch (or, for
a model too slow for that, at a small batch scaled by the forward passes' ratio), one step of each head on
features of the backbone's shape (the probe protocol), and the loading of a few dataset items, first and again
(the ``scenes`` render cache makes the second much cheaper). ``estimate_cells`` multiplies them by what each cell
does (epochs x steps, evaluation passes, the timing loops' rounds and ``min_time``, checkpoints, counting
passes) and returns seconds per cell, so a progress bar can advance by each cell's share and its ETA follow the
measured pace. The measurements take a few seconds for the default run and are kept for the process (a study
asks for many configurations).
"""
from __future__ import annotations

import copy
import math
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..backbones.model import HeadModel, assemble, create_backbone
from ..datasets import create_dataset
from ..train.evaluation import training_memory_format
from ..train.training import adamw
from .alloc import keep_freed_memory
from .memory import PROCESS_START_S, head_kwargs
from .timing import sync

# Seconds a run spends after its last cell: the summary table and, with plots, matplotlib's import and the files.
AFTER_CELLS_S = 1.0
PLOTS_S = 3.0
# Checkpoint writes: model, EMA and AdamW's two moments, float32, at about this rate (bytes/s).
CHECKPOINT_RATE = 300e6
# A training step is measured directly when its forward pass predicts it under this many seconds; slower models
# are measured at SMALL_BATCH and scaled.
DIRECT_STEP_S = 1.5
SMALL_BATCH = 2
# Timing loops (bench.measure.timing defaults): warm-up rounds stop after 3 or 2 s, timed rounds after >= 5 and
# min_time.
WARMUP_ROUNDS, WARMUP_MAX_S, MIN_ROUNDS, MAX_ROUNDS = 3, 2.0, 5, 200
# Where a run is long enough on a CPU to say so, with the faster ways to the same question.
LONG_ON_CPU_S = 15 * 60


def _seconds(fn, device, reps: int = 1) -> float:
    """Mean seconds of ``fn()`` over ``reps`` calls after one untimed call."""
    fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / reps


class Calibration:
    """Measured pieces of work for one (device, image size, number of classes, dataset), cached per process."""

    _cache: Dict[tuple, "Calibration"] = {}

    @classmethod
    def for_config(cls, cfg) -> "Calibration":
        key = (cfg.device, cfg.img_size, cfg.num_classes, cfg.dataset, cfg.data_root, cfg.protocol)
        if key not in cls._cache:
            cls._cache[key] = cls(cfg)
        return cls._cache[key]

    def __init__(self, cfg):
        self.cfg = cfg
        self.device = cfg.device
        self._backbones: dict = {}
        self._models: Dict[tuple, HeadModel] = {}
        self._times: Dict[tuple, float] = {}
        self._data: Dict[str, tuple] = {}
        self.build_s: Dict[str, float] = {}

    # -- models -------------------------------------------------------------------------------------------------
    def backbone(self, name: str):
        if name not in self._backbones:
            t0 = time.perf_counter()
            bb = create_backbone(name, img_size=self.cfg.img_size).eval()  # random weights: the speed is the same
            self.build_s[name] = time.perf_counter() - t0
            self._backbones[name] = bb.to(self.device)
        return self._backbones[name]

    def features_shape(self, name: str) -> tuple:
        key = ("shape", name)
        if key not in self._times:
            with torch.no_grad():
                x = torch.zeros(1, 3, self.cfg.img_size, self.cfg.img_size, device=self.device)
                self._times[key] = tuple(self.backbone(name)(x).shape[1:])
        return self._times[key]

    def model(self, backbone: str, spec: str) -> HeadModel:
        """The head ``spec`` on the (shared) backbone, on the device; its build time in ``build_s``."""
        key = (backbone, spec)
        if key not in self._models:
            bb = self.backbone(backbone)
            t0 = time.perf_counter()
            model = assemble(bb, spec, self.cfg.num_classes, backbone_name=backbone).to(self.device)
            self.build_s[f"{backbone}+{spec}"] = time.perf_counter() - t0
            self._models[key] = model
        return self._models[key]

    def head(self, backbone: str, spec: str):
        return self.model(backbone, spec).head

    def _kwargs(self, head):
        return head_kwargs(head, self.cfg.num_classes, self.device, torch.float32)

    # -- forward passes -----------------------------------------------------------------------------------------
    def forward(self, backbone: str, head: Optional[str], batch: int) -> float:
        """Seconds of one eval forward at ``batch``: the backbone (head None), or backbone + head."""
        key = ("fwd", backbone, head, batch)
        if key not in self._times:
            one, four = (self._forward_direct(backbone, head, b) for b in (1, 4))
            predicted = one + (batch - 1) * max(four - one, 0.0) / 3  # linear in the batch, with an intercept
            self._times[key] = (self._forward_direct(backbone, head, batch) if batch in (1, 4) or predicted < 0.5
                                else predicted)
        return self._times[key]

    def _forward_direct(self, backbone: str, head: Optional[str], batch: int) -> float:
        key = ("fwd!", backbone, head, batch)
        if key not in self._times:
            bb = self.backbone(backbone)
            h = self.head(backbone, head) if head else None
            kw = self._kwargs(h) if h is not None else {}
            x = torch.rand(batch, 3, self.cfg.img_size, self.cfg.img_size, device=self.device)

            def fn():
                with torch.no_grad():
                    f = bb(x)
                    return h.eval()(f, **kw) if h is not None else f
            self._times[key] = _seconds(fn, self.device)
        return self._times[key]

    def extract_forward(self, backbone: str, batch: int) -> float:
        """Seconds of the backbone's eval forward at ``batch`` as feature extraction runs it (channels-last on a
        CPU, bench.train.features)."""
        key = ("extract", backbone, batch)
        if key not in self._times:
            fmt = torch.channels_last if torch.device(self.device).type == "cpu" else torch.contiguous_format
            bb = self.backbone(backbone).to(memory_format=fmt)
            x = torch.rand(batch, 3, self.cfg.img_size, self.cfg.img_size, device=self.device).contiguous(
                memory_format=fmt)
            with torch.no_grad():
                self._times[key] = _seconds(lambda: bb(x), self.device)
            bb.to(memory_format=torch.contiguous_format)
        return self._times[key]

    def head_forward(self, backbone: str, head: str, batch: int) -> float:
        """Seconds of the head alone (eval) on a batch of the backbone's features."""
        key = ("hfwd", backbone, head, batch)
        if key not in self._times:
            h = self.head(backbone, head).eval()
            f = torch.randn(batch, *self.features_shape(backbone), device=self.device)
            kw = self._kwargs(h)
            with torch.no_grad():
                self._times[key] = _seconds(lambda: h(f, **kw), self.device, reps=2)
        return self._times[key]

    # -- training steps -----------------------------------------------------------------------------------------
    def _step(self, module, x, kw) -> float:
        if torch.device(self.device).type == "cpu":
            keep_freed_memory()  # as training does (bench.measure.alloc)
        module.train()
        opt = adamw([p for p in module.parameters() if p.requires_grad], self.device, lr=1e-6)
        ema = [p.detach().clone() for p in module.parameters()]

        def fn():
            out = module(x, **kw)
            opt.zero_grad(set_to_none=True)
            out.float().square().mean().backward()
            opt.step()
            with torch.no_grad():
                for e, p in zip(ema, module.parameters()):
                    e.lerp_(p, 0.01)
        s = _seconds(fn, self.device)
        module.eval()
        return s

    def train_step(self, backbone: str, head: str, batch: int) -> float:
        """Seconds of one fine-tuning step (forward, loss, backward, AdamW, EMA) at ``batch``, in the memory
        format training uses; a model whose step would take over DIRECT_STEP_S is measured at SMALL_BATCH and
        scaled by the forward passes' ratio."""
        key = ("step", backbone, head, batch)
        if key not in self._times:
            fmt = training_memory_format(self.device)
            model = copy.deepcopy(self.model(backbone, head)).to(memory_format=fmt)  # its own backbone and head
            kw = self._kwargs(model.head)
            fwd_b = self.forward(backbone, head, batch)
            small = batch if 3 * fwd_b < DIRECT_STEP_S else min(batch, SMALL_BATCH)
            x = torch.rand(small, 3, self.cfg.img_size, self.cfg.img_size, device=self.device)
            s = self._step(model, x, kw)
            if small != batch:
                s *= fwd_b / max(self.forward(backbone, head, small), 1e-9)
            self._times[key] = s
        return self._times[key]

    def head_step(self, backbone: str, head: str, batch: int) -> float:
        """Seconds of one training step of the head alone on cached features (the probe protocol)."""
        key = ("hstep", backbone, head, batch)
        if key not in self._times:
            h = copy.deepcopy(self.head(backbone, head))
            f = torch.randn(batch, *self.features_shape(backbone), device=self.device)
            self._times[key] = self._step(h, f, self._kwargs(h))
        return self._times[key]

    # -- data ---------------------------------------------------------------------------------------------------
    def data(self, split: str, augment: bool) -> Tuple[int, float, float]:
        """(items in the split, seconds per item read the first time, seconds per item read again)."""
        key = f"{split}-{augment}"
        if key not in self._data:
            ds = create_dataset(self.cfg.dataset, split, root=self.cfg.data_root, img_size=self.cfg.img_size,
                                train_augment=augment)
            idx = list(range(min(4, len(ds))))
            t0 = time.perf_counter()
            for i in idx:
                ds[i]
            first = (time.perf_counter() - t0) / max(len(idx), 1)
            t0 = time.perf_counter()
            for i in idx:
                ds[i]
            again = (time.perf_counter() - t0) / max(len(idx), 1)
            self._data[key] = (len(ds), first, min(again, first))
        return self._data[key]

    def params(self, backbone: str, head: Optional[str]) -> int:
        n = sum(p.numel() for p in self.head(backbone, head).parameters()) if head else 0
        return n + sum(p.numel() for p in self.backbone(backbone).parameters())


def _timing_loop_s(call_s: float, callables: int, min_time_s: float) -> float:
    """Seconds of one ``time_interleaved`` measurement of ``callables`` calls of ``call_s`` each per round."""
    round_s = max(call_s * callables, 1e-9)
    warm = min(WARMUP_ROUNDS, max(1, math.ceil(WARMUP_MAX_S / round_s))) * round_s
    timed = min(MAX_ROUNDS, max(MIN_ROUNDS, math.ceil(min_time_s / round_s))) * round_s
    return warm + timed


def _cost_cell_s(cfg, cell, cal: Calibration, counted: set) -> float:
    """A cost cell: model builds, the MAC counts (ours and fvcore's: three passes at batch 1, once per process
    per model), then backbone, heads and whole models timed at the cell's batch."""
    s = cal.build_s.get(cell.backbone, 0.0) + sum(cal.build_s.get(f"{cell.backbone}+{h}", 0.0) for h in cell.heads)
    for h in cell.heads:
        if (cell.backbone, h) not in counted:
            counted.add((cell.backbone, h))
            s += 3 * cal.forward(cell.backbone, h, 1) + 0.05
    if cfg.timing:
        b = cell.batch_size
        bb = cal.forward(cell.backbone, None, b)
        k = len(cell.heads)
        if getattr(cfg, "latency", True):
            heads = [cal.head_forward(cell.backbone, h, b) for h in cell.heads]
            s += bb + _timing_loop_s(bb, 1, cfg.min_time_s)
            s += _timing_loop_s(sum(heads) / k, k, cfg.min_time_s)
            s += _timing_loop_s(sum(cal.forward(cell.backbone, h, b) for h in cell.heads) / k, k, cfg.min_time_s)
        probe = cfg.protocol == "probe"
        steps = [cal.head_step(cell.backbone, h, b) if probe else cal.train_step(cell.backbone, h, b)
                 for h in cell.heads]
        if getattr(cfg, "memory", False):  # a fresh process per figure: start-up, a warm-up at batch 2, the step
            fwd = [cal.forward(cell.backbone, h, b) for h in cell.heads] + [bb]
            trn = steps + [cal.train_step(cell.backbone, "gap", b)]  # + the backbone alone (identity head)
            s += sum(2 * PROCESS_START_S + 2 * (f + t) for f, t in zip(fwd, trn))
        if getattr(cfg, "train_timing", False):  # interleaved, zero_grad outside the timer
            s += _timing_loop_s(sum(steps) / k, k, cfg.min_time_s)
    return s


def _steps(cfg, n_train: int) -> int:
    B = cfg.train_batch_size
    return cfg.epochs * (n_train // B if n_train >= B else 1)


def _checkpoint_s(cfg, cal: Calibration, backbone: str, head: str, with_backbone: bool) -> float:
    params = cal.params(backbone, head) if with_backbone else cal.params(backbone, head) - cal.params(backbone, None)
    return cfg.epochs * 16 * params / CHECKPOINT_RATE  # model, EMA, two AdamW moments, float32


def _accuracy_cell_s(cfg, cell, cal: Calibration, read: set, counted: set) -> float:
    """An accuracy cell: data reads (a split's first read once per process), training, evaluation of the model
    and its EMA, checkpoints, counting."""
    B = cfg.train_batch_size
    probe = cfg.protocol == "probe"
    n_val, val_first, val_again = cal.data("val", False)
    s = 0.0
    for h in cell.heads:
        if (cell.backbone, h) not in counted:
            counted.add((cell.backbone, h))
            s += 3 * cal.forward(cell.backbone, h, 1) + 0.05
    if cfg.protocol == "eval":
        h = cell.heads[0]
        return s + n_val * val_first + math.ceil(n_val / B) * cal.forward(cell.backbone, h, B)
    n_train, tr_first, tr_again = cal.data("train", not probe)

    def reads(split, n, first, again, times):  # the split's first pass costs `first` per item, once per process
        cost = n * again * times
        if split not in read:
            read.add(split)
            cost += n * (first - again)
        return cost

    steps = _steps(cfg, n_train)
    if probe:  # the backbone once over both splits, then every head on the features
        # features are cached per weights: pretrained (or checkpoint) weights are every seed's, extracted once
        shared = bool(cfg.pretrained or cfg.checkpoint)
        if not shared or ("features", cell.backbone) not in read:
            read.add(("features", cell.backbone))
            s += reads("train", n_train, tr_first, tr_again, 1) + reads("val", n_val, val_first, val_again, 1)
            s += (math.ceil(n_train / B) + math.ceil(n_val / B)) * cal.extract_forward(cell.backbone, B)
        for h in cell.heads:
            s += steps * cal.head_step(cell.backbone, h, B)
            s += 2 * math.ceil(n_val / B) * cal.head_forward(cell.backbone, h, B)
            s += _checkpoint_s(cfg, cal, cell.backbone, h, with_backbone=False)
        return s
    h = cell.heads[0]
    s += cal.build_s.get(cell.backbone, 0.0) + cal.build_s.get(f"{cell.backbone}+{h}", 0.0)
    s += reads("train", n_train, tr_first, tr_again, cfg.epochs) + reads("val", n_val, val_first, val_again, 2)
    s += steps * cal.train_step(cell.backbone, h, B)
    s += 2 * math.ceil(n_val / B) * cal.forward(cell.backbone, h, B)
    s += _checkpoint_s(cfg, cal, cell.backbone, h, with_backbone=True)
    return s


def estimate_cells(cfg, cells: Sequence) -> List[float]:
    """Seconds each cell is expected to take on this machine (measured pieces, see the module docstring)."""
    cal = Calibration.for_config(cfg)
    read: set = set()
    counted: set = set()
    out = []
    for c in cells:
        out.append(_cost_cell_s(cfg, c, cal, counted) if c.kind == "cost" else
                   _accuracy_cell_s(cfg, c, cal, read, counted))
    return out


def estimate_seconds(cfg, cells: Sequence, plots: bool = True) -> float:
    """The whole run: its cells, then the summary and (``plots``) the plots."""
    return sum(estimate_cells(cfg, cells)) + AFTER_CELLS_S + (PLOTS_S if plots else 0.0)


def duration(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h"


def faster_ways(cfg, cells: Sequence, per_cell: Sequence[float]) -> Optional[str]:
    """On a CPU, for a run estimated over LONG_ON_CPU_S: the faster ways to the same question, with estimates
    where this machine can tell. None otherwise."""
    total = sum(per_cell)
    if cfg.device != "cpu" or total < LONG_ON_CPU_S:
        return None
    cost = sum(s for c, s in zip(cells, per_cell) if c.kind == "cost")
    acc = total - cost
    ways = [f"--cost-only (params, MACs and timings alone: ~{duration(cost)})"]
    if cfg.protocol == "finetune" and not cfg.cost_only:
        ways.append("--protocol probe (heads trained together on frozen, cached backbone features)")
    if len(cfg.seeds) > 1 and not cfg.cost_only:
        ways.append(f"--seeds {cfg.seeds[0]} (one seed, no spread: ~{duration(cost + acc / len(cfg.seeds))})")
    ways.append("a GPU (--device cuda, the default where one is available)")
    return (f"this is long on a CPU (~{duration(total)}). Faster ways to the same question: " + "; ".join(ways))


def cell_key(cell) -> tuple:
    """A cell's identity, for matching the cells a run reports back to their estimates."""
    return (cell.kind, cell.backbone, tuple(cell.heads), cell.seed, cell.batch_size)


__all__ = ["Calibration", "cell_key", "duration", "estimate_cells", "estimate_seconds", "faster_ways"]
