"""Dropout with a cheaper mask on the CPU, for the attention heads' activations and attention weights.

``F.dropout`` on the CPU draws one Bernoulli variate per entry through torch's Mersenne Twister, which on the decoder
heads' CPU-scale activations costs more than the matrix products around it (a (64, 48, 512) FFN activation: ~20 ms
forward and backward against ~5 ms for the product that makes it). This draws 32 random bits per entry in bulk from
NumPy's PCG64, seeded by one 64-bit draw of torch's default CPU generator, and compares them with an integer
threshold: each entry is zeroed with probability ``p`` rounded to a multiple of 2^-32, the others scaled by the exact
inverse of their keep probability, so the expectation is the input's, as with ``F.dropout``. ``torch.manual_seed``
makes the mask reproducible, whatever the thread count (the bits are drawn serially); it is not the stream
``F.dropout`` would draw. ``scripts/step_cost.py`` times both (0.42 of ``F.dropout``'s time there). On other devices
this is ``F.dropout``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

_LEVELS = 2 ** 32


def keep_mask(shape, p: float, dtype: torch.dtype) -> torch.Tensor:
    """A CPU tensor of ``shape`` and ``dtype``: 0 where an entry is dropped (probability ``p`` to 2^-32), else the
    scale 1 / (1 - p') that keeps the expectation (p' the rounded probability)."""
    n = int(np.prod(shape, dtype=np.int64))
    drop = round(p * _LEVELS)  # entries whose 32 bits (as a signed int) fall below the threshold are dropped
    seed = int(torch.randint(-2 ** 63, 2 ** 63 - 1, (), dtype=torch.int64)) % 2 ** 64  # one draw of torch's stream
    bits = torch.from_numpy(np.random.PCG64(seed).random_raw((n + 1) // 2).view(np.int32)[:n]).view(shape)
    mask = torch.empty(shape, dtype=dtype)
    torch.ge(bits, drop - 2 ** 31, out=mask)  # 1 kept, 0 dropped
    return mask.mul_(_LEVELS / (_LEVELS - drop))


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout(x, p, training)`` with the mask of ``keep_mask`` on the CPU."""
    if not training or p == 0.0:
        return x
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
    if x.device.type != "cpu" or not x.dtype.is_floating_point:
        return F.dropout(x, p, True)
    return x * keep_mask(x.shape, p, x.dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float,
              batch: Optional[int] = None) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)`` over (B, h, K, d) queries and (B, h, L, d) keys
    and values. On the CPU with ``dropout_p > 0`` (training) the attention weights are dropped with ``dropout``'s
    mask (torch's own path there is the plain maths with a Bernoulli mask: the same computation, a costlier mask).
    ``batch``: q, k and v have batch 1 and the result has ``batch``: the weights are computed once and dropped with
    a mask per image (with ``dropout_p == 0`` the single result is broadcast)."""
    if batch is not None and dropout_p == 0.0:
        return F.scaled_dot_product_attention(q, k, v).expand(batch, *q.shape[1:])
    if batch is None and (dropout_p == 0.0 or q.device.type != "cpu"):
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    w = torch.softmax(torch.matmul(q, k.transpose(-2, -1)).mul_(q.shape[-1] ** -0.5), dim=-1)  # (B or 1, h, K, L)
    if batch is not None:
        w = w.expand(batch, *w.shape[1:])  # (batch, h, K, L): the same weights, a mask per image below
    return torch.matmul(dropout(w, dropout_p, True), v)  # (B, h, K, d)
