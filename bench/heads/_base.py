"""The head contract shared by every head in ``bench.heads``.

A head maps backbone features to logits: a feature map (B, C, H, W) or tokens (B, L, C) -> (B, N).
It knows its closed-form cost (``analytic_macs``): the multiply-accumulates of its matrix products, the
convention of fvcore, timm's ``gmacs`` and the ML-Decoder paper's "FLOPs" (norms, activations, softmax and
pooling are not counted, and the counters in ``bench.measure.flops`` list such ops instead of counting them).
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from ..registry import Registry

HEADS: Registry = Registry("head")
register_head = HEADS.register


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, HW, C); tokens (B, L, C) pass through."""
    if x.dim() == 4:
        return x.flatten(2).transpose(1, 2)
    if x.dim() == 3:
        return x
    raise ValueError(f"a head takes a feature map (B, C, H, W) or tokens (B, L, C), got shape {tuple(x.shape)}")


def to_map(x: torch.Tensor) -> torch.Tensor:
    """Tokens (B, L, C) -> a (B, C, L, 1) map, for a 2-D pooling layer that serves both layouts; maps pass through."""
    if x.dim() == 3:
        return x.transpose(1, 2).unsqueeze(-1)
    if x.dim() == 4:
        return x
    raise ValueError(f"a head takes a feature map (B, C, H, W) or tokens (B, L, C), got shape {tuple(x.shape)}")


def batch_of_one(param: torch.Tensor) -> torch.Tensor:
    """(K, D) parameter -> (1, K, D), shared by every image of the batch.

    Detached when autograd is off: a view of a parameter made under no_grad still says requires_grad, and
    FlopCounterMode's module tracker fails on such a module input ("Expected gradient function to be set").
    """
    t = param.unsqueeze(0)
    return t if torch.is_grad_enabled() else t.detach()


def num_tokens(x: torch.Tensor) -> int:
    return x.shape[2] * x.shape[3] if x.dim() == 4 else x.shape[1]


class Head(nn.Module):
    """Base class: subclasses set ``in_features`` and ``num_classes`` and implement ``forward`` and
    ``analytic_macs``. ``spec`` is filled by ``create_head`` with the canonical spec string."""

    spec: str = ""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        if in_features < 1 or num_classes < 1:
            raise ValueError(f"in_features and num_classes must be >= 1, got {in_features} and {num_classes}")
        self.in_features = in_features
        self.num_classes = num_classes

    def analytic_macs(self, in_features: int | None = None, num_classes: int | None = None,
                      tokens: int = 196, batch: int = 1) -> int:
        """Multiply-accumulates of one forward pass in eval mode on ``batch`` inputs of ``tokens`` tokens
        (H*W for a map). ``in_features`` and ``num_classes`` default to the head's own."""
        raise NotImplementedError

    def query_parameters(self) -> Dict[str, nn.Parameter]:
        """The head's query embeddings by name (fixed or learnable), for the optimizer's own query group and for
        measuring how far learnable queries moved in training; a head without queries has none."""
        return {}

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}, in_features={self.in_features}, num_classes={self.num_classes}"
