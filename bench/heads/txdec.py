"""A full transformer-decoder head: one learnable query per class, self-attention + cross-attention + FFN per
layer, and a per-class linear readout (the decoder the ML-Decoder paper starts from, as in Query2Label).

It is ML-Decoder with the three changes undone (self-attention back, learnable queries, one query per class), at
the same widths, so that an ablation between the two isolates exactly what the paper changed.
"""
from __future__ import annotations

from ._base import register_head
from .mldecoder import MLDecoder


@register_head("txdec")
class TransformerDecoderHead(MLDecoder):
    """Full transformer decoder: one learnable query per class, self- and cross-attention, per-class readout."""

    def __init__(self, in_features: int, num_classes: int, layers: int = 1, embed: int = 768, heads: int = 8,
                 ffn: int = 2048, dropout: float = 0.1):
        super().__init__(in_features, num_classes, groups=num_classes, embed=embed, layers=layers, heads=heads,
                         ffn=ffn, dropout=dropout, self_attn=True, queries="learnable")
