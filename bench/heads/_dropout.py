"""Dropout with a cheaper mask on the CPU.

``F.dropout`` on the CPU draws one Bernoulli variate per entry, each from its own Mersenne-Twister output
converted to a double. This draws 32 random bits per entry in bulk (``random_`` on int64, two entries per draw) and
compares them with an integer threshold; forward and backward on a (64, 48, 512) activation (the decoder heads'
FFN at CPU widths) take about 60% of ``F.dropout``'s time at one thread (``scripts/dropout_cost.py``). Each entry is zeroed
with probability ``p`` rounded to a multiple of 2^-32 and the others are scaled by the exact inverse of their keep probability, so the expectation is
the input's, as with ``F.dropout``. The mask comes from torch's default CPU generator, so ``torch.manual_seed``
makes it reproducible; it is not the stream ``F.dropout`` would draw. On other devices this is ``F.dropout``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_LEVELS = 2 ** 32


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
    if x.device.type != "cpu" or not x.dtype.is_floating_point:
        return F.dropout(x, p, True)
    n = x.numel()
    drop = round(p * _LEVELS)  # entries whose 32 bits (as a signed int) fall below the threshold are dropped
    bits = torch.empty((n + 1) // 2, dtype=torch.int64).random_(-2 ** 63, None).view(torch.int32)[:n].view(x.shape)
    mask = torch.empty(x.shape, dtype=x.dtype)
    torch.ge(bits, drop - 2 ** 31, out=mask)  # 1.0 kept, 0.0 dropped
    return x * mask.mul_(_LEVELS / (_LEVELS - drop))
