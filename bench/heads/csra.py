"""CSRA: class-specific residual attention (Zhu & Wu, ICCV 2021), from ``shared/reference/q2l-csra-facts.md`` §2.

Each class scores every spatial position with its own classifier vector divided by that vector's L2 norm (a
1x1 convolution without bias; the features are not normalised). The logit is the mean score over the positions
plus ``lam`` times a class-specific attention pooling of the scores: a softmax over the positions of T * score,
or the max for T = inf (the official code's T = 99 sentinel). ``heads`` > 1 are full blocks with their own
weights and the official temperatures, sharing one ``lam``, and their outputs are summed (not averaged).

The settings of the official README (``README_SETTINGS``): VOC2007 ResNet-101 ``csra(heads=1, lam=0.1)`` (also
the script default, and so the default here), COCO ResNet-101 ``csra(heads=4, lam=0.5)``, COCO CutMix
``csra(heads=6, lam=0.4)``, Wider-Attribute ViT ``csra(heads=1, lam=0.3)``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ._base import Head, register_head, to_tokens

# Temperatures per number of heads (the official MHA table); T = inf is max pooling.
TEMPERATURES = {1: (1.0,), 2: (1.0, math.inf), 4: (1.0, 2.0, 4.0, math.inf),
                6: (1.0, 2.0, 3.0, 4.0, 5.0, math.inf), 8: (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, math.inf)}
# (dataset and backbone, spec, the README's mAP): the official README's settings.
README_SETTINGS = (
    ("VOC2007, ResNet-101", "csra(heads=1, lam=0.1)", 94.7),
    ("COCO, ResNet-101", "csra(heads=4, lam=0.5)", 83.3),
    ("COCO, ResNet-101 CutMix", "csra(heads=6, lam=0.4)", 85.6),
    ("Wider-Attribute, ViT-B16 at 224", "csra(heads=1, lam=0.3)", 89.0),
)


@register_head("csra")
class CSRA(Head):
    """CSRA: per-class average plus class-specific attention pooling of per-position class scores."""

    def __init__(self, in_features: int, num_classes: int, heads: int = 1, lam: float = 0.1):
        super().__init__(in_features, num_classes)
        if heads not in TEMPERATURES or isinstance(heads, bool):
            raise ValueError(f"csra: heads must be one of {sorted(TEMPERATURES)}, got {heads!r}")
        self.temperatures = TEMPERATURES[heads]
        self.lam = float(lam)
        # One bias-free 1x1 conv per head, stored as (h, N, C); torch's Conv2d default init, U(+-1/sqrt(C)).
        self.weight = nn.Parameter(torch.empty(heads, num_classes, in_features))  # (h, N, C)
        nn.init.uniform_(self.weight, -in_features ** -0.5, in_features ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = to_tokens(x)  # (B, L, C)
        w = self.weight / self.weight.norm(dim=-1, keepdim=True)  # (h, N, C): each class vector at unit norm
        out = 0
        for i, T in enumerate(self.temperatures):
            score = torch.matmul(t, w[i].t())  # (B, L, N)
            base = score.mean(1)  # (B, N)
            if math.isinf(T):
                att = score.amax(1)  # (B, N)
            else:
                att = (score * torch.softmax(score * T, dim=1)).sum(1)  # (B, N)
            out = out + base + self.lam * att
        return out  # (B, N): the sum over heads

    def analytic_macs(self, in_features=None, num_classes=None, tokens=196, batch=1) -> int:
        C, N = in_features or self.in_features, num_classes or self.num_classes
        return len(self.temperatures) * batch * tokens * C * N
