"""A registry is a small dict filled by a decorator (timm's pattern, without the directory scanning)."""
from __future__ import annotations

import difflib
import fnmatch
from typing import Callable, Dict, Generic, List, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> objects. A duplicate name fails at import; an unknown name fails with the valid names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"duplicate {self.kind} name {name!r}: already registered by {self._entries[name]!r}")
            self._entries[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(unknown_message(self.kind, name, self._entries)) from None

    def names(self, pattern: str = "*") -> List[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(sorted(self._entries))


def unknown_message(kind: str, value, valid) -> str:
    """``unknown head 'mldecodr'; did you mean 'mldecoder'? valid: gap, mldecoder, ...``"""
    valid = sorted(valid)
    msg = f"unknown {kind} {value!r}"
    close = difflib.get_close_matches(str(value), valid, n=3, cutoff=0.6)
    if close:
        msg += "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return msg + "; valid: " + ", ".join(valid)
