"""Spec strings: ``name`` or ``name(key=value, ...)``, e.g. ``mldecoder(groups=20, queries="learnable")``.

The canonical form (``format_spec``) is the label of a head everywhere: the CLI argument, the ``head`` column of
results, plot legends and table rows. Values are parsed with ``ast.literal_eval`` (never ``eval``); a bare word
such as ``queries=learnable`` is read as the string ``"learnable"`` so that specs survive shells unquoted.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-\.]*$")


@dataclass(frozen=True)
class Spec:
    name: str
    kwargs: Dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return format_spec(self.name, self.kwargs)


def _format_value(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


def format_spec(name: str, kwargs: Dict[str, Any]) -> str:
    if not kwargs:
        return name
    return name + "(" + ", ".join(f"{k}={_format_value(v)}" for k, v in kwargs.items()) + ")"


def _literal(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Name):  # bare word -> string
        return node.id
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"cannot read value {ast.get_source_segment(text, node)!r} in spec {text!r}: "
                         "use a number, a quoted string, True/False/None or a list") from None


def parse_spec(text: str) -> Spec:
    """Parse ``name(key=value, ...)`` into a Spec. Raises ValueError with the offending text."""
    text = text.strip()
    if not text:
        raise ValueError("empty spec")
    if "(" not in text:
        if not _NAME.match(text):
            raise ValueError(f"bad spec {text!r}: expected name or name(key=value, ...)")
        return Spec(text, {})
    if not text.endswith(")"):
        raise ValueError(f"bad spec {text!r}: missing closing ')'")
    name = text[: text.index("(")].strip()
    if not _NAME.match(name):
        raise ValueError(f"bad spec {text!r}: {name!r} is not a name")
    # Parse the argument list as a Python call with a harmless callee name.
    call_src = "f" + text[text.index("("):]
    try:
        call = ast.parse(call_src, mode="eval").body
    except SyntaxError as e:
        raise ValueError(f"bad spec {text!r}: {e.msg}") from None
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise ValueError(f"bad spec {text!r}: expected name(key=value, ...)")
    if call.args:
        raise ValueError(f"bad spec {text!r}: options must be named (key=value)")
    kwargs: Dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise ValueError(f"bad spec {text!r}: '**' is not allowed")
        if kw.arg in kwargs:
            raise ValueError(f"bad spec {text!r}: option {kw.arg!r} given twice")
        kwargs[kw.arg] = _literal(kw.value, call_src)
    return Spec(name, kwargs)


def split_specs(text: str) -> List[str]:
    """Split ``gap,mldecoder(groups=20, embed=512)`` at the commas outside parentheses and quotes."""
    parts, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if depth != 0 or quote:
        raise ValueError(f"unbalanced parentheses or quotes in {text!r}")
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def canonical(text: str) -> str:
    """The canonical label of a spec string."""
    return str(parse_spec(text))
