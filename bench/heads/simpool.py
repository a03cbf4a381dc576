"""SimPool (Psomas et al., "Keep It SimPool", ICCV 2023) on timm's ``SimPool2d``, then the probing readout.

The query is the mean of the tokens (GAP), projected; the keys are the LayerNormed tokens, projected; the values are
the LayerNormed tokens themselves (no value projection). Its attention pools the values, optionally in a power
``gamma`` (``(sum_i a_i v_i^gamma)^(1/gamma)`` on values shifted to be positive). Then BatchNorm without affine
(``bn``) and a linear layer.

One timm layer serves both layouts: a map (B, C, H, W) enters ``SimPool2d`` as it is (it flattens it to tokens
itself), tokens (B, L, C) enter it as a (B, C, L, 1) map, so a map and its flattened tokens give the same output.

The LayerNorm has no bias (timm's default has one): its bias cannot change the head's logits beyond what the linear
layer's bias does. On the keys it adds one constant per query to every score, which the softmax ignores; on the
values it shifts the pooled vector by a constant, which the linear layer's bias (or the BatchNorm) absorbs, and with
``gamma`` the values' shift to positive cancels it outright. Under the default BatchNorm its gradient would be zero.
"""
from __future__ import annotations

from functools import partial

import torch
from timm.layers import SimPool2d
from torch import nn

from ._base import Head, register_head, to_map
from ._readout import probe_norm


@register_head("simpool")
class SimPool(Head):
    """SimPool: the GAP vector as query of one attention over the LayerNormed tokens, then BatchNorm and linear.

    Args:
        heads: attention heads (``in_features`` must be divisible by it); SimPool's default is 1.
        gamma: the power of the values' pooling (None: plain attention pooling, timm's and SimPool's default).
        bn: BatchNorm1d without affine before the linear layer (the probing readout).
    """

    def __init__(self, in_features: int, num_classes: int, heads: int = 1, gamma: float | None = None,
                 bn: bool = True):
        super().__init__(in_features, num_classes)
        if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1 or in_features % heads:
            raise ValueError(f"simpool: in_features ({in_features}) must be divisible by heads ({heads!r})")
        if gamma is not None and (isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma <= 0):
            raise ValueError(f"simpool: gamma must be None or a number > 0, got {gamma!r}")
        self.heads = heads
        self.gamma = None if gamma is None else float(gamma)
        self.pool = SimPool2d(in_features, num_heads=heads, qkv_bias=False, gamma=self.gamma,
                              norm_layer=partial(nn.LayerNorm, bias=False))
        self.norm = probe_norm(in_features, bn, "simpool")
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(to_map(x))  # (B, C): tokens enter as a (B, C, L, 1) map
        return self.fc(self.norm(pooled))  # (B, N)

    def analytic_macs(self, in_features=None, num_classes=None, tokens=196, batch=1) -> int:
        C, N, B, L = in_features or self.in_features, num_classes or self.num_classes, batch, tokens
        # q projection of the GAP vector, k projection of every token, scores + weighted sum over all heads, linear.
        return B * (C * C + L * C * C + 2 * L * C + C * N)
