"""The probing readout shared by the frozen-feature probing heads (and ``gap(bn=True)``, the linear probe):
pooled features (B, C) -> BatchNorm1d without affine -> linear (B, N).

The BatchNorm is MAE's linear-probe convention (``BatchNorm1d(C, affine=False, eps=1e-6)`` before the classifier):
it standardises each pooled channel with batch statistics in training and running statistics in eval, so that
features of very different scales (a CNN's post-ReLU map, a ViT's tokens) meet the linear layer on one scale. It has
no learnable parameters (the linear layer's weight and bias absorb any affine map) and it is not a matrix product,
so it adds no MACs. A training forward updates its running statistics, as any BatchNorm's does.
"""
from __future__ import annotations

from torch import nn

BN_EPS = 1e-6  # MAE's linear probe


def probe_norm(in_features: int, bn: bool, head: str) -> nn.Module:
    """``BatchNorm1d(in_features, affine=False, eps=BN_EPS)`` for ``bn=True``, else ``nn.Identity()`` (no state,
    so a head without it keeps its state dict). ``bn`` must be a bool (no ints as booleans); ``head`` names the head
    in the ValueError."""
    if not isinstance(bn, bool):
        raise ValueError(f"{head}: bn must be True or False, got {bn!r}")
    return nn.BatchNorm1d(in_features, affine=False, eps=BN_EPS) if bn else nn.Identity()
