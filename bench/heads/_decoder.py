"""The post-norm transformer-decoder layer shared by ``mldecoder`` and ``txdec``.

Attention weights are stored like ``nn.MultiheadAttention`` (``in_proj_weight`` (3D, D), ``in_proj_bias``,
``out_proj``) so official checkpoints map onto it one to one, but the maths goes through
``scaled_dot_product_attention`` with batch-first tensors, and the query side may have batch 1: work that does
not depend on the image (the projection of fixed queries) is then done once per batch and broadcast.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._dropout import attention, dropout


class Attention(nn.Module):
    """Multi-head attention, batch first. ``q`` (Bq, K, D) with Bq in {1, B}; ``kv`` (B, L, D) gives the keys
    and, unless ``value`` (B, L, D) is given, the values too (DETR-style heads add a positional code to the keys
    only)."""

    def __init__(self, embed: int, heads: int, dropout: float):
        super().__init__()
        if embed % heads:
            raise ValueError(f"embed ({embed}) must be divisible by heads ({heads})")
        self.embed, self.heads, self.dropout = embed, heads, dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed, embed))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed))
        self.out_proj = nn.Linear(embed, embed)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, value: Optional[torch.Tensor] = None,
                batch: Optional[int] = None) -> torch.Tensor:
        """(B, K, D), B the batch of ``kv``, or ``batch`` when the queries and ``kv`` have batch 1 (image-independent
        self-attention in training: the projections and weights are the same for every image and are computed
        once; only the dropout of the weights differs per image)."""
        D, h = self.embed, self.heads
        Bq, K, _ = q.shape
        B, L, _ = kv.shape
        w, b = self.in_proj_weight, self.in_proj_bias
        q = F.linear(q, w[:D], b[:D])  # (Bq, K, D): once per batch when the queries are image-independent
        if value is None:
            k, v = F.linear(kv, w[D:], b[D:]).view(B, L, 2, h, D // h).permute(2, 0, 3, 1, 4)  # (B, h, L, D/h)
        else:
            k = F.linear(kv, w[D:2 * D], b[D:2 * D]).view(B, L, h, D // h).transpose(1, 2)  # (B, h, L, D/h)
            v = F.linear(value, w[2 * D:], b[2 * D:]).view(B, L, h, D // h).transpose(1, 2)  # (B, h, L, D/h)
        q = q.view(Bq, K, h, D // h).transpose(1, 2)  # (Bq, h, K, D/h)
        p = self.dropout if self.training else 0.0
        if batch is not None and batch != B:
            if Bq != 1 or B != 1:
                raise ValueError(f"batch={batch} broadcasts queries and keys of batch 1, got {Bq} and {B}")
            B = batch
            o = attention(q, k, v, dropout_p=p, batch=B)  # (B, h, K, D/h)
        else:
            o = attention(q.expand(B, h, K, D // h), k, v, dropout_p=p)  # (B, h, K, D/h)
        o = o.transpose(1, 2).reshape(B, K, D)  # (B, K, D)
        return self.out_proj(o)

    def macs(self, Bq: int, B: int, K: int, L: int) -> int:
        D = self.embed
        return Bq * K * D * D + B * L * D * 2 * D + 2 * B * K * L * D + B * K * D * D


class DecoderLayer(nn.Module):
    """Post-norm decoder layer; with ``self_attn=False`` its first block is ML-Decoder's ``t = norm1(t + drop(t))``."""

    def __init__(self, embed: int, heads: int, ffn: int, dropout: float, self_attn: bool):
        super().__init__()
        self.self_attn = Attention(embed, heads, dropout) if self_attn else None
        self.norm1 = nn.LayerNorm(embed, eps=1e-5)
        self.cross_attn = Attention(embed, heads, dropout)
        self.norm2 = nn.LayerNorm(embed, eps=1e-5)
        self.linear1 = nn.Linear(embed, ffn)
        self.linear2 = nn.Linear(ffn, embed)
        self.norm3 = nn.LayerNorm(embed, eps=1e-5)
        self.dropout = dropout

    def forward(self, t: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        # t: (Bq, K, D) with Bq in {1, B}; mem: (B, L, D)
        p = self.dropout if self.training else 0.0
        B = mem.shape[0]
        # With dropout the first block's output differs per image (its noise does, as in the reference): image-
        # independent queries are broadcast to the batch there, after the work that is the same for every image.
        if self.self_attn is not None:
            s = self.self_attn(t, t, batch=B if p > 0 else None)  # (B or Bq, K, D)
        else:
            s = t.expand(B, -1, -1) if p > 0 else t
        t = self.norm1(t + dropout(s, p, self.training))  # (B, K, D) with dropout, else (Bq, K, D)
        # Out of place: an in-place ReLU or residual add on a linear layer's output (a view of its 2-D product)
        # makes autograd copy the whole tensor back through CopySlices in the backward (~10% of a CPU step).
        a = dropout(self.cross_attn(t, mem), p, self.training)  # (B, K, D)
        t = self.norm2(a + t)  # (B, K, D): t broadcasts over the batch when Bq == 1
        f = F.relu(self.linear1(t))  # (B, K, ffn)
        f = dropout(self.linear2(dropout(f, p, self.training)), p, self.training)  # (B, K, D)
        return self.norm3(f + t)

    def macs(self, Bq: int, B: int, K: int, L: int) -> int:
        D, Fw = self.linear1.in_features, self.linear1.out_features
        m = self.cross_attn.macs(Bq, B, K, L) + 2 * B * K * D * Fw
        if self.self_attn is not None:
            m += self.self_attn.macs(Bq, Bq, K, K)
        return m


class Decoder(nn.Module):
    """A stack of decoder layers. Queries enter unbatched when they do not depend on the image."""

    def __init__(self, layers: int, embed: int, heads: int, ffn: int, dropout: float, self_attn: bool):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self.layers = nn.ModuleList(DecoderLayer(embed, heads, ffn, dropout, self_attn) for _ in range(layers))

    def forward(self, queries: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        # queries: (1, K, D) shared by the batch, or (B, K, D); mem: (B, L, D) -> (B, K, D)
        t = queries
        for layer in self.layers:
            t = layer(t, mem)
        return t

    def macs(self, B: int, K: int, L: int) -> int:
        """Eval-mode MACs: the first layer's query side runs once per batch; later layers per image."""
        return sum(layer.macs(1 if i == 0 else B, B, K, L) for i, layer in enumerate(self.layers))
