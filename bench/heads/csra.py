"""CSRA: class-specific residual attention (Zhu & Wu, ICCV 2021).

Each class scores every spatial position with its own (normalised) classifier vector; the logit is the average
score plus ``lam`` times a class-specific attention pooling of the scores (softmax with temperature T over the
positions; T = inf is max pooling). ``heads`` > 1 sums several such branches with the paper's temperatures.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ._base import Head, register_head, to_tokens

# Temperatures per number of heads, from the CSRA paper's multi-head setting.
TEMPERATURES = {1: (1.0,), 2: (1.0, math.inf), 4: (1.0, 2.0, 3.0, math.inf), 6: (1.0, 2.0, 3.0, 4.0, 5.0, math.inf),
                8: (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, math.inf)}


@register_head("csra")
class CSRA(Head):
    """CSRA: per-class average plus class-specific attention pooling of per-position class scores."""

    def __init__(self, in_features: int, num_classes: int, heads: int = 1, lam: float = 0.1):
        super().__init__(in_features, num_classes)
        if heads not in TEMPERATURES:
            raise ValueError(f"csra: heads must be one of {sorted(TEMPERATURES)}, got {heads!r}")
        self.temperatures = TEMPERATURES[heads]
        self.lam = float(lam)
        self.weight = nn.Parameter(torch.empty(heads, num_classes, in_features))  # (h, N, C)
        nn.init.normal_(self.weight, std=in_features ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = to_tokens(x)  # (B, L, C)
        w = self.weight / self.weight.norm(dim=-1, keepdim=True)  # (h, N, C)
        out = 0
        for i, T in enumerate(self.temperatures):
            score = torch.matmul(t, w[i].t())  # (B, L, N)
            base = score.mean(1)  # (B, N)
            if math.isinf(T):
                att = score.amax(1)
            else:
                att = (score * torch.softmax(score * T, dim=1)).sum(1)
            out = out + base + self.lam * att
        return out

    def analytic_macs(self, in_features=None, num_classes=None, tokens=196, batch=1) -> int:
        C, N = in_features or self.in_features, num_classes or self.num_classes
        return len(self.temperatures) * batch * tokens * C * N
