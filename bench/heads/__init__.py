"""The head registry: ``list_heads``, ``parse_head``, ``create_head`` and one module per head.

A head spec is parsed once, by ``parse_head``, into a ``HeadSpec``: a string that is the head's canonical label and
carries its name and options; ``create_head`` builds a head from one without parsing it again.

>>> create_head("mldecoder(groups=20)", in_features=2048, num_classes=80)
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, List, Union

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


class HeadSpec(str):
    """A head spec parsed once (``parse_head``). The string is its canonical label, the one name of the head
    everywhere (the CLI argument, the results' ``head`` column, a plot's legend): options equal to their defaults
    dropped, the rest sorted by name, so ``mldecoder(groups=100)`` is ``mldecoder`` and option order does not make
    two labels of one head. ``name`` is the registered head, ``options`` the options that differ from its
    defaults; ``create_head`` builds from them without parsing again. Pickled (Ray tasks, memory subprocesses)
    and copied as the parsed value."""

    def __new__(cls, name: str, options: Dict[str, Any]):
        self = super().__new__(cls, format_spec(name, options))
        self._name = name
        self._options = tuple(options.items())
        return self

    def __getnewargs__(self):
        return self._name, dict(self._options)

    @property
    def name(self) -> str:
        return self._name

    @property
    def options(self) -> Dict[str, Any]:
        """The options that differ from the head's defaults (a new dict: the spec itself never changes)."""
        return dict(self._options)


def parse_head(spec: Union[str, HeadSpec]) -> HeadSpec:
    """Parse a head spec such as ``mldecoder(groups=20)`` into a ``HeadSpec`` carrying its canonical label; a
    HeadSpec is returned as it is. Unknown heads or options raise ValueError naming the valid ones (the option
    values are the head's to check, when it is built)."""
    if isinstance(spec, HeadSpec):
        return spec
    parsed = parse_spec(spec)
    HEADS.get(parsed.name)
    valid = head_options(parsed.name)
    for key in parsed.kwargs:
        if key not in valid:
            raise ValueError(unknown_message(f"option of head {parsed.name!r}", key, valid))
    kept = {k: parsed.kwargs[k] for k in sorted(parsed.kwargs)
            if not (parsed.kwargs[k] == valid[k] and type(parsed.kwargs[k]) is type(valid[k]))}
    return HeadSpec(parsed.name, kept)


def canonical_head_spec(spec: str) -> str:
    """The canonical label of a head spec (see ``HeadSpec``), as plain text. Unknown heads or options raise
    ValueError."""
    return str(parse_head(spec))


def create_head(spec: Union[str, HeadSpec], in_features: int, num_classes: int) -> Head:
    """Build a head from a spec such as ``gap``, ``mldecoder(groups=20)`` or ``txdec(layers=2)`` (text, parsed
    here, or a ``HeadSpec``, already parsed). ``head.spec`` is its HeadSpec.

    Unknown head names and unknown options raise ValueError naming the valid ones.
    """
    spec = parse_head(spec)
    head = HEADS.get(spec.name)(in_features, num_classes, **spec.options)
    head.spec = spec
    return head


__all__ = ["HEADS", "Head", "HeadSpec", "canonical_head_spec", "create_head", "head_options", "list_heads",
           "parse_head", "register_head"]
