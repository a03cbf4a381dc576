"""Mean and max over the positions concatenated (2C features), then one linear layer (timm's ``catavgmax``)."""
from __future__ import annotations

from ._base import register_head
from ._pool import PooledLinear


@register_head("catavgmax")
class CatAvgMax(PooledLinear):
    """Mean and max over the positions (or tokens) concatenated, then one linear layer on 2C."""

    pool_type = "catavgmax"
