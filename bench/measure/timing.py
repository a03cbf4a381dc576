"""Latency and throughput, measured honestly: warm up, synchronise the device before every clock read, report the
median, the inter-quartile range and the number of timed calls, and interleave the things being compared.

On CUDA, kernels run asynchronously: the clock is read only after ``torch.cuda.synchronize``, so a sample covers
the work the call launched, not just its launch. ``time.perf_counter`` (monotonic, sub-microsecond) is the clock;
with a synchronise on each side it measures the same interval CUDA events would, plus a few microseconds of
host overhead that is negligible at the millisecond scale of a backbone or a head.
"""
from __future__ import annotations

import gc
import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

import torch

T = TypeVar("T")
Clock = Callable[[], float]
log = logging.getLogger(__name__)


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default ``percentile`` method)."""
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class Timing:
    """Timed calls of one callable: median and inter-quartile range (p75 - p25) in milliseconds, the number of
    timed calls and every sample (warm-up calls excluded)."""

    median_ms: float
    iqr_ms: float
    n: int
    samples_ms: List[float] = field(default_factory=list, repr=False)

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float]) -> "Timing":
        """Statistics of the given samples (ms). Raises ValueError when there are none."""
        if not samples_ms:
            raise ValueError("a Timing needs at least one sample")
        s = sorted(float(v) for v in samples_ms)
        return cls(median_ms=statistics.median(s), iqr_ms=_quantile(s, 0.75) - _quantile(s, 0.25), n=len(s),
                   samples_ms=[float(v) for v in samples_ms])

    def throughput(self, batch_size: int) -> float:
        """Items per second at the median latency of one call on ``batch_size`` items."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        return batch_size / (self.median_ms / 1e3) if self.median_ms > 0 else float("inf")


def sync(device: Union[str, torch.device] = "cpu") -> None:
    """Wait for the device's queued work: ``torch.cuda.synchronize`` on CUDA, ``torch.mps.synchronize`` on MPS,
    nothing on the CPU (its ops return when done)."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()
    elif kind != "cpu":
        raise ValueError(f"cannot synchronise device {str(device)!r}; valid device types: cpu, cuda, mps")


def _check(warmup: int, min_iters: int, max_iters: int, min_time_s: float) -> None:
    for name, v, lo in (("warmup", warmup, 0), ("min_iters", min_iters, 1), ("max_iters", max_iters, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if min_iters > max_iters:
        raise ValueError(f"min_iters ({min_iters}) must not exceed max_iters ({max_iters})")
    if not min_time_s >= 0:
        raise ValueError(f"min_time_s must be >= 0, got {min_time_s!r}")


def time_interleaved(fns: Dict[str, Callable[[], object]], *, device: Union[str, torch.device] = "cpu",
                     warmup: int = 3, min_iters: int = 5, max_iters: int = 200, min_time_s: float = 1.0,
                     clock: Clock = time.perf_counter, warmup_max_s: float = 2.0,
                     setup: Optional[Dict[str, Callable[[], object]]] = None) -> Dict[str, Timing]:
    """Time several callables in rounds, A B A B ..., so that machine drift (clocks, thermals, other load) falls
    on all of them alike. Each round calls every callable once, in the dict's order; each call is its own sample,
    with the device synchronised before each clock read.

    Up to ``warmup`` untimed rounds come first; they stop early, after at least one, once they have taken
    ``warmup_max_s`` of wall time (a call that slow is past its first-call costs, and more rounds would only add
    minutes: a 448-pixel TResNet-L batch of 32 takes half a minute on a 2-core CPU). Timed rounds go on until at least
    ``min_iters`` rounds have run and the timed rounds have taken ``min_time_s`` in all, or ``max_iters`` rounds
    have run. Every callable gets the same ``n``. ``clock`` is a seconds counter (tests inject a fake one).
    ``setup[name]``, when given, is called before each call of ``fns[name]`` (warm-up included), outside the timer:
    e.g. a training step's ``zero_grad``, which timm's benchmark also leaves out.
    """
    if not fns:
        raise ValueError("time_interleaved needs at least one callable")
    _check(warmup, min_iters, max_iters, min_time_s)
    setup = dict(setup or {})
    unknown = set(setup) - set(fns)
    if unknown:
        raise ValueError(f"setup for unknown callables {sorted(unknown)}; valid: {', '.join(fns)}")
    none = lambda: None  # noqa: E731
    warm_start = time.perf_counter()  # a wall-clock budget, whatever clock the samples use
    for _ in range(warmup):
        for name, fn in fns.items():
            setup.get(name, none)()
            fn()
        if time.perf_counter() - warm_start >= warmup_max_s:
            break
    sync(device)
    samples: Dict[str, List[float]] = {name: [] for name in fns}
    rounds = 0
    start = clock()
    while rounds < max_iters and (rounds < min_iters or clock() - start < min_time_s):
        for name, fn in fns.items():
            setup.get(name, none)()
            sync(device)
            t0 = clock()
            fn()
            sync(device)
            samples[name].append((clock() - t0) * 1e3)
        rounds += 1
    return {name: Timing.from_samples(s) for name, s in samples.items()}


def time_callable(fn: Callable[[], object], *, device: Union[str, torch.device] = "cpu", warmup: int = 3,
                  min_iters: int = 5, max_iters: int = 200, min_time_s: float = 1.0,
                  clock: Clock = time.perf_counter, warmup_max_s: float = 2.0) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then timed calls until at least ``min_iters`` calls and
    ``min_time_s`` seconds, or ``max_iters`` calls. See ``time_interleaved`` (this is its one-callable case)."""
    return time_interleaved({"fn": fn}, device=device, warmup=warmup, min_iters=min_iters, max_iters=max_iters,
                            min_time_s=min_time_s, clock=clock, warmup_max_s=warmup_max_s)["fn"]


_CPU_OOM_MESSAGES = ("DefaultCPUAllocator: can't allocate memory", "not enough memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an exception is an allocator running out of memory (CUDA, the CPU allocator, or Python's)."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error) for m in _CPU_OOM_MESSAGES)


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def with_oom_backoff(fn: Callable[[int], T], batch_size: int) -> Tuple[T, int]:
    """Call ``fn(batch_size)``; on out of memory halve the batch (floor, down to 1) and try again.

    Returns ``(fn's result, the batch size that ran)``: callers record both the requested and the used size.
    Any other exception, and out of memory at batch 1, is re-raised.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    bs = batch_size
    while True:
        try:
            return fn(bs), bs
        except Exception as e:
            if bs == 1 or not is_out_of_memory(e):
                raise
            log.info("out of memory at batch %d; retrying at %d", bs, bs // 2)
        # Outside the except block, so the traceback (and the tensors its frames hold) is already released.
        bs //= 2
        _free_memory()


__all__ = ["Timing", "is_out_of_memory", "sync", "time_callable", "time_interleaved", "with_oom_backoff"]
