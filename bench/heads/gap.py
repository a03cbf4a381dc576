"""Global average pooling + linear: the baseline every head is compared against.

``gap(bn=True)`` is the linear probe of frozen-feature probing: the pooled vector passes a BatchNorm without affine
before the linear layer (``_readout``), the readout of the probing heads (``ep``, ``simpool``, ...).
"""
from __future__ import annotations

import torch
from torch import nn

from ._base import Head, register_head, to_tokens
from ._readout import probe_norm


@register_head("gap")
class GAP(Head):
    """Mean over the spatial positions (or tokens), then one linear layer.

    Args:
        dropout: dropout before the linear layer.
        bn: a BatchNorm1d without affine before the linear layer (the probing readout; off by default).
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0, bn: bool = False):
        super().__init__(in_features, num_classes)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.norm = probe_norm(in_features, bn, "gap")  # nn.Identity() unless bn
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean((2, 3)) if x.dim() == 4 else to_tokens(x).mean(1)  # (B, C)
        return self.fc(self.drop(self.norm(pooled)))  # (B, N)

    def analytic_macs(self, in_features=None, num_classes=None, tokens=196, batch=1) -> int:
        return batch * (in_features or self.in_features) * (num_classes or self.num_classes)
