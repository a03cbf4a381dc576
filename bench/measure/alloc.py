"""Keep freed memory in the process on the CPU, so that a training step does not page-fault its buffers anew.

A training step frees and re-allocates the same activation buffers every step. glibc's malloc serves large
blocks with fresh ``mmap`` pages (above its mmap threshold) and gives the top of its heap back to the system
(above its trim threshold), so each step's buffers are faulted in again page by page. ``python
scripts/step_cost.py`` (fresh processes with and without this, alternating; reports/perf/step_cost.md) measured
the default run's fine-tuning step (test_resnet + GAP, batch 64 at 64 px) 11% faster with it, and a decoder head's
probe step no faster (1.08x, within that measurement's noise). ``keep_freed_memory``
raises both thresholds, once per process: the memory a step used stays mapped for the next one, which it
reuses. The results are the same (torch's CPU allocator aligns every block to 64 bytes either way); the
process's resident memory stays at its peak instead of shrinking between steps. Only with glibc on Linux;
elsewhere a no-op. The memory measurements (``bench.measure.memory``) run in their own processes and never call it.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_done = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); True when they were set."""
    global _done
    if _done:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        # an mmap threshold above 32 MiB is refused by older glibc (its maximum on 64 bits): then 32 MiB
        mmap = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1 or libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1
        ok = mmap and libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1) == 1 and libc.mallopt(_M_TOP_PAD, 64 << 20) == 1
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok
