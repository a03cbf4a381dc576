"""EP, efficient probing (Psomas et al., "Attention, Please! Revisiting Attentive Probing Through the Lens of
Efficiency", ICLR 2026): multi-query cross-attention without query or key projections, then the probing readout.

Q learnable queries q_j (each C wide) attend over the tokens X (B, L, C) directly, the tokens being their own keys:
``a_j = softmax_L(q_j X^T / sqrt(C))``. The values are one linear projection of the tokens to C / Q channels,
``V = X W_v``; query j pools them, ``y_j = a_j V``, and the Q outputs are concatenated to one C-wide vector
``y = [y_1, ..., y_Q]``. Then BatchNorm without affine (``bn``) and a linear layer.

Written from this description, not from the authors' code. The value projection has no bias: the attention weights
sum to 1, so a bias would add one constant to every pooled vector, which the linear layer's bias (or the BatchNorm)
absorbs. The queries start small (std 0.02): on features of order one the attention starts near uniform, so EP starts
close to average pooling. ``queries=8`` is our choice of default (the authors' README shows the attention maps of
"EP8", 8 queries); ``in_features`` must be divisible by it. A map (B, C, H, W) enters as its H*W tokens.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from ._base import Head, batch_of_one, register_head, to_tokens
from ._readout import probe_norm


@register_head("ep")
class EfficientProbe(Head):
    """EP: Q learned queries attend over the raw tokens, each pooling a C/Q-wide value projection; BN and linear.

    Args:
        queries: the number Q of learned queries (``in_features`` must be divisible by it).
        bn: BatchNorm1d without affine before the linear layer (the probing readout).
    """

    def __init__(self, in_features: int, num_classes: int, queries: int = 8, bn: bool = True):
        super().__init__(in_features, num_classes)
        if not isinstance(queries, int) or isinstance(queries, bool) or queries < 1 or in_features % queries:
            raise ValueError(f"ep: in_features ({in_features}) must be divisible by queries ({queries!r})")
        self.num_queries = queries
        self.queries = nn.Parameter(torch.empty(queries, in_features))  # (Q, C)
        nn.init.trunc_normal_(self.queries, std=0.02)
        self.value = nn.Linear(in_features, in_features // queries, bias=False)  # W_v: C -> C / Q
        self.norm = probe_norm(in_features, bn, "ep")
        self.fc = nn.Linear(in_features, num_classes)

    def query_parameters(self) -> Dict[str, nn.Parameter]:
        return {"queries": self.queries}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = to_tokens(x)  # (B, L, C): the keys
        B, C = t.shape[0], t.shape[2]
        v = self.value(t)  # (B, L, C/Q)
        q = batch_of_one(self.queries).expand(B, -1, -1)  # (B, Q, C), shared by every image
        # One attention "head" of Q queries over C-wide keys and C/Q-wide values; scale 1/sqrt(C).
        y = F.scaled_dot_product_attention(q.unsqueeze(1), t.unsqueeze(1), v.unsqueeze(1))  # (B, 1, Q, C/Q)
        pooled = y.reshape(B, C)  # (B, C): [y_1, ..., y_Q]
        return self.fc(self.norm(pooled))  # (B, N)

    def analytic_macs(self, in_features=None, num_classes=None, tokens=196, batch=1) -> int:
        C, N, B, L, Q = in_features or self.in_features, num_classes or self.num_classes, batch, tokens, \
            self.num_queries
        # value projection, scores q_j . x_i (C wide), weighted sums of the (C/Q)-wide values, linear.
        return B * (L * C * (C // Q) + Q * L * C + Q * L * (C // Q) + C * N)
