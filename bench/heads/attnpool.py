"""Attention pooling: one learned query attends over the tokens, then an MLP block and a linear classifier
(the shape of timm's attention-pool / MAP heads)."""
from __future__ import annotations

import torch
from torch import nn

from ._base import Head, batch_of_one, register_head, to_tokens
from ._decoder import Attention


@register_head("attnpool")
class AttentionPool(Head):
    """Attention pooling: one learned query attends over the tokens, then MLP and linear (timm's MAP head)."""

    def __init__(self, in_features: int, num_classes: int, heads: int = 8, mlp_ratio: float = 4.0,
                 dropout: float = 0.0):
        super().__init__(in_features, num_classes)
        if in_features % heads:
            raise ValueError(f"attnpool: in_features ({in_features}) must be divisible by heads ({heads})")
        if mlp_ratio < 0:
            raise ValueError(f"mlp_ratio must be >= 0, got {mlp_ratio!r}")
        C = in_features
        self.query = nn.Parameter(torch.randn(1, C) * C ** -0.5)  # (1, C)
        self.attn = Attention(C, heads, dropout)
        self.hidden = int(C * mlp_ratio)
        if self.hidden:
            self.norm = nn.LayerNorm(C)
            self.mlp = nn.Sequential(nn.Linear(C, self.hidden), nn.GELU(), nn.Linear(self.hidden, C))
        self.fc = nn.Linear(C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = to_tokens(x)  # (B, L, C)
        pooled = self.attn(batch_of_one(self.query), t)[:, 0]  # (B, C)
        if self.hidden:
            pooled = pooled + self.mlp(self.norm(pooled))
        return self.fc(pooled)  # (B, N)

    def analytic_macs(self, in_features=None, num_classes=None, tokens=196, batch=1) -> int:
        C, N = in_features or self.in_features, num_classes or self.num_classes
        return self.attn.macs(1, batch, 1, tokens) + batch * (2 * C * self.hidden + C * N)
