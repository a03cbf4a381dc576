"""PRR, Patch Representation Refinement ("Locality-Attending Vision Transformer", ICLR 2026), on timm's
``AttentionPoolPrr``, then the probing readout.

A parameter-free multi-head self-attention over the tokens (no q/k/v projections: each head attends with its own
``C / heads`` channels as query, key and value at once) refines every token; then the refined tokens are pooled:
their mean (``pool="avg"``) or the first token (``pool="token"``, a ViT's class token). Then BatchNorm without
affine (``bn``) and a linear layer.

The default pool is ``"avg"``, not timm's ``"token"``: this suite's heads also take CNN maps, whose first position
is a corner of the image, not a class token. ``pool="token"`` takes tokens only (a map raises ValueError); it is
meaningful for ViTs with a class token first (timm's ViTs hand their class token over as token 0). A map (B, C, H, W)
enters as its H*W tokens (B, HW, C).
"""
from __future__ import annotations

import torch
from timm.layers import AttentionPoolPrr
from torch import nn

from ._base import Head, register_head, to_tokens
from ._readout import probe_norm

POOLS = ("avg", "token")


@register_head("prr")
class PRR(Head):
    """PRR: parameter-free multi-head self-attention refines the tokens, then mean (or class token), BN and linear.

    Args:
        heads: attention heads (``in_features`` must be divisible by it); timm's default 8.
        pool: ``"avg"`` (mean of the refined tokens) or ``"token"`` (the first refined token; tokens input only).
        bn: BatchNorm1d without affine before the linear layer (the probing readout).
    """

    def __init__(self, in_features: int, num_classes: int, heads: int = 8, pool: str = "avg", bn: bool = True):
        super().__init__(in_features, num_classes)
        if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1 or in_features % heads:
            raise ValueError(f"prr: in_features ({in_features}) must be divisible by heads ({heads!r})")
        if pool not in POOLS:
            raise ValueError(f"prr: pool must be one of {', '.join(map(repr, POOLS))}, got {pool!r}")
        self.heads, self.pool_type = heads, pool
        self.pool = AttentionPoolPrr(in_features, num_heads=heads, pool_type=pool)
        self.norm = probe_norm(in_features, bn, "prr")
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and self.pool_type == "token":
            raise ValueError('prr(pool="token") takes tokens (B, L, C) whose first is a class token; a feature map '
                             f'{tuple(x.shape)} has none: use pool="avg"')
        pooled = self.pool(to_tokens(x))  # (B, L, C) -> refined (B, L, C) -> (B, C)
        return self.fc(self.norm(pooled))  # (B, N)

    def analytic_macs(self, in_features=None, num_classes=None, tokens=196, batch=1) -> int:
        C, N, B, L = in_features or self.in_features, num_classes or self.num_classes, batch, tokens
        # scores (L x L per head, C / heads wide) and weighted sum over all heads: every token is refined, also for
        # pool="token" (timm refines them all, then takes the first); then the linear layer.
        return B * (2 * L * L * C + C * N)
