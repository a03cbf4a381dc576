"""What a head costs to hold and to train: the peak memory of one inference forward and of one training step, and
the training step itself (forward, loss, backward, AdamW step) that the runner times.

**What is measured.** The peak of the memory in use during one step, *above what was held just before it* (the
weights and the input batch): for inference the activations and the output; for training the activations kept
for backward, the gradients and AdamW's two moment buffers (the first step of a fresh optimizer creates them, so
they are counted), and the temporaries of the optimizer step. The whole footprint of training a model is that
plus its weights.

**How, on CUDA**: ``torch.cuda.reset_peak_memory_stats`` before the step, ``max_memory_allocated`` (and
``max_memory_reserved``, what the caching allocator took from the driver) after it, each minus its value just
before the step; the cache is emptied first, so reserved growth is not hidden by blocks cached earlier.

**How, on the CPU**, where no allocator keeps a peak: in a fresh process per (model, batch, mode), started with
``python -m bench.measure.memory``, as the growth of the process's peak resident set (``VmHWM``) over its resident set
(``VmRSS``) just before the step. Three things would make that wrong, and each is removed:

- *first touch*: the first backward pulls libtorch's code pages into memory and oneDNN builds its kernels; a
  warm-up step at batch 2 (with its own optimizer, thrown away) comes first, then the peak is reset by writing
  ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0), so the warm-up's own peak and the model's construction are
  not in the figure;
- *allocator caching*: glibc keeps freed heap memory for reuse, so a step could reuse what the warm-up freed
  without growing the resident set. The child runs with ``MALLOC_MMAP_THRESHOLD_`` fixed at 128 KiB (every
  tensor of that size or more is its own mapping, returned to the system when freed, and glibc's dynamic
  threshold is off) and ``MALLOC_TRIM_THRESHOLD_`` at 128 KiB (the heap's free top is returned too);
- *other work*: nothing else runs in the child, and it measures one step.

What remains is a floor of about 1 MiB: allocations below 128 KiB may still come from heap pages that are
already resident, and pages are counted whole. Differences between heads smaller than that are noise.

A tensor that is allocated but never written takes no resident memory; PyTorch writes what it allocates for
activations, gradients and optimizer state, so this is not a gap in practice. The method is checked against a
module that allocates a buffer of known size in its forward (``KnownAllocation``), in inference and in training.

**Out of memory.** The child may grow by at most ``limit_mib`` (default: 75% of the memory available when it
starts; ``RLIMIT_AS``), so a step that cannot fit fails as an allocation error in the child instead of calling
the kernel's OOM killer on the machine; it raises ``StepOutOfMemory`` (a ``MemoryError``) in the caller, which
``bench.measure.timing.with_oom_backoff`` understands.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ..backbones.model import assemble, create_backbone
from ..train.losses import compute_loss
from ..train.training import adamw
from .timing import is_out_of_memory

MODES = ("infer", "train")
PARTS = ("model", "backbone", "head")  # backbone + head; the backbone alone (identity head); the head on features
LOSSES = ("bce", "ce", "features")  # multi-hot BCE; single-label cross-entropy; mean of the features
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MIB = 2 ** 20
LIMIT_FRACTION = 0.75  # of MemAvailable: what one CPU measurement may take
PROCESS_START_S = 6.0  # about what a measuring process takes to start and import torch and timm (2-core CPU)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


class StepOutOfMemory(MemoryError):
    """A measured step did not fit in memory (the device's, or the CPU measurement's ``limit_mib``).
    ``failed_batch``: the batch that did not fit (the warm-up's, 2, when already the warm-up did not)."""

    def __init__(self, message: str, failed_batch: Optional[int] = None):
        super().__init__(message)
        self.failed_batch = failed_batch


# ------------------------------------------------------------------------------------------------ the step

@dataclass(frozen=True)
class OptimizerConfig:
    """The AdamW of the measured training step (the training recipe's learning rate and decoupled decay; their
    values change nothing in the cost)."""

    lr: float = 1e-4
    weight_decay: float = 1e-4
    betas: Tuple[float, float] = (0.9, 0.999)


def head_kwargs(head: nn.Module, num_classes: int, device="cpu", dtype=torch.float32) -> dict:
    """Keyword arguments a head's forward needs besides the features: class embeddings (N, word_dim) for a
    word-query head, nothing for the others."""
    if getattr(head, "queries_kind", None) == "word":
        return {"class_embeddings": torch.randn(num_classes, head.word_dim, device=device, dtype=dtype)}
    return {}


def make_targets(logits: torch.Tensor, loss: str) -> Optional[torch.Tensor]:
    """Random targets for logits (B, N): multi-hot (B, N) floats for "bce", class indices (B,) for "ce", none for
    "features" (the backbone alone, whose loss is the mean of its features)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
    if loss == "features":
        return None
    g = torch.Generator().manual_seed(0)
    b, n = logits.shape[0], logits.shape[-1]
    if loss == "bce":
        return (torch.rand(b, n, generator=g) < 0.05).float().to(logits.device)  # (B, N) multi-hot
    return torch.randint(0, n, (b,), generator=g).to(logits.device)  # (B,)


def step_loss(out: torch.Tensor, targets: Optional[torch.Tensor], loss: str) -> torch.Tensor:
    """The scalar the training step differentiates (see ``make_targets``)."""
    if loss == "features":
        return out.float().mean()
    return compute_loss(loss, out, targets)


class Step:
    """One inference forward or one training step of ``model`` on a batch, as a callable.

    ``mode="infer"``: ``model(x)`` under ``no_grad`` (eval mode; the model in ``dtype``). ``mode="train"``:
    forward, ``loss``, backward, AdamW step (train mode; fp32 weights, under autocast when ``dtype`` is fp16 or
    bf16). ``zero_grad()`` sets the gradients to None and is kept out of the call, so that a timer around
    ``__call__`` does not time it (as timm's benchmark.py). The optimizer is made on the first training call's
    ``reset_optimizer()``, so that a fresh one counts its state in the first step's memory.
    """

    def __init__(self, model: nn.Module, sample_shape: Tuple[int, ...], kwargs: dict, *, mode: str, loss: str,
                 batch_size: int, device="cpu", dtype: str = "fp32", channels_last: bool = False,
                 optimizer: OptimizerConfig = OptimizerConfig()):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.model, self.mode, self.loss, self.device = model, mode, loss, torch.device(device)
        self.dtype, self.opt_cfg = DTYPES[dtype], optimizer
        fmt = torch.channels_last if channels_last and len(sample_shape) == 3 else torch.contiguous_format
        if mode == "infer":
            model.eval().to(device=self.device, dtype=self.dtype)
        else:
            model.train().to(device=self.device, dtype=torch.float32)  # fp32 weights (autocast for fp16/bf16)
        x_dtype = self.dtype if mode == "infer" else torch.float32
        self.x = torch.rand(batch_size, *sample_shape, device=self.device, dtype=x_dtype)
        if len(sample_shape) == 3:
            self.x = self.x.contiguous(memory_format=fmt)  # (B, 3, H, W) or (B, C, H, W) features
        self.kwargs = {k: v.to(device=self.device, dtype=x_dtype) for k, v in kwargs.items()}
        self.targets: Optional[torch.Tensor] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None
        if mode == "train":
            model.eval()  # the output's shape, without touching batch-norm statistics
            with torch.no_grad():
                out = model(self.x[:1], **self.kwargs)  # (1, N)
            model.train()
            self.targets = make_targets(out.expand(batch_size, *out.shape[1:]), loss)

    def reset_optimizer(self) -> None:
        """A new AdamW (no state yet) over the trainable parameters, the flavour training uses on this device."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        c = self.opt_cfg
        device = params[0].device if params else "cpu"
        self.optimizer = adamw(params, device, lr=c.lr, weight_decay=c.weight_decay, betas=c.betas)

    def zero_grad(self) -> None:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)

    def __call__(self) -> None:
        if self.mode == "infer":
            with torch.no_grad():
                self.model(self.x, **self.kwargs)
            return
        if self.optimizer is None:
            self.reset_optimizer()
        amp = self.dtype != torch.float32
        ctx = torch.autocast(self.device.type, dtype=self.dtype) if amp else contextlib.nullcontext()
        with ctx:
            out = self.model(self.x, **self.kwargs)
        step_loss(out, self.targets, self.loss).backward()
        self.optimizer.step()


# ------------------------------------------------------------------------------------------ what to build

@dataclass(frozen=True)
class HeadRecipe:
    """How a measuring process builds its model (fresh weights: their values do not change the cost).

    ``part``: "model" (backbone + head, input images), "backbone" (the backbone alone, input images, its feature
    map as output: the identity head), "head" (the head alone on backbone features, as the probe protocol trains).
    """

    backbone: str
    head: Optional[str]
    num_classes: int
    img_size: int
    part: str = "model"

    def __post_init__(self):
        if self.part not in PARTS:
            raise ValueError(f"unknown part {self.part!r}; valid: {', '.join(PARTS)}")
        if self.part != "backbone" and not self.head:
            raise ValueError(f"part {self.part!r} needs a head spec")

    def build(self) -> Tuple[nn.Module, Tuple[int, ...], dict]:
        """(module, the shape of one input item, head keyword arguments)."""
        image = (3, self.img_size, self.img_size)
        if self.part == "head":
            with torch.device("meta"):  # the backbone only for its features' shape: no memory, no compute
                bb = create_backbone(self.backbone, img_size=self.img_size).eval()
                shape = tuple(bb(torch.empty(1, *image)).shape[1:])  # (C, H, W) map or (L, C) tokens
            head = assemble(bb, self.head, self.num_classes, backbone_name=self.backbone).head  # a real head
            return head, shape, head_kwargs(head, self.num_classes)
        bb = create_backbone(self.backbone, img_size=self.img_size)
        if self.part == "backbone":
            return bb, image, {}
        model = assemble(bb, self.head, self.num_classes, backbone_name=self.backbone)
        return model, image, head_kwargs(model.head, self.num_classes)


class KnownAllocation(nn.Module):
    """A reference for the method: a tiny linear layer whose forward also allocates and fills a ``mib`` MiB
    buffer (freed when the forward returns). One step's peak above what was held before is that buffer plus a
    few KiB of activations, gradients and optimizer state."""

    def __init__(self, mib: float, in_features: int = 16, num_classes: int = 4):
        super().__init__()
        self.numel = int(mib * MIB) // 4
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x)  # (B, N)
        if self.numel:
            buf = torch.ones(self.numel, device=x.device, dtype=torch.float32)  # written, so resident
            out = out + buf[:1].to(x.dtype)
        return out


@dataclass(frozen=True)
class KnownAllocationRecipe:
    """Builds ``KnownAllocation(mib)`` for a measuring process."""

    mib: float
    in_features: int = 16
    num_classes: int = 4

    def build(self) -> Tuple[nn.Module, Tuple[int, ...], dict]:
        return KnownAllocation(self.mib, self.in_features, self.num_classes), (self.in_features,), {}


# ------------------------------------------------------------------------------------------- measurement

@dataclass(frozen=True)
class MemoryJob:
    """One measurement: build ``recipe``, warm up at batch 2 (or 1), then measure one ``mode`` step at
    ``batch_size``."""

    recipe: object  # anything with build() -> (module, sample_shape, kwargs), picklable
    mode: str
    batch_size: int
    loss: str = "bce"
    device: str = "cpu"
    dtype: str = "fp32"
    channels_last: bool = False
    threads: int = 1
    limit_mib: Optional[float] = None  # CPU only; None: LIMIT_FRACTION of the memory available at the start
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)


@dataclass(frozen=True)
class PeakMemory:
    """Peak memory of one step above what was held before it, in MiB; ``reserved_mib`` on CUDA only."""

    peak_mib: float
    reserved_mib: Optional[float] = None
    baseline_mib: float = 0.0  # what was held just before the step (process RSS on the CPU, allocated on CUDA)


def _status_mib(*keys: str) -> Dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in keys:
                out[k] = int(v.split()[0]) / 1024.0  # kB -> MiB
    return out


def available_mib() -> float:
    """MemAvailable from /proc/meminfo in MiB (what can be allocated without swapping)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("/proc/meminfo has no MemAvailable line")


class _RssMeter:
    """Peak resident set above the resident set at entry (Linux: VmHWM reset through /proc/self/clear_refs)."""

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak resident set to the current one
        except OSError as e:
            raise RuntimeError(f"cannot reset the peak resident set (/proc/self/clear_refs: {e.strerror}); the "
                               "CPU memory measurement needs Linux >= 4.0") from None
        self.base = _status_mib("VmRSS")["VmRSS"]
        return self

    def __exit__(self, *exc):
        self.peak = _status_mib("VmHWM")["VmHWM"]

    def result(self) -> PeakMemory:
        return PeakMemory(peak_mib=max(self.peak - self.base, 0.0), baseline_mib=self.base)


class _CudaMeter:
    def __init__(self, device):
        self.device = torch.device(device)

    def __enter__(self):
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()  # so that reserved growth is not hidden by blocks cached earlier
        torch.cuda.reset_peak_memory_stats(self.device)
        self.base = torch.cuda.memory_allocated(self.device)
        self.base_reserved = torch.cuda.memory_reserved(self.device)
        return self

    def __exit__(self, *exc):
        torch.cuda.synchronize(self.device)
        self.peak = torch.cuda.max_memory_allocated(self.device)
        self.peak_reserved = torch.cuda.max_memory_reserved(self.device)

    def result(self) -> PeakMemory:
        return PeakMemory(peak_mib=(self.peak - self.base) / MIB,
                          reserved_mib=(self.peak_reserved - self.base_reserved) / MIB, baseline_mib=self.base / MIB)


def _meter(device):
    return _CudaMeter(device) if torch.device(device).type == "cuda" else _RssMeter()


def measure_step(job: MemoryJob, meter=None) -> PeakMemory:
    """Measure ``job`` in this process: build, warm up at batch 2 (or 1), then the peak of one step at the job's batch.

    The CPU figure is right only in a fresh process (see the module docs): ``measure_memory`` starts one.
    ``meter`` is a context manager with ``result()`` (default: CUDA's allocator statistics or the process RSS).
    """
    model, shape, kw = job.recipe.build()
    common = dict(mode=job.mode, loss=job.loss, device=job.device, dtype=job.dtype,
                  channels_last=job.channels_last, optimizer=job.optimizer)
    warm_batch = min(2, job.batch_size)
    try:
        warm = Step(model, shape, kw, batch_size=warm_batch, **common)  # first-call costs, not measured
        warm()
    except Exception as e:
        e.failed_batch = warm_batch  # a larger batch will not fit either
        raise
    warm.zero_grad()
    warm.optimizer = None  # its state goes with it
    del warm
    step = Step(model, shape, kw, batch_size=job.batch_size, **common)
    if job.mode == "train":
        step.reset_optimizer()  # empty until its first step: the state it creates is part of the peak
    gc.collect()
    meter = meter or _meter(job.device)
    with meter:
        step()
    return meter.result()


def _limit_address_space(limit_mib: float) -> None:
    """Let this process grow by at most ``limit_mib`` of address space from now on (``RLIMIT_AS``)."""
    size = _status_mib("VmSize")["VmSize"]
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = int((size + limit_mib) * MIB)
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_AS, (want, hard))


def _child_main(job_path: str, out_path: str) -> None:
    """Entry point of a measuring process: read the job, measure, write the result as JSON."""
    with open(job_path, "rb") as f:
        job: MemoryJob = pickle.load(f)
    torch.set_num_threads(job.threads)
    result: dict
    try:
        limit = job.limit_mib if job.limit_mib is not None else LIMIT_FRACTION * available_mib()
        _limit_address_space(limit)
        r = measure_step(job)
        result = {"peak_mib": r.peak_mib, "baseline_mib": r.baseline_mib, "limit_mib": limit}
    except Exception as e:  # reported to the parent, which raises it there
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        result = {"oom": is_out_of_memory(e), "error": f"{type(e).__name__}: {msg}"[:500],
                  "limit_mib": locals().get("limit"), "failed_batch": getattr(e, "failed_batch", job.batch_size)}
    with open(out_path, "w") as f:
        json.dump(result, f)


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure_memory(job: MemoryJob, timeout_s: float = 3600.0) -> PeakMemory:
    """Peak memory of one step of ``job`` above what was held before it: in a fresh process on the CPU, in this
    process on CUDA. Raises ``StepOutOfMemory`` when the step does not fit, RuntimeError for other failures."""
    if job.mode not in MODES:
        raise ValueError(f"unknown mode {job.mode!r}; valid: {', '.join(MODES)}")
    kind = str(job.device).split(":")[0]
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"cannot measure memory on device {job.device!r}; valid: cpu, cuda, cuda:N")
    if kind == "cuda":
        try:
            return measure_step(job)
        except Exception as e:
            if is_out_of_memory(e):
                raise StepOutOfMemory(f"{job.mode} step at batch {job.batch_size}: {str(e).splitlines()[0]}",
                                      getattr(e, "failed_batch", job.batch_size)) from None
            raise
        finally:
            gc.collect()
            torch.cuda.empty_cache()
    env = {**os.environ, **MALLOC_ENV, "OMP_NUM_THREADS": str(job.threads)}
    env["PYTHONPATH"] = os.pathsep.join([_package_root()] + [p for p in [env.get("PYTHONPATH", "")] if p])
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        job_path, out_path = os.path.join(tmp, "job.pkl"), os.path.join(tmp, "result.json")
        with open(job_path, "wb") as f:
            pickle.dump(job, f)
        proc = subprocess.run([sys.executable, "-m", "bench.measure.memory", job_path, out_path], env=env,
                              capture_output=True, text=True, timeout=timeout_s)
        what = f"{job.mode} step at batch {job.batch_size}"
        if proc.returncode == -signal.SIGKILL:
            raise StepOutOfMemory(f"{what}: the measuring process was killed (SIGKILL: the kernel's "
                                  "out-of-memory killer?)")
        if proc.returncode != 0 or not os.path.exists(out_path):
            tail = (proc.stderr or "").strip().splitlines()[-3:]
            raise RuntimeError(f"{what}: the measuring process failed (exit {proc.returncode}): {' | '.join(tail)}")
        with open(out_path) as f:
            res = json.load(f)
    if "error" in res:
        if res.get("oom"):
            limit = res.get("limit_mib")
            raise StepOutOfMemory(f"{what} needs more than " + (f"{limit:.0f} MiB" if limit else "the memory")
                                  + f" ({res['error']})", res.get("failed_batch", job.batch_size))
        raise RuntimeError(f"{what}: {res['error']}")
    return PeakMemory(peak_mib=res["peak_mib"], baseline_mib=res["baseline_mib"])


_CACHE: Dict[MemoryJob, PeakMemory] = {}


def measure_memory_cached(job: MemoryJob) -> PeakMemory:
    """``measure_memory`` once per job per process (the backbone alone is the same for every head and N)."""
    if job not in _CACHE:
        _CACHE[job] = measure_memory(job)
    return _CACHE[job]


def fits(peak: PeakMemory, margin: float = 0.9) -> bool:
    """Whether a step of that peak can run in this process now (CPU: within ``margin`` of MemAvailable)."""
    try:
        return peak.peak_mib <= margin * available_mib()
    except (OSError, RuntimeError):
        return True


__all__ = ["HeadRecipe", "KnownAllocation", "KnownAllocationRecipe", "MemoryJob", "OptimizerConfig", "PeakMemory",
           "Step", "StepOutOfMemory", "fits", "head_kwargs", "make_targets", "measure_memory",
           "measure_memory_cached", "measure_step", "step_loss"]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m bench.measure.memory JOB.pkl RESULT.json "
                         "(started by bench.measure.memory.measure_memory)")
    from bench.measure.memory import _child_main as main  # the package's own classes, as the pickled job names them

    main(sys.argv[1], sys.argv[2])
