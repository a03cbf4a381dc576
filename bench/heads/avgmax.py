"""Mixed pooling, (mean + max) / 2 over the positions, then one linear layer (timm's ``avgmax``)."""
from __future__ import annotations

from ._base import register_head
from ._pool import PooledLinear


@register_head("avgmax")
class AvgMax(PooledLinear):
    """Half the mean plus half the max over the positions (or tokens), then one linear layer."""

    pool_type = "avgmax"
