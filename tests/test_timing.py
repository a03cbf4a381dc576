"""bench.measure.timing: statistics, stopping rules and interleaving on a fake clock (no wall-clock thresholds), and the
out-of-memory backoff with fake callables."""
from __future__ import annotations

import time

import pytest
import torch

from bench.measure import timing
from bench.measure.timing import Timing, is_out_of_memory, sync, time_callable, time_interleaved, with_oom_backoff


class FakeClock:
    """Seconds that advance only when a fake workload says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, seconds: float):
        def fn():
            self.now += seconds
        return fn

    def work_list(self, seconds):
        it = iter(seconds)

        def fn():
            self.now += next(it)
        return fn


# ---------------------------------------------------------------------------------------------------- statistics

def test_timing_from_samples_median_and_iqr():
    t = Timing.from_samples([4.0, 1.0, 100.0, 2.0, 3.0])  # sorted: 1 2 3 4 100
    assert t.median_ms == 3.0
    assert t.iqr_ms == 4.0 - 2.0  # p75 = 4, p25 = 2 (linear interpolation, numpy's default)
    assert t.n == 5
    assert t.samples_ms == [4.0, 1.0, 100.0, 2.0, 3.0]  # kept in call order


def test_timing_interpolates_quantiles_like_numpy():
    import numpy as np

    samples = [5.0, 1.0, 7.5, 2.0, 9.0, 3.25]
    t = Timing.from_samples(samples)
    assert t.median_ms == pytest.approx(float(np.median(samples)))
    assert t.iqr_ms == pytest.approx(float(np.percentile(samples, 75) - np.percentile(samples, 25)))


def test_timing_single_sample_and_empty():
    t = Timing.from_samples([2.5])
    assert (t.median_ms, t.iqr_ms, t.n) == (2.5, 0.0, 1)
    with pytest.raises(ValueError, match="at least one sample"):
        Timing.from_samples([])


def test_throughput():
    assert Timing.from_samples([250.0]).throughput(32) == pytest.approx(128.0)
    with pytest.raises(ValueError):
        Timing.from_samples([1.0]).throughput(0)


# ---------------------------------------------------------------------------------------------- stopping rules

def test_time_callable_samples_are_the_injected_durations():
    clock = FakeClock()
    durations = [9.0, 9.0, 9.0, 0.001, 0.004, 0.002, 0.003, 0.005]  # three warm-up calls, then five timed
    t = time_callable(clock.work_list(durations), warmup=3, min_iters=5, max_iters=5, min_time_s=0.0, clock=clock)
    assert t.n == 5
    assert t.samples_ms == pytest.approx([1.0, 4.0, 2.0, 3.0, 5.0])  # warm-up excluded
    assert t.median_ms == pytest.approx(3.0)
    assert t.iqr_ms == pytest.approx(2.0)


def test_time_callable_runs_min_iters_even_past_min_time():
    clock = FakeClock()
    t = time_callable(clock.work(0.5), warmup=0, min_iters=5, max_iters=200, min_time_s=1.0, clock=clock)
    assert t.n == 5


def test_time_callable_runs_until_min_time():
    clock = FakeClock()
    t = time_callable(clock.work(0.125), warmup=2, min_iters=3, max_iters=200, min_time_s=1.0, clock=clock)
    assert t.n == 8  # 8 x 0.125 s = 1.0 s
    assert t.median_ms == pytest.approx(125.0) and t.iqr_ms == pytest.approx(0.0)


def test_time_callable_stops_at_max_iters():
    clock = FakeClock()
    calls = []
    t = time_callable(lambda: calls.append(clock.work(0.001)()), warmup=4, min_iters=5, max_iters=7,
                      min_time_s=1e9, clock=clock)
    assert t.n == 7
    assert len(calls) == 4 + 7


def test_time_callable_syncs_around_every_clock_read(monkeypatch):
    events = []
    monkeypatch.setattr(timing, "sync", lambda device: events.append(("sync", str(device))))
    clock = FakeClock()

    def read():
        events.append("clock")
        return clock()

    def fn():
        events.append("fn")
        clock.now += 0.01

    time_callable(fn, device="cuda:0", warmup=1, min_iters=2, max_iters=2, min_time_s=0.0, clock=read)
    s = ("sync", "cuda:0")
    # warm-up, sync; the loop's start time; then each timed call is sync, clock, fn, sync, clock (while
    # rounds < min_iters the stopping rule does not read the clock)
    per_call = [s, "clock", "fn", s, "clock"]
    assert events == ["fn", s, "clock"] + per_call + per_call


def test_real_sleep_is_measured_at_least_as_long():
    # A lower bound only: sleep() never returns early, so this cannot flake on a busy machine.
    t = time_callable(lambda: time.sleep(0.002), warmup=1, min_iters=3, max_iters=3, min_time_s=0.0)
    assert t.n == 3
    assert min(t.samples_ms) >= 2.0 * 0.99


@pytest.mark.parametrize("kwargs", [dict(warmup=-1), dict(min_iters=0), dict(max_iters=0),
                                    dict(min_iters=5, max_iters=4), dict(min_time_s=-1.0), dict(min_iters=True)])
def test_time_callable_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        time_callable(lambda: None, **kwargs)


# ------------------------------------------------------------------------------------------------- interleaving

def test_time_interleaved_calls_in_rounds_and_keeps_samples_apart():
    clock = FakeClock()
    order = []

    def make(name, seconds):
        def fn():
            order.append(name)
            clock.now += seconds
        return fn

    out = time_interleaved({"a": make("a", 0.002), "b": make("b", 0.010), "c": make("c", 0.001)},
                           warmup=2, min_iters=4, max_iters=4, min_time_s=0.0, clock=clock)
    assert order == ["a", "b", "c"] * (2 + 4)  # warm-up rounds interleaved too
    assert {k: t.n for k, t in out.items()} == {"a": 4, "b": 4, "c": 4}
    assert out["a"].median_ms == pytest.approx(2.0)
    assert out["b"].median_ms == pytest.approx(10.0)
    assert out["c"].median_ms == pytest.approx(1.0)


def test_time_interleaved_min_time_counts_all_callables():
    clock = FakeClock()
    out = time_interleaved({"a": clock.work(0.25), "b": clock.work(0.25)}, warmup=0, min_iters=1, max_iters=100,
                           min_time_s=2.0, clock=clock)
    assert out["a"].n == out["b"].n == 4  # 4 rounds x 0.5 s


def test_time_interleaved_needs_a_callable():
    with pytest.raises(ValueError, match="at least one"):
        time_interleaved({})


# ------------------------------------------------------------------------------------------------------- sync

def test_sync_cpu_is_a_no_op_and_unknown_devices_fail():
    sync("cpu")
    sync(torch.device("cpu"))
    with pytest.raises(ValueError, match="valid device types"):
        sync("meta")


# ------------------------------------------------------------------------------------------------- OOM backoff

def _oom_above(limit, error):
    calls = []

    def fn(bs):
        calls.append(bs)
        if bs > limit:
            raise error
        return f"ran {bs}"
    return fn, calls


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:119] DefaultCPUAllocator: can't allocate memory: you tried to "
                 "allocate 68719476736 bytes."),
    RuntimeError("[enforce fail at alloc_cpu.cpp:83] . DefaultCPUAllocator: not enough memory: you tried to "
                 "allocate 1 bytes."),
], ids=["cuda", "cpu-cant-allocate", "cpu-not-enough"])
def test_oom_backoff_halves_until_it_fits(error):
    fn, calls = _oom_above(4, error)
    result, used = with_oom_backoff(fn, 32)
    assert calls == [32, 16, 8, 4]
    assert (result, used) == ("ran 4", 4)


def test_oom_backoff_floors_odd_sizes_and_keeps_a_fitting_batch():
    fn, calls = _oom_above(4, torch.cuda.OutOfMemoryError("out of memory"))
    assert with_oom_backoff(fn, 7) == ("ran 3", 3)
    assert calls == [7, 3]
    fn, calls = _oom_above(4, torch.cuda.OutOfMemoryError("out of memory"))
    assert with_oom_backoff(fn, 4) == ("ran 4", 4)
    assert calls == [4]


def test_oom_backoff_reraises_at_batch_one():
    fn, calls = _oom_above(0, torch.cuda.OutOfMemoryError("out of memory"))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        with_oom_backoff(fn, 8)
    assert calls == [8, 4, 2, 1]


def test_oom_backoff_reraises_other_errors_at_once():
    fn, calls = _oom_above(4, RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        with_oom_backoff(fn, 32)
    assert calls == [32]


def test_oom_backoff_rejects_bad_batch():
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            with_oom_backoff(lambda bs: bs, bad)


def test_is_out_of_memory():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("expected scalar type Float"))
    assert not is_out_of_memory(ValueError("not enough memory"))  # only allocator errors (RuntimeError) count


def test_slow_calls_cut_the_warm_up_short():
    # sleep() never returns early, so after two 60 ms calls the 0.1 s warm-up budget is spent: no flakiness.
    calls = []
    t = time_callable(lambda: (calls.append(1), time.sleep(0.06)), warmup=10, min_iters=1, max_iters=1,
                      min_time_s=0.0, warmup_max_s=0.1)
    assert t.n == 1
    assert len(calls) <= 3  # at most 2 warm-up calls instead of 10, then the timed one
