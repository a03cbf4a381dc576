"""Global pooling + one linear layer, on timm's ``SelectAdaptivePool2d``: the shared body of ``gmp``, ``avgmax``
and ``catavgmax`` (one small file each registers its pooling).

A feature map (B, C, H, W) is pooled over H, W as timm pools it (``input_fmt="NCHW"``). Tokens (B, L, C) are the
same pooling over L: they enter the same timm layer as a (B, 1, L, C) map in timm's ``NHWC`` format, so one
implementation serves both layouts.
"""
from __future__ import annotations

import torch
from timm.layers import SelectAdaptivePool2d
from torch import nn

from ._base import Head

# Pool types of timm's SelectAdaptivePool2d used here (its "fast" variants: a mean / amax over the positions,
# no adaptive-pool kernels) and the factor on the feature width they produce (catavgmax concatenates).
POOL_TYPES = {"avg": 1, "max": 1, "avgmax": 1, "catavgmax": 2}


class PooledLinear(Head):
    """Pool the positions with timm's ``SelectAdaptivePool2d(pool_type)``, then dropout and one linear layer.

    Subclasses set ``pool_type`` (a key of ``POOL_TYPES``). ``catavgmax`` doubles the linear layer's input.
    """

    pool_type: str = ""

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0):
        super().__init__(in_features, num_classes)
        if self.pool_type not in POOL_TYPES:
            raise ValueError(f"unknown pool type {self.pool_type!r}; valid: {', '.join(POOL_TYPES)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.pool_map = SelectAdaptivePool2d(pool_type="fast" + self.pool_type, flatten=True, input_fmt="NCHW")
        self.pool_tokens = SelectAdaptivePool2d(pool_type="fast" + self.pool_type, flatten=True, input_fmt="NHWC")
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(POOL_TYPES[self.pool_type] * in_features, num_classes)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) or (B, L, C) -> (B, m*C), m = 2 for catavgmax, else 1."""
        if x.dim() == 4:
            return self.pool_map(x)  # (B, m*C)
        if x.dim() == 3:
            return self.pool_tokens(x.unsqueeze(1))  # (B, 1, L, C) as NHWC -> (B, m*C)
        raise ValueError(f"a head takes a feature map (B, C, H, W) or tokens (B, L, C), got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pool(x)))  # (B, N)

    def analytic_macs(self, in_features=None, num_classes=None, tokens=196, batch=1) -> int:
        C, N = in_features or self.in_features, num_classes or self.num_classes
        return batch * POOL_TYPES[self.pool_type] * C * N  # pooling itself is not a MAC
