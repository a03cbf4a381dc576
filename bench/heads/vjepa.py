"""V-JEPA's attentive classifier (Bardes et al., "Revisiting Feature Prediction for Learning Visual Representations
from Video", 2024): a learned query and a cross-attention transformer block over the tokens, then a linear layer.

The block is pre-norm, as V-JEPA's ``CrossAttentionBlock``: the tokens are LayerNormed into keys and values
(``norm1``), the query attends over them (multi-head, q/kv/output projections) and the result is added to the query;
then ``q + MLP(LayerNorm(q))``. ``depth`` > 1 puts ``depth - 1`` self-attention transformer blocks (timm's ViT
``Block``, as V-JEPA's pooler does) over the tokens first. Then BatchNorm without affine (``bn``) and the linear layer.

``bn=True`` is the default, the readout of the other probing heads; ``vjepa(bn=False)`` is V-JEPA's classifier as
published (pooler -> linear). Under ``bn=True`` the MLP's output bias is left out: it only adds one constant to
every pooled vector, which the BatchNorm removes (its gradient would be zero). The query's projection does not
depend on the image and runs once per batch. Weights start as V-JEPA's: truncated normal, std 0.02; biases 0.
LayerNorms have eps 1e-6. A map (B, C, H, W) enters as its H*W tokens.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm, Mlp
from timm.models.vision_transformer import Block
from torch import nn

from ._base import Head, batch_of_one, register_head, to_tokens
from ._readout import probe_norm


@register_head("vjepa")
class VJEPAClassifier(Head):
    """V-JEPA's attentive probe: a learned query, a cross-attention + MLP block over the tokens, then linear.

    Args:
        heads: attention heads (``in_features`` must be divisible by it).
        mlp_ratio: the MLP's hidden width as a multiple of ``in_features`` (> 0).
        depth: transformer blocks: ``depth - 1`` self-attention blocks over the tokens, then the cross-attention one.
        bn: BatchNorm1d without affine before the linear layer (the probing readout; False: V-JEPA's own).
    """

    def __init__(self, in_features: int, num_classes: int, heads: int = 8, mlp_ratio: float = 4.0, depth: int = 1,
                 bn: bool = True):
        super().__init__(in_features, num_classes)
        C = in_features
        if not isinstance(heads, int) or isinstance(heads, bool) or heads < 1 or C % heads:
            raise ValueError(f"vjepa: in_features ({C}) must be divisible by heads ({heads!r})")
        if (isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float))
                or not 0 < mlp_ratio < float("inf") or int(C * mlp_ratio) < 1):
            raise ValueError("vjepa: mlp_ratio must be a finite number > 0 with int(in_features * mlp_ratio) >= 1, "
                             f"got {mlp_ratio!r}")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"vjepa: depth must be an int >= 1, got {depth!r}")
        readout_norm = probe_norm(C, bn, "vjepa")  # validates bn before the MLP reads it
        self.heads, self.depth, self.mlp_ratio = heads, depth, float(mlp_ratio)
        self.hidden = int(C * mlp_ratio)
        self.blocks = nn.ModuleList(Block(C, heads, mlp_ratio=mlp_ratio, qkv_bias=True, norm_layer=LayerNorm)
                                    for _ in range(depth - 1))
        self.query = nn.Parameter(torch.zeros(1, C))  # (1, C)
        self.norm1 = LayerNorm(C)  # on the tokens: keys and values
        self.q = nn.Linear(C, C)
        self.kv = nn.Linear(C, 2 * C)
        self.proj = nn.Linear(C, C)
        self.norm2 = LayerNorm(C)
        self.mlp = Mlp(C, self.hidden, bias=(True, not bn))  # GELU
        self.norm = readout_norm
        self.fc = nn.Linear(C, num_classes)
        nn.init.trunc_normal_(self.query, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def query_parameters(self) -> Dict[str, nn.Parameter]:
        return {"query": self.query}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = to_tokens(x)  # (B, L, C)
        for block in self.blocks:
            t = block(t)  # (B, L, C)
        B, L, C = t.shape
        h, d = self.heads, C // self.heads
        query = batch_of_one(self.query)  # (1, 1, C)
        q = self.q(query).reshape(1, h, 1, d).expand(B, -1, -1, -1)  # (B, h, 1, d): projected once per batch
        k, v = self.kv(self.norm1(t)).reshape(B, L, 2, h, d).permute(2, 0, 3, 1, 4).unbind(0)  # (B, h, L, d) each
        y = F.scaled_dot_product_attention(q, k, v)  # (B, h, 1, d)
        pooled = query.squeeze(1) + self.proj(y.reshape(B, C))  # (B, C)
        pooled = pooled + self.mlp(self.norm2(pooled))  # (B, C)
        return self.fc(self.norm(pooled))  # (B, N)

    def analytic_macs(self, in_features=None, num_classes=None, tokens=196, batch=1) -> int:
        C, N, B, L = in_features or self.in_features, num_classes or self.num_classes, batch, tokens
        hidden = int(C * self.mlp_ratio)
        # self-attention blocks: qkv, scores + weighted sum (L x L over all heads), output projection, MLP
        blocks = (self.depth - 1) * B * (3 * L * C * C + 2 * L * L * C + L * C * C + 2 * L * C * hidden)
        # cross-attention: q once per batch, kv of every token, scores + weighted sum, output projection; MLP; linear
        cross = C * C + B * (2 * L * C * C + 2 * L * C + C * C + 2 * C * hidden + C * N)
        return blocks + cross
