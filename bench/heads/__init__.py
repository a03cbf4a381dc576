"""The head registry: ``list_heads``, ``create_head`` and one module per head.

>>> create_head("mldecoder(groups=20)", in_features=2048, num_classes=80)
"""
from __future__ import annotations

import inspect
from typing import List

from ..registry import unknown_message
from ..spec import format_spec, parse_spec
from ._base import HEADS, Head, register_head

# Importing the modules registers the heads (explicit list: no directory scanning).
from . import gap, gmp, avgmax, catavgmax, txdec, mldecoder, csra, attnpool, q2l  # noqa: E402,F401
from . import simpool, lseplus, prr, ep, vjepa  # noqa: E402,F401  (frozen-feature probing)


def list_heads(pattern: str = "*") -> List[str]:
    """Registered head names matching a glob pattern."""
    return HEADS.names(pattern)


def head_options(name: str) -> dict:
    """The options of a head and their defaults, read from its constructor's signature."""
    cls = HEADS.get(name)
    sig = inspect.signature(cls.__init__)
    return {p.name: p.default for p in list(sig.parameters.values())[3:]
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def canonical_head_spec(spec: str) -> str:
    """The one label of a head spec: options equal to their defaults dropped, the rest sorted by name, so that
    ``mldecoder(groups=100)`` is ``mldecoder`` and option order does not make two labels of one head.
    Unknown heads or options raise ValueError."""
    parsed = parse_spec(spec)
    HEADS.get(parsed.name)
    valid = head_options(parsed.name)
    for key in parsed.kwargs:
        if key not in valid:
            raise ValueError(unknown_message(f"option of head {parsed.name!r}", key, valid))
    kept = {k: parsed.kwargs[k] for k in sorted(parsed.kwargs)
            if not (parsed.kwargs[k] == valid[k] and type(parsed.kwargs[k]) is type(valid[k]))}
    return format_spec(parsed.name, kept)


def create_head(spec: str, in_features: int, num_classes: int) -> Head:
    """Build a head from a spec string such as ``gap``, ``mldecoder(groups=20)`` or ``txdec(layers=2)``.

    Unknown head names and unknown options raise ValueError naming the valid ones.
    """
    parsed = parse_spec(spec)
    cls = HEADS.get(parsed.name)
    valid = head_options(parsed.name)
    for key in parsed.kwargs:
        if key not in valid:
            raise ValueError(unknown_message(f"option of head {parsed.name!r}", key, valid))
    head = cls(in_features, num_classes, **parsed.kwargs)
    head.spec = canonical_head_spec(spec)
    return head


__all__ = ["HEADS", "Head", "canonical_head_spec", "create_head", "head_options", "list_heads", "register_head"]
