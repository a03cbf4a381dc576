"""Query2Label (Liu et al., 2021): a transformer encoder layer over the spatial tokens with a 2-D sine positional
code, a decoder whose K = N learnable class queries cross-attend the encoded tokens, and a per-class linear
readout (GroupWiseLinear).

Implemented from ``shared/reference/q2l-csra-facts.md`` §1 (no official code). As in the official defaults:
post-norm layers with ReLU FFNs and dropout 0.1; every decoder self-attention removed (``self_attn=True`` keeps
it in the decoder layers after the first, ``first_self_attn=True`` in the first: the official
``--keep_other_self_attn_dec`` and ``--keep_first_self_attn_dec``); the decoder starts from zeros and the
query embedding is added to the cross-attention query in every layer (DETR style); the positional code is added
to queries and keys, never to values; a final decoder LayerNorm; no input projection unless ``input_proj=True``.
Defaults are the README recipe: d = the input width, FFN 8192, 4 heads, 1 encoder and 2 decoder layers.

Module and parameter names follow the official state-dict keys (``query_embed.weight``, ``fc.W``, ``fc.b``,
``transformer.encoder.layers.0.self_attn.in_proj_weight``, ``transformer.decoder.layers.1.multihead_attn...``,
``transformer.decoder.norm``); the optional input projection is a Linear here (the official 1x1 Conv2d's weight
(d, C, 1, 1) flattened).

Departure, for speed: the first decoder layer's query side (the query embedding, with zeros as the target) does
not depend on the image, so in eval mode it is projected once per batch and broadcast, as in ``mldecoder``.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._base import Head, batch_of_one, register_head, to_tokens
from ._decoder import Attention
from ._dropout import dropout

TEMPERATURE = 10000.0  # of the sine positional code


def token_grid(num_tokens: int) -> Tuple[int, int]:
    """The (H, W) a token sequence is laid out on for the positional code: a square when the count is one (a
    ViT's patch grid), else one row of L positions (tokens with prefix tokens, e.g. a class token)."""
    side = math.isqrt(num_tokens)
    return (side, side) if side * side == num_tokens else (1, num_tokens)


def sine_position_encoding(height: int, width: int, dim: int, temperature: float = TEMPERATURE) -> torch.Tensor:
    """The DETR-style 2-D sine code, (H*W, dim), rows in row-major order (index h*W + w).

    d/2 channels per axis, all y channels then all x channels. Coordinates 1..H (and 1..W) divided by
    (last + 1e-6) and scaled by 2*pi; channel j of an axis divides the coordinate by
    temperature^(2*floor(j/2) / (d/2)) and takes its sine for even j, cosine for odd j.
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"the sine positional code needs an even width >= 2, got {dim}")
    # Computed in numpy (float64): a constant of the input's shape, so the MAC counters see no ops for it.
    half = dim // 2
    j = np.arange(half)
    freq = temperature ** (2 * (j // 2) / half)  # (d/2,)

    def axis(n: int) -> np.ndarray:
        coord = np.arange(1, n + 1) / (n + 1e-6) * 2 * math.pi  # (n,)
        arg = coord[:, None] / freq  # (n, d/2)
        return np.where(j % 2 == 0, np.sin(arg), np.cos(arg))  # (n, d/2): sin on even j, cos on odd

    y = np.broadcast_to(axis(height)[:, None, :], (height, width, half))  # (H, W, d/2)
    x = np.broadcast_to(axis(width)[None, :, :], (height, width, half))  # (H, W, d/2)
    code = np.concatenate([y, x], -1).reshape(height * width, dim)  # (HW, d)
    return torch.from_numpy(code.astype(np.float32))


class EncoderLayer(nn.Module):
    """Post-norm encoder layer: q = k = x + pos, v = x; x = LN1(x + drop(attn)); x = LN2(x + drop(FFN(x)))."""

    def __init__(self, embed: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.self_attn = Attention(embed, heads, dropout)
        self.linear1 = nn.Linear(embed, ffn)
        self.linear2 = nn.Linear(ffn, embed)
        self.norm1 = nn.LayerNorm(embed)
        self.norm2 = nn.LayerNorm(embed)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        # x: (B, L, D); pos: (1, L, D)
        p = self.dropout if self.training else 0.0
        qk = x + pos  # (B, L, D)
        x = self.norm1(x + dropout(self.self_attn(qk, qk, value=x), p, self.training))  # (B, L, D)
        f = self.linear2(dropout(F.relu(self.linear1(x)), p, self.training))  # (B, L, D)
        return self.norm2(x + dropout(f, p, self.training))

    def macs(self, B: int, L: int) -> int:
        D, Fw = self.linear1.in_features, self.linear1.out_features
        return self.self_attn.macs(B, B, L, L) + 2 * B * L * D * Fw


class DecoderLayer(nn.Module):
    """Post-norm decoder layer. Without self-attention (the default):
    t = LN2(t + drop(CrossAttn(q = t + query_pos, k = memory + pos, v = memory))); t = LN3(t + drop(FFN(t))).
    With it, first t = LN1(t + drop(SelfAttn(q = k = t + query_pos, v = t))). ``t=None`` is the zero target."""

    def __init__(self, embed: int, heads: int, ffn: int, dropout: float, self_attn: bool):
        super().__init__()
        if self_attn:
            self.self_attn = Attention(embed, heads, dropout)
            self.norm1 = nn.LayerNorm(embed)
        else:
            self.self_attn = None  # removed, as in the official default: the parameters do not exist
        self.multihead_attn = Attention(embed, heads, dropout)
        self.linear1 = nn.Linear(embed, ffn)
        self.linear2 = nn.Linear(ffn, embed)
        self.norm2 = nn.LayerNorm(embed)
        self.norm3 = nn.LayerNorm(embed)
        self.dropout = dropout

    def forward(self, t: Optional[torch.Tensor], query_pos: torch.Tensor, mem_key: torch.Tensor,
                mem: torch.Tensor) -> torch.Tensor:
        # t: None (zeros) or (Bq, K, D); query_pos: (Bq, K, D); mem_key = memory + pos, mem: (B, L, D)
        p, train = (self.dropout if self.training else 0.0), self.training
        if self.self_attn is not None:
            v = torch.zeros_like(query_pos) if t is None else t
            qk = query_pos if t is None else t + query_pos
            s = dropout(self.self_attn(qk, qk, value=v), p, train)  # (Bq, K, D)
            t = self.norm1(s if t is None else t + s)
        q = query_pos if t is None else t + query_pos  # (Bq, K, D)
        a = dropout(self.multihead_attn(q, mem_key, value=mem), p, train)  # (B, K, D)
        t = self.norm2(a if t is None else t + a)  # (B, K, D): t broadcasts over the batch when Bq == 1
        f = self.linear2(dropout(F.relu(self.linear1(t)), p, train))  # (B, K, D)
        return self.norm3(t + dropout(f, p, train))

    def macs(self, Bq: int, B: int, K: int, L: int) -> int:
        D, Fw = self.linear1.in_features, self.linear1.out_features
        m = self.multihead_attn.macs(Bq, B, K, L) + 2 * B * K * D * Fw
        if self.self_attn is not None:
            m += self.self_attn.macs(Bq, Bq, K, K)
        return m


class Encoder(nn.Module):
    def __init__(self, layers: int, embed: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(embed, heads, ffn, dropout) for _ in range(layers))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, pos)
        return x  # (B, L, D); post-norm: no final encoder LayerNorm


class Decoder(nn.Module):
    def __init__(self, layers: int, embed: int, heads: int, ffn: int, dropout: float, self_attn: bool,
                 first_self_attn: bool):
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(embed, heads, ffn, dropout, first_self_attn if i == 0 else self_attn) for i in range(layers))
        self.norm = nn.LayerNorm(embed)

    def forward(self, query_pos: torch.Tensor, mem_key: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        # query_pos: (1, K, D), shared by the batch; mem_key, mem: (B, L, D) -> (B, K, D)
        if self.training and self.layers[0].dropout > 0:
            query_pos = query_pos.expand(mem.shape[0], -1, -1)  # dropout noise differs per image
        t = None  # the decoder's target starts at zero
        for layer in self.layers:
            t = layer(t, query_pos, mem_key, mem)
        return self.norm(t)


class Transformer(nn.Module):
    def __init__(self, enc_layers: int, dec_layers: int, embed: int, heads: int, ffn: int, dropout: float,
                 self_attn: bool, first_self_attn: bool):
        super().__init__()
        self.encoder = Encoder(enc_layers, embed, heads, ffn, dropout)
        self.decoder = Decoder(dec_layers, embed, heads, ffn, dropout, self_attn, first_self_attn)
        for p in self.parameters():  # the official xavier pass: every matrix, the packed in_proj included
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)


class GroupWiseLinear(nn.Module):
    """logit[b, k] = W[0, k] . h[b, k] + b[0, k]: one d-vector per class, applied to that class's query only."""

    def __init__(self, num_classes: int, embed: int):
        super().__init__()
        self.W = nn.Parameter(torch.empty(1, num_classes, embed))  # (1, K, D)
        self.b = nn.Parameter(torch.empty(1, num_classes))  # (1, K)
        bound = embed ** -0.5
        nn.init.uniform_(self.W, -bound, bound)
        nn.init.uniform_(self.b, -bound, bound)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # h: (B, K, D); one batched matmul (K, B, D) @ (K, D, 1) so that the counters see its K*B*D MACs
        out = torch.bmm(h.transpose(0, 1), self.W[0].unsqueeze(-1))  # (K, B, 1)
        return out.squeeze(-1).t() + self.b  # (B, K)


@register_head("q2l")
class Query2Label(Head):
    """Query2Label: encoder layer with 2-D sine positions, class queries decoded without self-attention.

    Args:
        embed: the transformer width d; None = the input width (the README recipe). Another width needs
            ``input_proj=True``.
        input_proj: a linear projection C -> d (with bias) before the encoder (the official ``--keep_input_proj``).
        enc_layers, dec_layers, heads, ffn, dropout: 1, 2, 4, 8192 and 0.1 in the recipe.
        self_attn: keep the self-attention of the decoder layers after the first (removed by default, as in the
            official code).
        first_self_attn: keep the first decoder layer's self-attention. Its values are the zero target, so it
            only adds a constant (its output-projection bias): kept for the parameter count of that variant.
    """

    def __init__(self, in_features: int, num_classes: int, embed: Optional[int] = None, input_proj: bool = False,
                 enc_layers: int = 1, dec_layers: int = 2, heads: int = 4, ffn: int = 8192, dropout: float = 0.1,
                 self_attn: bool = False, first_self_attn: bool = False):
        super().__init__(in_features, num_classes)
        for name, v in (("input_proj", input_proj), ("self_attn", self_attn), ("first_self_attn", first_self_attn)):
            if not isinstance(v, bool):
                raise ValueError(f"{name} must be True or False, got {v!r}")
        d = in_features if embed is None else embed
        for name, v, low in (("embed", d, 1), ("enc_layers", enc_layers, 0), ("dec_layers", dec_layers, 1),
                             ("heads", heads, 1), ("ffn", ffn, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if d != in_features and not input_proj:
            raise ValueError(f"q2l: embed={d} differs from the input width {in_features}; pass input_proj=True "
                             "to project, or leave embed=None")
        if d % heads or d % 2:
            raise ValueError(f"q2l: the width d={d} must be even and divisible by heads ({heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.embed = d
        self.input_proj = nn.Linear(in_features, d) if input_proj else nn.Identity()
        self.query_embed = nn.Embedding(num_classes, d)  # N(0, 1), outside the transformer's xavier pass
        self.transformer = Transformer(enc_layers, dec_layers, d, heads, ffn, dropout, self_attn, first_self_attn)
        self.fc = GroupWiseLinear(num_classes, d)
        self._pos: Dict[tuple, torch.Tensor] = {}  # positional codes per (H, W, device, dtype); not state

    def position_code(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        key = (height, width, like.device, like.dtype)
        if key not in self._pos:
            self._pos[key] = sine_position_encoding(height, width, self.embed).to(like)[None]  # (1, HW, d)
        return self._pos[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = to_tokens(x)  # (B, L, C), row-major over the map
        H, W = (x.shape[2], x.shape[3]) if x.dim() == 4 else token_grid(t.shape[1])
        mem = self.input_proj(t)  # (B, L, d)
        pos = self.position_code(H, W, mem)  # (1, L, d)
        mem = self.transformer.encoder(mem, pos)  # (B, L, d)
        h = self.transformer.decoder(batch_of_one(self.query_embed.weight), mem + pos, mem)  # (B, K, d)
        return self.fc(h)  # (B, N)

    def analytic_macs(self, in_features=None, num_classes=None, tokens=196, batch=1) -> int:
        C, K, B, L, d = in_features or self.in_features, num_classes or self.num_classes, batch, tokens, self.embed
        proj = B * L * C * d if isinstance(self.input_proj, nn.Linear) else 0
        enc = sum(layer.macs(B, L) for layer in self.transformer.encoder.layers)
        # eval mode: the first decoder layer's query side is image-independent and runs once per batch
        dec = sum(layer.macs(1 if i == 0 else B, B, K, L)
                  for i, layer in enumerate(self.transformer.decoder.layers))
        return proj + enc + dec + B * K * d
