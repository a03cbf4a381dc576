"""Attention pooling on timm's ``AttentionPoolLatent`` (the MAP head of timm's ViTs with ``global_pool='map'``):
one learned latent query attends over the tokens, then a LayerNorm + MLP residual block and a linear classifier.

``load_timm_attnpool`` copies the head of a timm model that has one (its ``attn_pool`` and ``head``) into this
head, so a MAP-pooled timm checkpoint's head can be benchmarked on this suite's features.
"""
from __future__ import annotations

import torch
from timm.layers import AttentionPoolLatent, LayerNorm
from torch import nn

from ._base import Head, register_head, to_tokens


@register_head("attnpool")
class AttentionPool(Head):
    """Attention pooling: one learned query attends over the tokens, then MLP and linear (timm's MAP head).

    Args:
        heads: attention heads (``in_features`` must be divisible by it).
        mlp_ratio: the MLP block's hidden width as a multiple of ``in_features``; 0 leaves the block (and its
            LayerNorm) out.
        dropout: dropout after the attention's output projection (timm's ``drop``).
    """

    def __init__(self, in_features: int, num_classes: int, heads: int = 8, mlp_ratio: float = 4.0,
                 dropout: float = 0.0):
        super().__init__(in_features, num_classes)
        if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1 or in_features % heads:
            raise ValueError(f"attnpool: in_features ({in_features}) must be divisible by heads ({heads!r})")
        if mlp_ratio < 0:
            raise ValueError(f"mlp_ratio must be >= 0, got {mlp_ratio!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        C = in_features
        self.hidden = int(C * mlp_ratio)
        # timm's ViT builds its MAP head with its own LayerNorm (eps 1e-6) and GELU; out_features = C keeps the
        # pool's projection, norm and MLP, and the classifier is ours (timm's ViT has it outside, as ``head``).
        self.pool = AttentionPoolLatent(C, out_features=C, num_heads=heads,
                                        mlp_ratio=mlp_ratio if self.hidden else 1.0, norm_layer=LayerNorm,
                                        drop=dropout)
        if not self.hidden:  # no MLP block: timm's forward skips it when ``mlp`` is None
            self.pool.mlp = None
            self.pool.norm = nn.Identity()
        self.fc = nn.Linear(C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = to_tokens(x)  # (B, L, C)
        if torch.is_grad_enabled():
            pooled = self.pool(t)  # (B, C): latent query -> attention -> proj (-> + MLP(norm))
        else:  # timm expands the latent parameter; under no_grad that view still says requires_grad, and
            # FlopCounterMode's module tracker fails on such a module input (see ``batch_of_one``): run timm's
            # forward with the latent detached for this call only (not functional_call: fvcore's jit trace
            # cannot take it)
            latent = self.pool._parameters["latent"]
            self.pool._parameters["latent"] = latent.detach()
            try:
                pooled = self.pool(t)  # (B, C)
            finally:
                self.pool._parameters["latent"] = latent
        return self.fc(pooled)  # (B, N)

    def analytic_macs(self, in_features=None, num_classes=None, tokens=196, batch=1) -> int:
        C, N, B, L = in_features or self.in_features, num_classes or self.num_classes, batch, tokens
        # timm expands the latent to the batch before its q projection: q, k, v, scores + weighted sum, proj.
        attention = B * C * C + 2 * B * L * C * C + 2 * B * L * C + B * C * C
        return attention + B * (2 * C * self.hidden + C * N)


def load_timm_attnpool(head: AttentionPool, model: nn.Module) -> AttentionPool:
    """Copy a timm model's MAP head (``model.attn_pool``, an ``AttentionPoolLatent``, and ``model.head``, its
    linear classifier) into ``head``; returns ``head``. Raises ValueError when the model has no such head or its
    shapes differ (the message names both)."""
    pool = getattr(model, "attn_pool", None)
    fc = getattr(model, "head", None)
    if not isinstance(pool, AttentionPoolLatent) or not isinstance(fc, nn.Linear):
        raise ValueError(f"{type(model).__name__} has no MAP head (an AttentionPoolLatent `attn_pool` and a linear "
                         "`head`: a timm ViT created with global_pool='map' and num_classes > 0)")
    if head.pool.mlp is None:
        raise ValueError("attnpool(mlp_ratio=0.0) has no MLP block; timm's MAP head has one")
    ours, theirs = head.state_dict(), {**{f"pool.{k}": v for k, v in pool.state_dict().items()},
                                       **{f"fc.{k}": v for k, v in fc.state_dict().items()}}
    shapes = lambda sd: {k: tuple(v.shape) for k, v in sd.items()}  # noqa: E731
    if shapes(ours) != shapes(theirs):
        raise ValueError(f"timm MAP head {shapes(theirs)} does not fit {head.spec or 'attnpool'} {shapes(ours)}")
    head.load_state_dict(theirs, strict=True)
    return head
