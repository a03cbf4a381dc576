"""LSE pooling on timm's ``LsePlus2d``, then the probing readout.

Per channel, ``(1/r) log(mean_i exp(r x_i))`` over the positions (computed as ``x_max + (1/r) log(mean_i
exp(r (x_i - x_max)))``): the average as r -> 0, the max as r -> inf; r starts at ``r`` and is learned unless
``r_learnable=False``. Then BatchNorm without affine (``bn``) and a linear layer.

One timm layer serves both layouts: a map (B, C, H, W) enters ``LsePlus2d`` as it is, tokens (B, L, C) enter it as
a (B, C, L, 1) map (the same pooling over L, with the same r), so a map and its flattened tokens give the same
output. timm's ``LsePlus1d`` would hold an r of its own.
"""
from __future__ import annotations

import torch
from timm.layers import LsePlus2d
from torch import nn

from ._base import Head, register_head, to_map
from ._readout import probe_norm


@register_head("lseplus")
class LsePlus(Head):
    """LogSumExp pooling with a learnable sharpness r (between average and max), then BatchNorm and linear.

    Args:
        r: the initial sharpness (> 0); timm's default 10.
        r_learnable: learn r (a parameter) or keep it fixed (a buffer).
        bn: BatchNorm1d without affine before the linear layer (the probing readout).
    """

    def __init__(self, in_features: int, num_classes: int, r: float = 10.0, r_learnable: bool = True,
                 bn: bool = True):
        super().__init__(in_features, num_classes)
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 < r < float("inf"):
            raise ValueError(f"lseplus: r must be a finite number > 0, got {r!r}")
        if not isinstance(r_learnable, bool):
            raise ValueError(f"lseplus: r_learnable must be True or False, got {r_learnable!r}")
        self.pool = LsePlus2d(r=float(r), r_learnable=r_learnable, flatten=True)
        self.norm = probe_norm(in_features, bn, "lseplus")
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(to_map(x))  # (B, C): tokens enter as a (B, C, L, 1) map
        return self.fc(self.norm(pooled))  # (B, N)

    def analytic_macs(self, in_features=None, num_classes=None, tokens=196, batch=1) -> int:
        C, N = in_features or self.in_features, num_classes or self.num_classes
        return batch * C * N  # the pooling (max, exp, mean, log) has no matrix product
